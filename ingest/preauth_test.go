package ingest_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/hookstream/hookstream/ingest"
)

// signedLimited returns the headers of a request to the limitedsig source
// (burst 2) signed with its secret.
func signedLimited(t *testing.T, eventID string, body []byte) http.Header {
	return merge(jsonHeaders("X-Event-Id", eventID, "X-Customer-Id", "cus_l"),
		sign(t, "hmac-sha256", limitedSecret, "", body, time.Now(), "X-Signature", "hex"))
}

// TestUnsignedRequestsDoNotSpendTheRateLimit: a source's rate limit is
// spent by verified requests only. Two unsigned POSTs to a source with
// burst 2 once made the provider's next signed delivery a 429 (GitHub
// does not retry: it was lost); now both signed deliveries after them are
// accepted, and the limit still holds for verified ones.
func TestUnsignedRequestsDoNotSpendTheRateLimit(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	body := []byte(`{"n":1}`)
	for range 2 {
		if status, _, out := tb.post("/webhooks/limitedsig", jsonHeaders("X-Event-Id", "junk", "X-Customer-Id", "c"), body); status != http.StatusUnauthorized {
			t.Fatalf("unsigned: status %d %s, want 401", status, out)
		}
	}
	for _, id := range []string{"evt_l1", "evt_l2"} {
		if status, _, out := tb.post("/webhooks/limitedsig", signedLimited(t, id, body), body); status != http.StatusAccepted {
			t.Errorf("signed %s after two unsigned requests: status %d %s, want 202", id, status, out)
		}
	}
	status, h, out := tb.post("/webhooks/limitedsig", signedLimited(t, "evt_l3", body), body)
	if status != http.StatusTooManyRequests || decodeError(t, out).Error.Code != ingest.CodeRateLimited || h.Get("Retry-After") == "" {
		t.Errorf("third signed request: status %d %s (Retry-After %q), want 429 rate_limited: the burst of 2 is spent", status, out, h.Get("Retry-After"))
	}
	if n := len(tb.events()); n != 2 {
		t.Errorf("%d events stored, want the 2 accepted", n)
	}
}
