package ingest_test

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/hookstream/hookstream/ingest"
	"github.com/hookstream/hookstream/internal/wire"
)

// hardeningCase is a request that must be refused with status and code,
// with a detail containing detail when set.
type hardeningCase struct {
	name   string
	path   string
	h      http.Header
	body   []byte
	status int
	code   string
	detail string
}

// checkRefused posts each case and checks its answer (a 401 without
// details), its REJECTED record, and that nothing reached the events
// topic.
func checkRefused(t *testing.T, tb *testBundle, prefix string, cases []hardeningCase) {
	t.Helper()
	for i, c := range cases {
		reqID := prefix + strconv.Itoa(i)
		c.h.Set("X-Request-Id", reqID)
		status, _, out := tb.post(c.path, c.h, c.body)
		if status != c.status {
			t.Errorf("%s: status %d, want %d (body %s)", c.name, status, c.status, out)
			continue
		}
		eb := decodeError(t, out)
		if eb.Error.Code != c.code {
			t.Errorf("%s: code %q, want %q (%s)", c.name, eb.Error.Code, c.code, out)
		}
		if c.detail != "" && !contains(eb.Error.Details, c.detail) {
			t.Errorf("%s: details %q lack %q", c.name, eb.Error.Details, c.detail)
		}
		if status == http.StatusUnauthorized && (len(eb.Error.Details) > 0 || eb.Error.Message != "signature verification failed") {
			t.Errorf("%s: a 401 must not explain itself: %s", c.name, out)
		}
		audits := tb.auditFor(reqID)
		if len(audits) != 1 || audits[0].Action != wire.ActionRejected || audits[0].Reason != c.code || audits[0].HTTPStatus != c.status {
			t.Errorf("%s: audit %+v, want one REJECTED %s %d", c.name, audits, c.code, c.status)
		}
	}
	if recs := tb.events(); len(recs) != 0 {
		t.Errorf("refused requests reached the events topic: %d records, first %q", len(recs), recs[0].Value)
	}
}

// TestIDsThatHideOrCollide: ids with format characters (bidi controls,
// zero-width), line or paragraph separators, only whitespace, or a lone
// surrogate (which decodes to U+FFFD, so two ids would become one) are
// refused with invalid_id; in the body or in a header.
func TestIDsThatHideOrCollide(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	open := func(id string) []byte { return []byte(`{"id":"` + id + `","customer":"c"}`) }
	b64 := []byte(`{}`)
	cases := []hardeningCase{
		{"right-to-left override", "/webhooks/open", jsonHeaders(), open(`inv\u202egpj`), 400, ingest.CodeInvalidID, "format character"},
		{"zero-width space", "/webhooks/open", jsonHeaders(), open(`a\u200bb`), 400, ingest.CodeInvalidID, "format character"},
		{"byte order mark", "/webhooks/open", jsonHeaders(), open(`\ufeffa`), 400, ingest.CodeInvalidID, "format character"},
		{"line separator", "/webhooks/open", jsonHeaders(), open(`a\u2028b`), 400, ingest.CodeInvalidID, "separator"},
		{"paragraph separator", "/webhooks/open", jsonHeaders(), open(`a\u2029b`), 400, ingest.CodeInvalidID, "separator"},
		{"only spaces", "/webhooks/open", jsonHeaders(), open(`   `), 400, ingest.CodeInvalidID, "whitespace"},
		{"only a no-break space", "/webhooks/open", jsonHeaders(), open(`\u00a0`), 400, ingest.CodeInvalidID, "whitespace"},
		{"lone surrogate", "/webhooks/open", jsonHeaders(), open(`a\ud800`), 400, ingest.CodeInvalidID, "surrogate"},
		{"zero-width joiner in a header", "/webhooks/hmacb64", merge(jsonHeaders("X-Event-Id", "e\u200d1", "X-Customer-Id", "c"), sign(t, "hmac-sha256", hmacB64Secret, "", b64, time.Now(), "X-Hub-Sig", "base64")), b64, 400, ingest.CodeInvalidID, "format character"},
	}
	checkRefused(t, tb, "id-", cases)
}

