package ingest_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/hookstream/hookstream/ingest"
	"github.com/hookstream/hookstream/internal/wire"
)

func TestAcceptedEventIsInKafkaByteForByte(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	body := genericBody("evt_1", "cus_1")
	h := signedGeneric(body)
	h.Set("X-Request-Id", "req-accepted-1")
	h.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")

	status, rh, out := tb.post("/webhooks/generic", h, body)
	if status != http.StatusAccepted {
		t.Fatalf("status %d, body %s", status, out)
	}
	var got map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if got["event_id"] != "evt_1" || got["status"] != "accepted" || len(got) != 2 {
		t.Fatalf("body %s", out)
	}
	if rh.Get("X-Request-Id") != "req-accepted-1" {
		t.Errorf("X-Request-Id %q", rh.Get("X-Request-Id"))
	}

	recs := tb.events()
	if len(recs) != 1 {
		t.Fatalf("%d records in events topic, want 1", len(recs))
	}
	r := recs[0]
	if string(r.Key) != "cus_1" {
		t.Errorf("key %q, want customer id", r.Key)
	}
	if !bytes.Equal(r.Value, body) {
		t.Errorf("value %q, want the raw body %q", r.Value, body)
	}
	for k, want := range map[string]string{
		wire.HeaderEventID: "evt_1", wire.HeaderSource: "generic", wire.HeaderCustomerID: "cus_1",
		wire.HeaderEventType:   "invoice.paid",
		wire.HeaderContentType: "application/json", wire.HeaderTraceparent: h.Get("Traceparent"),
	} {
		if got := header(r, k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	if _, err := time.Parse(time.RFC3339Nano, header(r, wire.HeaderReceivedAt)); err != nil {
		t.Errorf("received-at: %v", err)
	}

	// The request id is the server's; the client's is echoed and recorded.
	requestID := header(r, wire.HeaderRequestID)
	if id, err := uuid.Parse(requestID); err != nil || id.Version() != 7 {
		t.Errorf("request-id header %q, want the server's UUIDv7 (%v)", requestID, err)
	}
	// The decision travels with the event, not on the audit topic.
	a := tb.decision(r)
	if a.Action != wire.ActionAccepted || a.EventID != "evt_1" || a.Source != "generic" || a.CustomerID != "cus_1" ||
		a.EventType != "invoice.paid" || a.HTTPStatus != 202 || a.Actor != wire.ActorIngest || a.Instance != "test" ||
		a.RequestID != requestID || a.Detail[wire.DetailClientRequestID] != "req-accepted-1" || a.Partition != nil || a.Offset != nil {
		t.Errorf("decision %+v", a)
	}
	if audits := tb.auditFor("req-accepted-1"); len(audits) != 0 {
		t.Errorf("audit topic holds %+v, want nothing for an accepted event", audits)
	}
}

// Each provider's scheme, signed as the provider would, with its natural
// event id and configured customer/type locators.
func TestEachSchemeAccepted(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	now := time.Now()
	stripeBody := []byte(`{"id":"evt_stripe_1","type":"invoice.paid","data":{"object":{"customer":"cus_S"}}}`)
	githubBody := []byte(`{"action":"opened","repository":{"owner":{"login":"octo"}}}`)
	shopifyBody := []byte(`{"id":820982911946154500,"email":"jon@example.com"}`)
	swBody := []byte(`{"type":"user.created","customer_id":"cus_W"}`)
	b64Body := []byte(`{"anything":true}`)
	openBody := []byte(`{"id":12345,"customer":"cus_O"}`)
	cases := []struct {
		name, path string
		h          http.Header
		body       []byte
		eventID    string
		customer   string
		eventType  string
	}{
		{"stripe", "/webhooks/stripe", merge(jsonHeaders(), sign(t, "stripe", stripeSecret, "", stripeBody, now, "", "")), stripeBody, "evt_stripe_1", "cus_S", "invoice.paid"},
		{"github", "/webhooks/github", merge(jsonHeaders("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958", "X-GitHub-Event", "issues"), sign(t, "github", githubSecret, "", githubBody, now, "", "")), githubBody, "72d3162e-cc78-11e3-81ab-4c9367dc0958", "octo", "issues"},
		{"shopify", "/webhooks/shopify", merge(jsonHeaders("X-Shopify-Webhook-Id", "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043", "X-Shopify-Shop-Domain", "shop.myshopify.com", "X-Shopify-Topic", "orders/create"), sign(t, "shopify", shopifySecret, "", shopifyBody, now, "", "")), shopifyBody, "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043", "shop.myshopify.com", "orders/create"},
		{"standard-webhooks", "/webhooks/sw", merge(jsonHeaders(), sign(t, "standard-webhooks", swSecret, "msg_2Kx", swBody, now, "", "")), swBody, "msg_2Kx", "cus_W", "user.created"},
		{"hmac-sha256 base64", "/webhooks/hmacb64", merge(jsonHeaders("X-Event-Id", "e-b64", "X-Customer-Id", "cus_B"), sign(t, "hmac-sha256", hmacB64Secret, "", b64Body, now, "X-Hub-Sig", "base64")), b64Body, "e-b64", "cus_B", ""},
		{"none with numeric id", "/webhooks/open", jsonHeaders(), openBody, "12345", "cus_O", ""},
		{"generic with rotated secret", "/webhooks/generic", merge(jsonHeaders(), sign(t, "hmac-sha256", "generic-old-secret", "", genericBody("evt_rot", "cus_R"), now, "X-Signature", "hex")), genericBody("evt_rot", "cus_R"), "evt_rot", "cus_R", "invoice.paid"},
	}
	for _, c := range cases {
		status, _, out := tb.post(c.path, c.h, c.body)
		if status != http.StatusAccepted {
			t.Errorf("%s: status %d, body %s", c.name, status, out)
		}
	}
	recs := tb.events()
	byID := map[string]int{}
	for i, r := range recs {
		byID[header(r, wire.HeaderEventID)] = i
	}
	for _, c := range cases {
		i, ok := byID[c.eventID]
		if !ok {
			t.Errorf("%s: event %s not in topic", c.name, c.eventID)
			continue
		}
		r := recs[i]
		if string(r.Key) != c.customer || header(r, wire.HeaderCustomerID) != c.customer || header(r, wire.HeaderEventType) != c.eventType || !bytes.Equal(r.Value, c.body) {
			t.Errorf("%s: key %q customer %q type %q value %q", c.name, r.Key, header(r, wire.HeaderCustomerID), header(r, wire.HeaderEventType), r.Value)
		}
	}
	if len(recs) != len(cases) {
		t.Errorf("%d records, want %d", len(recs), len(cases))
	}
}

func merge(hs ...http.Header) http.Header {
	out := http.Header{}
	for _, h := range hs {
		for k, v := range h {
			out[k] = v
		}
	}
	return out
}

// TestBadInput: every bad request gets its 4xx with a clear error body,
// is audited as REJECTED with its reason, and changes nothing else: no
// record reaches the events topic.
func TestBadInput(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	now := time.Now()
	g := func(body string) (http.Header, []byte) { return signedGeneric([]byte(body)), []byte(body) }
	withCT := func(ct string, body []byte) http.Header {
		h := signedGeneric(body)
		if ct == "" {
			h.Del("Content-Type")
		} else {
			h.Set("Content-Type", ct)
		}
		return h
	}
	good := genericBody("evt_bad", "cus_bad")
	huge := bytes.Repeat([]byte("a"), 1<<20+1)
	stripeBody := []byte(`{"id":"evt_s","data":{"object":{"customer":"c"}}}`)
	stripeNoID := []byte(`{"data":{"object":{"customer":"c"}}}`)
	githubBody := []byte(`{"repository":{"owner":{"login":"octo"}}}`)
	githubNoOwner := []byte(`{"repository":{}}`)
	swBody := []byte(`{"type":"t","customer_id":"c"}`)
	stale := now.Add(-10 * time.Minute)
	future := now.Add(10 * time.Minute)
	longID := strings.Repeat("x", 300)

	h1, b1 := g(`{"event_id":`)
	h2, b2 := g(``)
	h3, b3 := g(`{"event_id":"e","customer_id":"c","event_type":"t","payload":{}} {}`)
	h4, b4 := g(`{"event_id":7,"customer_id":"c","event_type":"t","payload":{}}`)
	h5, b5 := g(`{"event_id":"e","event_type":"t","payload":{}}`)
	h6, b6 := g(`{"event_id":"e","customer_id":"c","event_type":"t","payload":"x"}`)
	h7, b7 := g(`[1,2,3]`)
	h8, b8 := g(`{"event_id":"","customer_id":"c","event_type":"t","payload":{}}`)
	nonUTF8 := []byte("{\"event_id\":\"e\xff\xfe\",\"customer_id\":\"c\",\"event_type\":\"t\",\"payload\":{}}")
	cases := []hardeningCase{
		{"unknown source", "/webhooks/nope", signedGeneric(good), good, 404, ingest.CodeUnknownSource, ""},
		{"no content type", "/webhooks/generic", withCT("", good), good, 415, ingest.CodeUnsupportedMediaType, ""},
		{"text/plain", "/webhooks/generic", withCT("text/plain", good), good, 415, ingest.CodeUnsupportedMediaType, ""},
		{"form content type", "/webhooks/generic", withCT("application/x-www-form-urlencoded", good), good, 415, ingest.CodeUnsupportedMediaType, ""},
		{"latin1 charset", "/webhooks/generic", withCT("application/json; charset=iso-8859-1", good), good, 415, ingest.CodeUnsupportedMediaType, ""},
		{"garbage content type", "/webhooks/generic", withCT("application/json; ;;", good), good, 415, ingest.CodeUnsupportedMediaType, ""},
		{"body over source limit", "/webhooks/tiny", jsonHeaders(), []byte(`{"id":"1","customer":"c","pad":"` + strings.Repeat("p", 80) + `"}`), 413, ingest.CodeBodyTooLarge, ""},
		{"body over 1 MiB", "/webhooks/generic", signedGeneric(huge), huge, 413, ingest.CodeBodyTooLarge, ""},
		{"missing signature", "/webhooks/generic", jsonHeaders(), good, 401, ingest.CodeSignatureInvalid, ""},
		{"signature by unknown secret", "/webhooks/generic", merge(jsonHeaders(), sign(t, "hmac-sha256", "not-the-secret", "", good, now, "X-Signature", "hex")), good, 401, ingest.CodeSignatureInvalid, ""},
		{"tampered body", "/webhooks/generic", signedGeneric(good), genericBody("evt_bad", "cus_other"), 401, ingest.CodeSignatureInvalid, ""},
		{"signature not hex", "/webhooks/generic", jsonHeaders("X-Signature", "zz-not-hex"), good, 401, ingest.CodeSignatureInvalid, ""},
		{"stripe stale timestamp", "/webhooks/stripe", merge(jsonHeaders(), sign(t, "stripe", stripeSecret, "", stripeBody, stale, "", "")), stripeBody, 401, ingest.CodeSignatureInvalid, ""},
		{"stripe malformed header", "/webhooks/stripe", jsonHeaders("Stripe-Signature", "t=abc,v1"), stripeBody, 401, ingest.CodeSignatureInvalid, ""},
		{"github without sha256= prefix", "/webhooks/github", jsonHeaders("X-GitHub-Delivery", "d1", "X-Hub-Signature-256", strings.TrimPrefix(sign(t, "github", githubSecret, "", githubBody, now, "", "").Get("X-Hub-Signature-256"), "sha256=")), githubBody, 401, ingest.CodeSignatureInvalid, ""},
		{"shopify bad base64", "/webhooks/shopify", jsonHeaders("X-Shopify-Webhook-Id", "w1", "X-Shopify-Shop-Domain", "s", "X-Shopify-Hmac-Sha256", "%%%not base64%%%"), []byte(`{}`), 401, ingest.CodeSignatureInvalid, ""},
		{"standard-webhooks future timestamp", "/webhooks/sw", merge(jsonHeaders(), sign(t, "standard-webhooks", swSecret, "msg_f", swBody, future, "", "")), swBody, 401, ingest.CodeSignatureInvalid, ""},
		{"standard-webhooks missing id", "/webhooks/sw", func() http.Header {
			h := merge(jsonHeaders(), sign(t, "standard-webhooks", swSecret, "msg_x", swBody, now, "", ""))
			h.Del("webhook-id")
			return h
		}(), swBody, 401, ingest.CodeSignatureInvalid, ""},
		{"huge signature header", "/webhooks/generic", jsonHeaders("X-Signature", strings.Repeat("ab", 6000)), good, 401, ingest.CodeSignatureInvalid, ""},
		{"empty body", "/webhooks/generic", h2, b2, 400, ingest.CodeMalformedJSON, ""},
		{"truncated JSON", "/webhooks/generic", h1, b1, 400, ingest.CodeMalformedJSON, ""},
		{"trailing data", "/webhooks/generic", h3, b3, 400, ingest.CodeMalformedJSON, ""},
		{"non-UTF-8 body", "/webhooks/generic", signedGeneric(nonUTF8), nonUTF8, 400, ingest.CodeInvalidEncoding, ""},
		{"event_id is a number", "/webhooks/generic", h4, b4, 400, ingest.CodeSchemaViolation, "/event_id"},
		{"customer_id missing", "/webhooks/generic", h5, b5, 400, ingest.CodeSchemaViolation, "customer_id"},
		{"payload not an object", "/webhooks/generic", h6, b6, 400, ingest.CodeSchemaViolation, "/payload"},
		{"top-level array", "/webhooks/generic", h7, b7, 400, ingest.CodeSchemaViolation, ""},
		{"empty event_id", "/webhooks/generic", h8, b8, 400, ingest.CodeSchemaViolation, "/event_id"},
		{"stripe body without id", "/webhooks/stripe", merge(jsonHeaders(), sign(t, "stripe", stripeSecret, "", stripeNoID, now, "", "")), stripeNoID, 400, ingest.CodeMissingID, "event_id"},
		{"github owner missing", "/webhooks/github", merge(jsonHeaders("X-GitHub-Delivery", "d2"), sign(t, "github", githubSecret, "", githubNoOwner, now, "", "")), githubNoOwner, 400, ingest.CodeMissingID, "customer_id"},
		{"customer header missing", "/webhooks/hmacb64", merge(jsonHeaders("X-Event-Id", "e1"), sign(t, "hmac-sha256", hmacB64Secret, "", []byte(`{}`), now, "X-Hub-Sig", "base64")), []byte(`{}`), 400, ingest.CodeMissingID, "customer_id"},
		{"customer is an object", "/webhooks/open", jsonHeaders(), []byte(`{"id":"1","customer":{"a":1}}`), 400, ingest.CodeInvalidID, "object"},
		{"id is a float", "/webhooks/open", jsonHeaders(), []byte(`{"id":1.5,"customer":"c"}`), 400, ingest.CodeInvalidID, "event_id"},
		{"id too long", "/webhooks/open", jsonHeaders(), []byte(`{"id":"` + longID + `","customer":"c"}`), 400, ingest.CodeInvalidID, "longer than"},
		{"id with control character", "/webhooks/open", jsonHeaders(), []byte(`{"id":"a\u0007b","customer":"c"}`), 400, ingest.CodeInvalidID, "control"},
		{"id is null", "/webhooks/open", jsonHeaders(), []byte(`{"id":null,"customer":"c"}`), 400, ingest.CodeMissingID, "event_id"},
	}
	if len(cases) < 25 {
		t.Fatalf("only %d cases", len(cases))
	}
	checkRefused(t, tb, "bad-", cases)
	// Requests the server itself refuses before any handler runs.
	h := signedGeneric(good)
	h.Set("X-Padding", strings.Repeat("p", 40<<10))
	if status, _, _ := tb.post("/webhooks/generic", h, good); status != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("huge header: status %d, want 431", status)
	}
	req, _ := http.NewRequest(http.MethodGet, tb.url+"/webhooks/generic", nil)
	resp, err := tb.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: status %d, want 405", resp.StatusCode)
	}

	if recs := tb.events(); len(recs) != 0 {
		t.Fatalf("bad input reached the events topic: %d records, first %q", len(recs), recs[0].Value)
	}
}

