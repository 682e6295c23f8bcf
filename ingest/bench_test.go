package ingest

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/hookstream/hookstream/internal/sources"
	"github.com/hookstream/hookstream/internal/wire"
	"github.com/hookstream/hookstream/schemas"
)

var benchBody = []byte(`{"event_id":"evt_1","customer_id":"cus_1","event_type":"invoice.paid","payload":{"pad":"` + strings.Repeat("x", 900) + `"}}`)

func genericSchema(tb testing.TB) []byte {
	tb.Helper()
	schema, err := fs.ReadFile(schemas.JSON(), "generic.schema.json")
	if err != nil {
		tb.Fatal(err)
	}
	return schema
}

func genericSource(b *testing.B) *source {
	src, err := compileSource(sources.Generic([]string{"bench-test-secret-key"}, genericSchema(b)))
	if err != nil {
		b.Fatal(err)
	}
	return src
}

// genericEngine serves a receiver with the built-in generic source, signed
// with secret, on a gin engine; cfg's other fields are the receiver's (the
// logger discards unless cfg has one).
func genericEngine(tb testing.TB, secret string, cfg Config) *gin.Engine {
	tb.Helper()
	_, engine := genericReceiver(tb, secret, cfg)
	return engine
}

// genericReceiver is genericEngine that also returns the receiver.
func genericReceiver(tb testing.TB, secret string, cfg Config) (*Receiver, *gin.Engine) {
	tb.Helper()
	cfg.Sources = []sources.Source{sources.Generic([]string{secret}, genericSchema(tb))}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	r, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(r.Close)
	gin.SetMode(gin.ReleaseMode)
	engine := gin.New()
	r.Register(engine)
	return r, engine
}

// genericSignature is X-Signature for body under secret.
func genericSignature(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// genericRequest is a POST of body to the generic source with signature sig.
func genericRequest(body []byte, sig string) *http.Request {
	req := httptest.NewRequest(http.MethodPost, "/webhooks/generic", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Signature", sig)
	return req
}

func BenchmarkExtractIDs(b *testing.B) {
	src := genericSource(b)
	doc, err := decodeJSON(benchBody)
	if err != nil {
		b.Fatal(err)
	}
	h := http.Header{}
	b.ReportAllocs()
	for b.Loop() {
		if _, p := src.eventID.extract(h, doc); p != "" {
			b.Fatal(p)
		}
		if _, p := src.customerID.extract(h, doc); p != "" {
			b.Fatal(p)
		}
		if _, p := src.eventType.extract(h, doc); p != "" {
			b.Fatal(p)
		}
	}
}

func BenchmarkSchemaValidate(b *testing.B) {
	src := genericSource(b)
	doc, err := decodeJSON(benchBody)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := src.schema.Validate(doc); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEventRecord(b *testing.B) {
	r := &Receiver{cfg: Config{Topics: wire.Topics{}.WithDefaults()}}
	src := genericSource(b)
	c, _ := gin.CreateTestContext(httptest.NewRecorder())
	c.Request = httptest.NewRequest(http.MethodPost, "/webhooks/generic", nil)
	c.Request.Header.Set("Content-Type", "application/json")
	req := &request{c: c, requestID: "req-1", receivedAt: time.Now(), src: src, body: benchBody, eventID: "evt_1", customerID: "cus_1", eventType: "invoice.paid"}
	audit, err := r.auditRecord(req, wire.ActionAccepted, "", http.StatusAccepted, nil).Marshal()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = r.eventRecord(req, false, audit)
	}
}

// ackProducer acknowledges every record at once: the receiver's own work
// per request, without a broker.
type ackProducer struct{}

func (ackProducer) Produce(_ context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	promise(r, nil)
}

func (ackProducer) TryProduce(_ context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	promise(r, nil)
}

// BenchmarkHandle is one accepted request through gin and the receiver
// (signature, UTF-8, JSON, schema, ids, the event record with its audit
// record, reply),
// with a producer that acknowledges at once and no duplicate check: the
// CPU a request costs the receiver besides its round trips.
func BenchmarkHandle(b *testing.B) {
	const secret = "bench-secret-of-16+"
	engine := genericEngine(b, secret, Config{Producer: ackProducer{}})
	sig := genericSignature(secret, benchBody)
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		w.Body.Reset()
		engine.ServeHTTP(w, genericRequest(benchBody, sig))
		if w.Code != http.StatusAccepted {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}