// TestContentEncodingRefused: a compressed body is 415
// unsupported_encoding, not the 401 (or 400) it got when its bytes were
// verified as they came; identity is accepted.
func TestContentEncodingRefused(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	good := genericBody("evt_enc", "cus_enc")
	withEnc := func(enc string) http.Header {
		h := signedGeneric(good)
		h.Set("Content-Encoding", enc)
		return h
	}
	cases := []hardeningCase{
		{"gzip", "/webhooks/generic", withEnc("gzip"), good, 415, ingest.CodeUnsupportedEncoding, ""},
		{"identity, br", "/webhooks/generic", withEnc("identity, br"), good, 415, ingest.CodeUnsupportedEncoding, ""},
		{"unknown coding", "/webhooks/generic", withEnc("x-made-up"), good, 415, ingest.CodeUnsupportedEncoding, ""},
	}
	checkRefused(t, tb, "enc-", cases)
	if status, _, out := tb.post("/webhooks/generic", withEnc("Identity"), good); status != http.StatusAccepted {
		t.Errorf("Content-Encoding: identity: %d %s, want 202", status, out)
	}
}

// TestUnauthorizedNamesTheScheme: a 401 carries WWW-Authenticate, as HTTP
// requires, naming the source's scheme (and the source as the realm).
func TestUnauthorizedNamesTheScheme(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	for _, c := range []struct{ source, want string }{
		{"generic", `hmac-sha256 realm="generic"`},
		{"github", `github realm="github"`},
		{"stripe", `stripe realm="stripe"`},
		{"sw", `standard-webhooks realm="sw"`},
	} {
		status, h, out := tb.post("/webhooks/"+c.source, jsonHeaders(), []byte(`{}`))
		if status != http.StatusUnauthorized {
			t.Errorf("%s: unsigned request answered %d %s, want 401", c.source, status, out)
			continue
		}
		if got := h.Values("WWW-Authenticate"); len(got) != 1 || got[0] != c.want {
			t.Errorf("%s: WWW-Authenticate %q, want %q", c.source, got, c.want)
		}
	}
}

// TestShopifyHeadersWithoutPrefix: Shopify's newer header names without
// X- (shopify-hmac-sha256, shopify-webhook-id, shopify-topic,
// shopify-shop-domain) are verified and read like the X- ones; the two
// spellings of an id must agree.
func TestShopifyHeadersWithoutPrefix(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	body := []byte(`{"id":820982911946154501,"email":"jon@example.com"}`)
	sig := sign(t, "shopify", shopifySecret, "", body, time.Now(), "", "").Get("X-Shopify-Hmac-Sha256")
	h := http.Header{"Content-Type": {"application/json"}, "shopify-hmac-sha256": {sig}, "shopify-webhook-id": {"wh-new-1"},
		"shopify-topic": {"orders/create"}, "shopify-shop-domain": {"new.myshopify.com"}}
	if status, _, out := tb.post("/webhooks/shopify", h, body); status != http.StatusAccepted {
		t.Fatalf("unprefixed headers: %d %s, want 202", status, out)
	}
	recs := tb.events()
	if len(recs) != 1 || header(recs[0], wire.HeaderEventID) != "wh-new-1" || header(recs[0], wire.HeaderCustomerID) != "new.myshopify.com" ||
		header(recs[0], wire.HeaderEventType) != "orders/create" {
		t.Fatalf("events %v, want one wh-new-1 of new.myshopify.com, orders/create", recs)
	}
	bad := http.Header{"Content-Type": {"application/json"}, "shopify-hmac-sha256": {"AAAA" + sig[4:]}, "shopify-webhook-id": {"wh-new-2"},
		"shopify-shop-domain": {"new.myshopify.com"}}
	if status, _, out := tb.post("/webhooks/shopify", bad, body); status != http.StatusUnauthorized {
		t.Errorf("a wrong unprefixed signature: %d %s, want 401", status, out)
	}
	both := merge(jsonHeaders("X-Shopify-Webhook-Id", "wh-a", "X-Shopify-Shop-Domain", "new.myshopify.com", "X-Shopify-Hmac-Sha256", sig))
	both["shopify-webhook-id"] = []string{"wh-b"}
	if status, _, out := tb.post("/webhooks/shopify", both, body); status != http.StatusBadRequest || !contains(decodeError(t, out).Error.Details, "differ") {
		t.Errorf("ids differing between the two spellings: %d %s, want 400 naming both", status, out)
	}
}

