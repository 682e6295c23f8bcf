// Package e2e holds tests that run the receiver, the consumer and the
// audit relay and sink together against real services (internal/testenv).
package e2e
