package ingest_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hookstream/hookstream/audit"
	"github.com/hookstream/hookstream/ingest"
	"github.com/hookstream/hookstream/internal/testenv"
	"github.com/hookstream/hookstream/internal/wire"
)

// consumeDecisions writes the decisions that travel in the events topic's
// records into audit_log, as the consumer does when it reads them.
func (tb *testBundle) consumeDecisions() {
	tb.t.Helper()
	var recs []*wire.AuditRecord
	for _, r := range tb.events() {
		a := tb.decision(r)
		recs = append(recs, &a)
	}
	err := pgx.BeginFunc(context.Background(), tb.pool, func(tx pgx.Tx) error {
		return audit.Writer{}.WriteIfAbsent(context.Background(), tx, recs...)
	})
	if err != nil {
		tb.t.Fatal(err)
	}
}

// TestReplayUnderNewID: GitHub, Shopify and header-id hmac-sha256 sign the
// body alone, not the id header. A captured delivery sent again under a
// fresh id is a duplicate (the source's duplicate status, a DUPLICATE
// record with reason replayed_body naming the first event), is not
// produced again, and does not re-drive a FAILED event whose id it names;
// under another shop's domain too. Another body under a new id is new.
//
// The first receiver takes the first deliveries and catches replays from
// memory before the consumer has recorded them; a second one, on the same
// database, finds the rest through audit_log (a restart, another replica).
func TestReplayUnderNewID(t *testing.T) {
	t.Parallel()
	dbURL := testenv.Postgres(t)
	onDB := func(o *setupOpts) { o.databaseURL = dbURL }
	tb := setup(t, onDB)
	now := time.Now()
	ghBody := []byte(`{"action":"opened","repository":{"owner":{"login":"octo"}}}`)
	ghHeaders := func(id string) http.Header {
		return merge(jsonHeaders("X-GitHub-Delivery", id, "X-GitHub-Event", "issues"), sign(t, "github", githubSecret, "", ghBody, now, "", ""))
	}
	spBody := []byte(`{"id":820982911946154500,"email":"jon@example.com"}`)
	spHeaders := func(id, shop string) http.Header {
		return merge(jsonHeaders("X-Shopify-Webhook-Id", id, "X-Shopify-Shop-Domain", shop, "X-Shopify-Topic", "orders/create"), sign(t, "shopify", shopifySecret, "", spBody, now, "", ""))
	}
	hmBody := []byte(`{"anything":true}`)
	hmHeaders := func(id string) http.Header {
		return merge(jsonHeaders("X-Event-Id", id, "X-Customer-Id", "cus_B"), sign(t, "hmac-sha256", hmacB64Secret, "", hmBody, now, "X-Hub-Sig", "base64"))
	}
	first := []struct {
		path string
		h    http.Header
		body []byte
	}{
		{"/webhooks/github", ghHeaders("gh-1"), ghBody},
		{"/webhooks/shopify", spHeaders("sp-1", "a.myshopify.com"), spBody},
		{"/webhooks/hmacb64", hmHeaders("hm-1"), hmBody},
	}
	for _, f := range first {
		if status, _, out := tb.post(f.path, f.h, f.body); status != http.StatusAccepted {
			t.Fatalf("%s first delivery: %d %s", f.path, status, out)
		}
	}
	// At once, before any consumer has read them: this receiver remembers.
	if status, _, out := tb.post("/webhooks/github", ghHeaders("gh-quick"), ghBody); status != http.StatusConflict {
		t.Errorf("replay before the first delivery is recorded: %d %s, want 409", status, out)
	}
	if n := len(tb.events()); n != len(first) {
		t.Errorf("events topic holds %d records, want the %d first deliveries only", n, len(first))
	}
	tb.consumeDecisions()
	tb = setup(t, onDB)
	tb.setStatus("github", "gh-failed", ingest.StatusFailed)

	replays := []struct {
		name, path, id string
		h              http.Header
		body           []byte
		replayOf       string
	}{
		{"github, new delivery id", "/webhooks/github", "gh-2", ghHeaders("gh-2"), ghBody, "gh-1"},
		{"github, a FAILED event's id", "/webhooks/github", "gh-failed", ghHeaders("gh-failed"), ghBody, "gh-1"},
		{"shopify, new id and another shop", "/webhooks/shopify", "sp-2", spHeaders("sp-2", "b.myshopify.com"), spBody, "sp-1"},
		{"hmac-sha256, new id header", "/webhooks/hmacb64", "hm-2", hmHeaders("hm-2"), hmBody, "hm-1"},
	}
	for _, c := range replays {
		status, _, out := tb.post(c.path, c.h, c.body)
		if status != http.StatusConflict {
			t.Errorf("%s: status %d %s, want 409", c.name, status, out)
		}
	}
	if n := len(tb.events()); n != 0 {
		t.Errorf("events topic of the second receiver holds %d records, want none", n)
	}
	found := map[string]string{}
	for _, a := range tb.audits() {
		if a.Action == wire.ActionDuplicate && a.Reason == "replayed_body" {
			found[a.EventID], _ = a.Detail["replay_of"].(string)
		}
	}
	for _, c := range replays {
		if found[c.id] != c.replayOf {
			t.Errorf("%s: DUPLICATE replayed_body record names %q, want replay_of %q (records: %v)", c.name, found[c.id], c.replayOf, found)
		}
	}

	// Another signed body under a new id is a new event, and the first
	// delivery's own retry is the ordinary duplicate of its id.
	other := []byte(`{"action":"closed","repository":{"owner":{"login":"octo"}}}`)
	h := merge(jsonHeaders("X-GitHub-Delivery", "gh-3", "X-GitHub-Event", "issues"), sign(t, "github", githubSecret, "", other, now, "", ""))
	if status, _, out := tb.post("/webhooks/github", h, other); status != http.StatusAccepted {
		t.Errorf("another body under a new id: %d %s, want 202", status, out)
	}
	if status, _, out := tb.post("/webhooks/github", ghHeaders("gh-1"), ghBody); status != http.StatusAccepted {
		t.Errorf("the first delivery again under its own id (no events row here): %d %s, want 202", status, out)
	}
}

