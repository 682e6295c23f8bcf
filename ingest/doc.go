// Package ingest is hookstream's HTTP receiver: POST /webhooks/{source}.
//
// For each request it finds the source, checks the client address's
// budget of requests that failed before authentication, checks the content
// type and size, reads the body into pooled buffers under a memory budget
// for unverified bodies, verifies the signature, validates the body
// (well-formed UTF-8 JSON, then the source's JSON Schema), extracts
// event_id, customer_id and event_type, asks the events table whether the
// event was seen before (read-only; concurrent look-ups share one query),
// spends the source's rate limit for an event to produce (only then: a
// duplicate, a replay among them, spends nothing), and produces the raw
// body to the events topic keyed by customer_id. It answers 202 only
// after the broker acknowledged the record with acks=all, and 503 with
// Retry-After when it did not within the produce timeout, so a 2xx always
// means the event is durable. Every decision is audited: an
// accepted event carries its ACCEPTED (or RETRY_ACCEPTED) record inside the
// event record, in the header wire.HeaderAudit, so the one acknowledgement
// covers both; a duplicate's DUPLICATE record is produced to the audit
// topic and awaited, and answered 503 when it is not acknowledged; a
// rejection's REJECTED record is best effort, its failures counted, and an
// anonymous rejection past its source and reason's rate is folded into a
// periodic summary record. What an anonymous client can cost is bounded in
// preauth.go, body.go and rejectaudit.go (docs/design.md, "What an
// anonymous client can cost").
//
// ingest does not import consumer or audit; cmd/hookstream wires them.
package ingest
