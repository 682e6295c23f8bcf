package ingest_test

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/hookstream/hookstream/ingest"
)

// TestCapturedDeliveryReplaysDoNotSpendTheRateLimit: the source's rate
// limit is taken after the signature so that strangers cannot make a
// provider's next delivery a 429 (GitHub does not retry: it is lost). A
// stranger holding one captured delivery of a source whose signature
// covers the body alone (github, shopify, hmac-sha256) has no secret
// either ("What an anonymous client can cost": anonymous is "one without
// a source's secret"), and its replays are refused as duplicates
// (replayed_body, or the same id again): they must not spend the limit
// the provider's next delivery needs. (It failed: each replay verified
// and spent a token before the duplicate check, so one replay on a
// source with burst 2 made the provider's next delivery a 429.)
//
// Nor do replays make the stranger's address pass for the provider's:
// a replay under a new id is charged to its address as a failure is, so
// past its pre-auth budget the stranger is refused (429 address_limited)
// while the provider's deliveries from its own address go on.
func TestCapturedDeliveryReplaysDoNotSpendTheRateLimit(t *testing.T) {
	t.Parallel()
	tb := setup(t, func(o *setupOpts) {
		o.configure = func(c *ingest.Config) {
			// Addresses come from X-Forwarded-For (the test's client is
			// 127.0.0.1, a trusted proxy).
			c.PreAuth = ingest.PreAuthConfig{PerSecond: 0.001, Burst: 3, MaxAddresses: 64,
				TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}
		}
	})
	const provider, stranger = "203.0.113.7", "198.51.100.1"
	from := func(h http.Header, addr string) http.Header {
		h = h.Clone()
		h.Set("X-Forwarded-For", addr)
		return h
	}
	first := []byte(`{"n":"evt_cap1"}`)
	captured := signedLimited(t, "evt_cap1", first)
	if status, _, out := tb.post("/webhooks/limitedsig", from(captured, provider), first); status != http.StatusAccepted {
		t.Fatalf("provider's first delivery: status %d %s, want 202", status, out)
	}
	// Processed (no consumer runs here: its row, as it writes it).
	if _, err := tb.pool.Exec(context.Background(), `INSERT INTO events (source, event_id, customer_id, status)
VALUES ('limitedsig', 'evt_cap1', 'c', 'PROCESSED')`); err != nil {
		t.Fatal(err)
	}
	// The same delivery again, as the provider's retry or a stranger's
	// replay under its own id: a duplicate, which spends no token.
	if status, _, out := tb.post("/webhooks/limitedsig", from(captured, stranger), first); status != http.StatusConflict {
		t.Fatalf("the captured delivery again: status %d %s, want 409 duplicate", status, out)
	}
	// The stranger sends the captured request under fresh ids until its
	// address's budget (3) is spent.
	for i := range 3 {
		replay := captured.Clone()
		replay.Set("X-Event-Id", fmt.Sprintf("evt_forged%d", i))
		if status, _, out := tb.post("/webhooks/limitedsig", from(replay, stranger), first); status != http.StatusConflict {
			t.Fatalf("replay %d under a new id: status %d %s, want 409 duplicate", i, status, out)
		}
	}
	replay := captured.Clone()
	replay.Set("X-Event-Id", "evt_forged_more")
	if status, _, out := tb.post("/webhooks/limitedsig", from(replay, stranger), first); status != http.StatusTooManyRequests || !strings.Contains(string(out), ingest.CodeAddressLimited) {
		t.Errorf("a replay past the stranger's budget: status %d %s, want 429 %s", status, out, ingest.CodeAddressLimited)
	}
	next := []byte(`{"n":"evt_cap2"}`)
	if status, _, out := tb.post("/webhooks/limitedsig", from(signedLimited(t, "evt_cap2", next), provider), next); status != http.StatusAccepted {
		t.Errorf("provider's next delivery after the replays: status %d %s, want 202 (burst 2, one event accepted)", status, out)
	}
}