func TestDuplicates(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	tb.setStatus("generic", "evt_done", ingest.StatusProcessed)
	tb.setStatus("sw", "msg_done", ingest.StatusProcessed)
	tb.setStatus("generic", "evt_failed", ingest.StatusFailed)
	tb.setStatus("generic", "evt_dead", ingest.StatusDead)
	tb.setStatus("generic", "evt_busy", ingest.StatusProcessing)
	tb.setStatus("generic", "evt_parked", ingest.StatusParked)

	check := func(name string, status int, out []byte, want map[string]any) {
		t.Helper()
		var got map[string]any
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("%s: %s", name, out)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: status %d body %s, want %v", name, status, out, want)
		}
	}
	body := genericBody("evt_done", "cus_d")
	status, _, out := tb.post("/webhooks/generic", signedGeneric(body), body)
	if status != http.StatusConflict {
		t.Errorf("processed duplicate: status %d, want 409", status)
	}
	check("processed", status, out, map[string]any{"event_id": "evt_done", "status": "duplicate"})

	swBody := []byte(`{"type":"t","customer_id":"c"}`)
	status, _, out = tb.post("/webhooks/sw", merge(jsonHeaders(), sign(t, "standard-webhooks", swSecret, "msg_done", swBody, time.Now(), "", "")), swBody)
	if status != http.StatusOK {
		t.Errorf("processed duplicate on a duplicate_status 200 source: status %d", status)
	}
	check("processed 200", status, out, map[string]any{"event_id": "msg_done", "status": "duplicate"})

	for _, id := range []string{"evt_failed", "evt_dead"} {
		body := genericBody(id, "cus_d")
		status, _, out := tb.post("/webhooks/generic", signedGeneric(body), body)
		if status != http.StatusAccepted {
			t.Errorf("%s: status %d, want 202", id, status)
		}
		check(id, status, out, map[string]any{"event_id": id, "status": "accepted", "retry": true})
	}
	for _, id := range []string{"evt_busy", "evt_parked"} {
		body := genericBody(id, "cus_d")
		status, _, out := tb.post("/webhooks/generic", signedGeneric(body), body)
		if status != http.StatusAccepted {
			t.Errorf("%s: status %d, want 202", id, status)
		}
		check(id, status, out, map[string]any{"event_id": id, "status": "accepted"})
	}

	// Only the re-driven FAILED/DEAD events were produced, marked as such.
	recs := tb.events()
	got := map[string]string{}
	for _, r := range recs {
		got[header(r, wire.HeaderEventID)] = header(r, wire.HeaderRedrive)
	}
	if len(recs) != 2 || got["evt_failed"] != "true" || got["evt_dead"] != "true" {
		t.Errorf("events topic holds %v, want evt_failed and evt_dead marked redrive", got)
	}
	// A re-drive's decision travels with the event; the duplicates', which
	// produce no event, are on the audit topic.
	actions := map[string]wire.Action{}
	for _, a := range tb.audits() {
		actions[a.EventID] = a.Action
	}
	for _, r := range recs {
		a := tb.decision(r)
		actions[a.EventID] = a.Action
		if a.Detail["previous_status"] == nil {
			t.Errorf("%s: decision %+v lacks detail.previous_status", a.EventID, a)
		}
	}
	want := map[string]wire.Action{"evt_done": wire.ActionDuplicate, "msg_done": wire.ActionDuplicate,
		"evt_failed": wire.ActionRetryAccepted, "evt_dead": wire.ActionRetryAccepted,
		"evt_busy": wire.ActionDuplicate, "evt_parked": wire.ActionDuplicate}
	if fmt.Sprint(actions) != fmt.Sprint(want) {
		t.Errorf("audit actions %v, want %v", actions, want)
	}
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	body := []byte(`{"id":"r1","customer":"c"}`)
	if status, _, out := tb.post("/webhooks/limited", jsonHeaders(), body); status != http.StatusAccepted {
		t.Fatalf("first request: %d %s", status, out)
	}
	status, h, out := tb.post("/webhooks/limited", jsonHeaders(), []byte(`{"id":"r2","customer":"c"}`))
	if status != http.StatusTooManyRequests {
		t.Fatalf("second request: %d %s, want 429", status, out)
	}
	if eb := decodeError(t, out); eb.Error.Code != ingest.CodeRateLimited {
		t.Errorf("code %q", eb.Error.Code)
	}
	if ra, err := strconv.Atoi(h.Get("Retry-After")); err != nil || ra < 1 {
		t.Errorf("Retry-After %q", h.Get("Retry-After"))
	}
	if n := len(tb.events()); n != 1 {
		t.Errorf("%d events, want only the first", n)
	}
	// Other sources are not limited by it.
	good := genericBody("evt_nl", "c")
	if status, _, _ := tb.post("/webhooks/generic", signedGeneric(good), good); status != http.StatusAccepted {
		t.Errorf("generic after limited: %d", status)
	}
}

