package ingest

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/hookstream/hookstream/internal/sources"
	"github.com/hookstream/hookstream/internal/wire"
	"github.com/hookstream/hookstream/schemas"
)

var benchBody = []byte(`{"event_id":"evt_1","customer_id":"cus_1","event_type":"invoice.paid","payload":{"pad":"` + strings.Repeat("x", 900) + `"}}`)

func genericSource(b *testing.B) *source {
	schema, err := fs.ReadFile(schemas.JSON(), "generic.schema.json")
	if err != nil {
		b.Fatal(err)
	}
	src, err := compileSource(sources.Generic([]string{"s"}, schema))
	if err != nil {
		b.Fatal(err)
	}
	return src
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
	b.ReportAllocs()
	for b.Loop() {
		_ = r.eventRecord(req, false)
	}
}
