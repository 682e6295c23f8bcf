// Package signature owns webhook signature schemes: verifying a request's
// headers and raw body in each provider's documented scheme (Standard
// Webhooks, Stripe, GitHub, Shopify, a configurable HMAC-SHA256 header, and
// an explicit "none"), producing the same headers for tests, `hookstream
// bench` and the example request `hookstream dev` prints, and naming each
// scheme's natural event id (NaturalEventID) for the receiver's default
// dedupe key. It is pure: no I/O, no clock (the caller passes now).
//
// Verification fails closed: an unknown scheme, or a scheme other than
// "none" without a usable secret, is a configuration error from NewVerifier
// and NewSigner, never a pass-through. Every comparison is constant-time,
// every secret of a rotation is tried, and the work a hostile header can
// cause is bounded (header length, number of signature entries). A failed
// verification wraps one of ErrMissing, ErrMalformed, ErrStale or
// ErrMismatch (all 401 to the caller); the context says which kind of
// failure it was, for the audit trail, and never what was expected.
package signature
