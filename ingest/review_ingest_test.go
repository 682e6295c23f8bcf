package ingest_test

import (
	"net/http"
	"testing"
)

// TestCapturedDeliveryReplaysDoNotSpendTheRateLimit: the source's rate
// limit is taken after the signature so that strangers cannot make a
// provider's next delivery a 429 (GitHub does not retry: it is lost). A
// stranger holding one captured delivery of a source whose signature
// covers the body alone (github, shopify, hmac-sha256) has no secret
// either ("What an anonymous client can cost": anonymous is "one without
// a source's secret"), and its replays are refused as duplicates
// (replayed_body, or the same id again): they must not spend the limit
// the provider's next delivery needs. (It fails: each replay verifies and
// spends a token before the duplicate check, so one replay on a source
// with burst 2 made the provider's next delivery a 429.)
func TestCapturedDeliveryReplaysDoNotSpendTheRateLimit(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	first := []byte(`{"n":"evt_cap1"}`)
	captured := signedLimited(t, "evt_cap1", first)
	if status, _, out := tb.post("/webhooks/limitedsig", captured, first); status != http.StatusAccepted {
		t.Fatalf("provider's first delivery: status %d %s, want 202", status, out)
	}
	// The stranger sends the captured request again under a fresh id.
	replay := captured.Clone()
	replay.Set("X-Event-Id", "evt_forged")
	if status, _, out := tb.post("/webhooks/limitedsig", replay, first); status != http.StatusConflict {
		t.Fatalf("replay under a new id: status %d %s, want 409 duplicate", status, out)
	}
	next := []byte(`{"n":"evt_cap2"}`)
	if status, _, out := tb.post("/webhooks/limitedsig", signedLimited(t, "evt_cap2", next), next); status != http.StatusAccepted {
		t.Errorf("provider's next delivery after one replay of a captured one: status %d %s, want 202 (burst 2, one event accepted)", status, out)
	}
}
