// Package signature verifies (and, for tests, load generators and the
// example request `hookstream dev` prints, produces) webhook signatures in
// each provider's documented scheme: Standard Webhooks, Stripe, GitHub,
// Shopify, a configurable HMAC-SHA256 header, and an explicit "none".
//
// Verification fails closed: an unknown scheme or a scheme without a usable
// secret is a configuration error from NewVerifier, never a pass-through.
// Every comparison is constant-time, every secret of a rotation is tried,
// and the work a hostile header can cause is bounded. Errors say which kind
// of failure it was (for the audit trail) and never what was expected.
package signature