// A body sent without Content-Length (chunked) is read up to the source's
// limit as well: stored byte for byte when under it, 413 when over.
func TestChunkedBody(t *testing.T) {
	tb := setup(t)
	// A body of unknown length: the client sends it chunked.
	chunked := func(body []byte) io.Reader { return io.MultiReader(bytes.NewReader(body)) }
	post := func(path string, h http.Header, body []byte) int {
		req, err := http.NewRequest(http.MethodPost, tb.url+path, chunked(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header = h
		resp, err := tb.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	body := genericBody("evt_chunked", "cus_chunked")
	if code := post("/webhooks/generic", signedGeneric(body), body); code != http.StatusAccepted {
		t.Fatalf("chunked event: status %d, want 202", code)
	}
	huge := bytes.Repeat([]byte("a"), 1<<20+1)
	if code := post("/webhooks/generic", signedGeneric(huge), huge); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("chunked body over 1 MiB: status %d, want 413", code)
	}
	recs := tb.events()
	if len(recs) != 1 || !bytes.Equal(recs[0].Value, body) {
		t.Fatalf("events topic holds %d records, want exactly the chunked event byte for byte", len(recs))
	}
}

// TestAuditKeysFromAuthenticatedData: an audit record's key on the
// compacted topic is source/event_id only for an event whose signature was
// verified, and the server's request id otherwise. An unsigned request
// that names a real event in X-Request-Id (which once became its key, so
// that compaction left the forgery as the event's only record) gets a key
// of the server's; equal event ids of two sources get two keys.
func TestAuditKeysFromAuthenticatedData(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	body := genericBody("evt_real", "cus_k")
	status, rh, out := tb.post("/webhooks/generic", signedGeneric(body), body)
	if status != http.StatusAccepted {
		t.Fatalf("the real event: %d %s", status, out)
	}
	// Without an X-Request-Id of its own, the client gets the server's.
	if a := tb.decision(tb.events()[0]); a.RequestID != rh.Get("X-Request-Id") || a.Detail[wire.DetailClientRequestID] != nil {
		t.Errorf("decision %+v, want request id %q (echoed) and no client request id", a, rh.Get("X-Request-Id"))
	}

	forgeries := map[string]http.Header{
		"unsigned":        jsonHeaders(),
		"another secret":  merge(jsonHeaders(), sign(t, "hmac-sha256", "not-the-secret", "", body, time.Now(), "X-Signature", "hex")),
		"unknown source":  jsonHeaders(),
		"tampered signed": signedGeneric(genericBody("evt_other", "cus_k")),
	}
	for name, h := range forgeries {
		h.Set("X-Request-Id", "evt_real")
		path := "/webhooks/generic"
		if name == "unknown source" {
			path = "/webhooks/nope"
		}
		status, rh, _ := tb.post(path, h, body)
		if status/100 != 4 {
			t.Errorf("%s: status %d, want a 4xx", name, status)
		}
		if rh.Get("X-Request-Id") != "evt_real" {
			t.Errorf("%s: X-Request-Id %q, want the client's echoed", name, rh.Get("X-Request-Id"))
		}
	}
	// Only the forgeries' records are on the topic (the event's decision
	// travels with it): none is under an event's key.
	for _, r := range tb.records(tb.topics.Audit) {
		if k := string(r.Key); k == "evt_real" || k == "generic/evt_real" || strings.Contains(k, "/") {
			t.Errorf("a forgery's record is keyed %q", k)
		}
	}
	rejections := tb.auditFor("evt_real")
	if len(rejections) != len(forgeries) {
		t.Errorf("%d records with client_request_id evt_real, want %d: %+v", len(rejections), len(forgeries), rejections)
	}
	for _, a := range rejections {
		if a.Action != wire.ActionRejected || a.EventID != "" || a.RequestID == "evt_real" {
			t.Errorf("record %+v, want a REJECTED without event id or the client's request id", a)
		}
		if _, err := uuid.Parse(a.RequestID); err != nil {
			t.Errorf("request id %q is not the server's: %v", a.RequestID, err)
		}
	}

	// The same event id at two sources: two duplicates, two keys.
	tb.setStatus("open", "same", ingest.StatusProcessed)
	tb.setStatus("tiny", "same", ingest.StatusProcessed)
	for _, src := range []string{"open", "tiny"} {
		if status, _, out := tb.post("/webhooks/"+src, jsonHeaders(), []byte(`{"id":"same","customer":"c"}`)); status != http.StatusConflict {
			t.Errorf("%s: status %d %s, want 409", src, status, out)
		}
	}
	keys := map[string]string{}
	for _, r := range tb.records(tb.topics.Audit) {
		if header(r, wire.HeaderAuditAction) == string(wire.ActionDuplicate) {
			var a wire.AuditRecord
			if err := json.Unmarshal(r.Value, &a); err != nil {
				t.Fatal(err)
			}
			keys[a.Source] = string(r.Key)
		}
	}
	if keys["open"] != "open/same" || keys["tiny"] != "tiny/same" {
		t.Errorf("DUPLICATE keys by source %v, want open/same and tiny/same", keys)
	}
}