// TestSameBodyToAnotherSource: a replay is a body its source accepted
// before. Another source sent the same body (a repository's and an
// organization's GitHub hook get the same event) is a delivery of its
// own: accepted while the receiver remembers the first one's digest, and
// after the database holds it. The remembered digest once ignored the
// source, and the second source's delivery was answered 409.
func TestSameBodyToAnotherSource(t *testing.T) {
	t.Parallel()
	dbURL := testenv.Postgres(t)
	onDB := func(o *setupOpts) { o.databaseURL = dbURL }
	tb := setup(t, onDB)
	body := []byte(`{"anything":"shared"}`)
	hm := func(id string) http.Header {
		return merge(jsonHeaders("X-Event-Id", id, "X-Customer-Id", "cus_B"), sign(t, "hmac-sha256", hmacB64Secret, "", body, time.Now(), "X-Hub-Sig", "base64"))
	}
	if status, _, out := tb.post("/webhooks/hmacb64", hm("shared-1"), body); status != http.StatusAccepted {
		t.Fatalf("first source: %d %s", status, out)
	}
	if status, _, out := tb.post("/webhooks/limitedsig", signedLimited(t, "shared-2", body), body); status != http.StatusAccepted {
		t.Errorf("the same body to another source, remembered by this receiver: %d %s, want 202", status, out)
	}
	tb.consumeDecisions()
	tb = setup(t, onDB) // forgets the digests: the database answers
	if status, _, out := tb.post("/webhooks/limitedsig", signedLimited(t, "shared-3", body), body); status != http.StatusConflict {
		t.Errorf("the body again to the second source under a new id: %d %s, want 409 (a replay there)", status, out)
	}
}

// TestReplayWithinToleranceUnderNewID: a scheme that signs a timestamp
// bounds a replay to its tolerance, but within it a captured delivery
// still verifies under any id header the signature does not cover (here
// standard-webhooks reading its id from X-Event-Id, not its signed
// webhook-id): refused as a replay of the first, as for the schemes that
// sign the body alone. Such sources were not guarded.
func TestReplayWithinToleranceUnderNewID(t *testing.T) {
	t.Parallel()
	tb := setup(t, func(o *setupOpts) { o.databaseURL = testenv.Postgres(t) })
	body := []byte(`{"customer_id":"cus_R","type":"user.created"}`)
	signed := sign(t, "standard-webhooks", swSecret, "msg_r1", body, time.Now(), "", "")
	if status, _, out := tb.post("/webhooks/swhdr", merge(jsonHeaders("X-Event-Id", "r-1"), signed), body); status != http.StatusAccepted {
		t.Fatalf("first delivery: %d %s", status, out)
	}
	if status, _, out := tb.post("/webhooks/swhdr", merge(jsonHeaders("X-Event-Id", "r-2"), signed), body); status != http.StatusConflict {
		t.Errorf("the captured delivery under a new X-Event-Id: %d %s, want 409", status, out)
	}
	// The scheme's own id is signed: a source reading it needs no guard.
	if status, _, out := tb.post("/webhooks/sw", merge(jsonHeaders(), signed), body); status != http.StatusAccepted {
		t.Errorf("the same body at a source whose id is webhook-id: %d %s, want 202", status, out)
	}
}