// TestAmbiguousJSON: a body that another parser could read differently —
// a key twice in one object, or a key differing only in case from an id's
// key along a source's pointers — is 400 ambiguous_json; such keys
// elsewhere in the payload are fine.
func TestAmbiguousJSON(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	g := func(body string) (http.Header, []byte) { return signedGeneric([]byte(body)), []byte(body) }
	st := func(body string) (http.Header, []byte) {
		return merge(jsonHeaders(), sign(t, "stripe", stripeSecret, "", []byte(body), time.Now(), "", "")), []byte(body)
	}
	h1, b1 := g(`{"event_id":"e1","customer_id":"c","event_type":"t","payload":{},"event_id":"e2"}`)
	h2, b2 := g(`{"event_id":"e1","customer_id":"c","event_type":"t","payload":{},"Event_ID":"e2"}`)
	h3, b3 := g(`{"event_id":"e1","customer_id":"c","event_type":"t","payload":{"a":1,"a":2}}`)
	h4, b4 := st(`{"id":"evt_amb","type":"t","data":{"object":{"customer":"c1","CUSTOMER":"c2"}}}`)
	h5, b5 := g(`{"event_id":"e1","customer_id":"c","event_type":"t","payload":{},"event_\u0069d":"e2"}`)
	h6, b6 := st(`{"id":"evt_amb2","type":"t","data":{"object":{"customer":"c1"}},"ID":"evt_other"}`)
	cases := []hardeningCase{
		{"event_id twice", "/webhooks/generic", h1, b1, 400, ingest.CodeAmbiguousJSON, `"event_id" appears twice`},
		{"Event_ID beside event_id", "/webhooks/generic", h2, b2, 400, ingest.CodeAmbiguousJSON, "only in case"},
		{"a payload key twice", "/webhooks/generic", h3, b3, 400, ingest.CodeAmbiguousJSON, "appears twice"},
		{"customer key in two cases along the pointer", "/webhooks/stripe", h4, b4, 400, ingest.CodeAmbiguousJSON, "only in case"},
		{"event_id twice, once escaped", "/webhooks/generic", h5, b5, 400, ingest.CodeAmbiguousJSON, "appears twice"},
		{"ID beside the natural id", "/webhooks/stripe", h6, b6, 400, ingest.CodeAmbiguousJSON, "only in case"},
		{"duplicate at a none source", "/webhooks/open", jsonHeaders(), []byte(`{"id":"1","customer":"c","x":{"k":1,"k":2}}`), 400, ingest.CodeAmbiguousJSON, "appears twice"},
	}
	checkRefused(t, tb, "amb-", cases)
	ok := []byte(`{"id":"evt_meta","type":"t","data":{"object":{"customer":"c1","metadata":{"Customer":"x","ID":"y"}}}}`)
	if status, _, out := tb.post("/webhooks/stripe", merge(jsonHeaders(), sign(t, "stripe", stripeSecret, "", ok, time.Now(), "", "")), ok); status != http.StatusAccepted {
		t.Errorf("keys off the pointers' paths in other cases: %d %s, want 202", status, out)
	}
}
