package ingest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/hookstream/hookstream/ingest"
	"github.com/hookstream/hookstream/ingest/signature"
	"github.com/hookstream/hookstream/internal/apidocs/apidocstest"
	"github.com/hookstream/hookstream/internal/httpserver"
	"github.com/hookstream/hookstream/internal/kafka"
	"github.com/hookstream/hookstream/internal/sources"
	"github.com/hookstream/hookstream/internal/testenv"
	"github.com/hookstream/hookstream/internal/wire"
	"github.com/hookstream/hookstream/schemas"
)

const (
	genericSecret = "generic-test-secret"
	stripeSecret  = "whsec_stripe_test_secret"
	githubSecret  = "github-test-secret"
	shopifySecret = "shopify-test-secret"
	swSecret      = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	hmacB64Secret = "hmac-b64-test-secret"
	limitedSecret = "limited-test-secret"
)

// testSourcesYAML exercises every scheme and locator kind.
const testSourcesYAML = `
sources:
  - name: stripe
    scheme: stripe
    secrets: ["whsec_old_secret_rotated_out", "` + stripeSecret + `"]
    customer_id: {pointer: /data/object/customer}
    event_type: {pointer: /type}
  - name: github
    scheme: github
    secrets: ["` + githubSecret + `"]
    customer_id: {pointer: /repository/owner/login}
    event_type: {header: X-GitHub-Event}
  - name: shopify
    scheme: shopify
    secrets: ["` + shopifySecret + `"]
    customer_id: {header: X-Shopify-Shop-Domain}
    event_type: {header: X-Shopify-Topic}
  - name: sw
    scheme: standard-webhooks
    secrets: ["` + swSecret + `"]
    customer_id: {pointer: /customer_id}
    event_type: {pointer: /type}
    duplicate_status: 200
  - name: swhdr
    scheme: standard-webhooks
    secrets: ["` + swSecret + `"]
    event_id: {header: X-Event-Id}
    customer_id: {pointer: /customer_id}
  - name: hmacb64
    scheme: hmac-sha256
    secrets: ["` + hmacB64Secret + `"]
    signature_header: X-Hub-Sig
    signature_encoding: base64
    event_id: {header: X-Event-Id}
    customer_id: {header: X-Customer-Id}
  - name: open
    scheme: none
    event_id: {pointer: /id}
    customer_id: {pointer: /customer}
  - name: limited
    scheme: none
    event_id: {pointer: /id}
    customer_id: {pointer: /customer}
    rate_limit: {per_second: 0.001, burst: 1}
  - name: tiny
    scheme: none
    event_id: {pointer: /id}
    customer_id: {pointer: /customer}
    max_body_bytes: 64
  - name: limitedsig
    scheme: hmac-sha256
    secrets: ["` + limitedSecret + `"]
    event_id: {header: X-Event-Id}
    customer_id: {header: X-Customer-Id}
    rate_limit: {per_second: 0.001, burst: 2}
`

type testBundle struct {
	t        *testing.T
	url      string
	topics   wire.Topics
	brokers  []string
	adm      *kadm.Client
	pool     *pgxpool.Pool
	producer *kgo.Client
	rcv      *ingest.Receiver
	// client checks every response against schemas/openapi.yaml.
	client *http.Client
}

type setupOpts struct {
	brokers        []string // default: testenv.Kafka
	databaseURL    string   // default: testenv.Postgres
	produceTimeout time.Duration
	// noAuditTopic points the receiver at an audit topic that was never
	// created.
	noAuditTopic bool
	// rejectionTimeout, when set, gives the receiver a RejectionProducer
	// of its own with this delivery timeout.
	rejectionTimeout time.Duration
	// configure changes the receiver's config before it is built.
	configure func(*ingest.Config)
}

func setup(t *testing.T, opts ...func(*setupOpts)) *testBundle {
	t.Helper()
	o := setupOpts{produceTimeout: 5 * time.Second}
	for _, f := range opts {
		f(&o)
	}
	if o.brokers == nil {
		o.brokers = testenv.Kafka(t)
	}
	if o.databaseURL == "" {
		o.databaseURL = testenv.Postgres(t)
	}
	tb := &testBundle{t: t, brokers: o.brokers, topics: testenv.Topics(t, o.brokers), client: apidocstest.Client(t)}
	if o.noAuditTopic {
		tb.topics.Audit += ".never-created"
	}

	srcs, err := sources.Parse([]byte(testSourcesYAML), ".", func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf("sources: %v", err)
	}
	schema, err := io.ReadAll(must(schemas.JSON().Open("generic.schema.json")))
	if err != nil {
		t.Fatal(err)
	}
	srcs = append(srcs, sources.Generic([]string{"generic-old-secret", genericSecret}, schema))

	tb.producer, err = kafka.NewProducer(kafka.Config{Brokers: o.brokers, ProduceTimeout: o.produceTimeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tb.producer.Close)
	admCl, err := kgo.NewClient(kgo.SeedBrokers(o.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admCl.Close)
	tb.adm = kadm.NewClient(admCl)

	tb.pool, err = pgxpool.New(context.Background(), o.databaseURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tb.pool.Close)
	dups := ingest.NewPostgresDuplicates(tb.pool, ingest.PostgresDuplicatesConfig{})
	t.Cleanup(dups.Close)

	var rejections ingest.Producer
	if o.rejectionTimeout > 0 {
		p, err := kafka.NewProducer(kafka.Config{Brokers: o.brokers, ProduceTimeout: o.rejectionTimeout})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		rejections = p
	}
	cfg := ingest.Config{
		Sources:           srcs,
		Producer:          tb.producer,
		RejectionProducer: rejections,
		Duplicates:        dups,
		Topics:            tb.topics,
		Instance:          "test",
		ProduceTimeout:    o.produceTimeout,
		RetryAfter:        3,
		Logger:            slog.New(slog.DiscardHandler),
	}
	if o.configure != nil {
		o.configure(&cfg)
	}
	rcv, err := ingest.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tb.rcv = rcv
	t.Cleanup(rcv.Close) // before the producer closes
	srv := httpserver.New(httpserver.Config{Routes: []func(gin.IRouter){rcv.Register}, MaxHeaderBytes: 16 << 10})
	hs := httptest.NewUnstartedServer(srv.Handler())
	hs.Config.MaxHeaderBytes = 16 << 10
	hs.Start()
	t.Cleanup(hs.Close)
	tb.url = hs.URL
	return tb
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// post sends body to path with headers and returns status, headers and body.
func (tb *testBundle) post(path string, h http.Header, body []byte) (int, http.Header, []byte) {
	tb.t.Helper()
	req, err := http.NewRequest(http.MethodPost, tb.url+path, bytes.NewReader(body))
	if err != nil {
		tb.t.Fatal(err)
	}
	for k, vs := range h {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := tb.client.Do(req)
	if err != nil {
		tb.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, out
}

func jsonHeaders(kv ...string) http.Header {
	h := http.Header{"Content-Type": {"application/json"}}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

// signed returns the headers for a generic-source request.
func signedGeneric(body []byte) http.Header {
	h := jsonHeaders()
	for k, v := range sign(nil, "hmac-sha256", genericSecret, "", body, time.Now(), "X-Signature", "hex") {
		h[k] = v
	}
	return h
}

func sign(t *testing.T, scheme, secret, msgID string, body []byte, now time.Time, header, encoding string) http.Header {
	s, err := signature.NewSigner(signature.Config{Scheme: scheme, Secrets: []string{secret}, Header: header, Encoding: encoding})
	if err != nil {
		panic(err)
	}
	return s.Sign(msgID, body, now)
}

func genericBody(eventID, customerID string) []byte {
	return []byte(fmt.Sprintf(`{"event_id":%q,"customer_id":%q,"event_type":"invoice.paid","payload":{"amount":1}}`, eventID, customerID))
}

// records reads every record of topic up to its current end.
func (tb *testBundle) records(topic string) []*kgo.Record {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ends, err := tb.adm.ListEndOffsets(ctx, topic)
	if err != nil {
		tb.t.Fatalf("list end offsets: %v", err)
	}
	want := map[int32]int64{}
	total := int64(0)
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
			total += o.Offset
		}
	})
	if total == 0 {
		return nil
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(tb.brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		tb.t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	for int64(len(out)) < total {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			tb.t.Fatalf("reading %s: got %d of %d records: %v", topic, len(out), total, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset < want[r.Partition] {
				out = append(out, r)
			}
		})
	}
	return out
}

func (tb *testBundle) events() []*kgo.Record { return tb.records(tb.topics.Events) }

func (tb *testBundle) audits() []wire.AuditRecord {
	tb.t.Helper()
	var out []wire.AuditRecord
	for _, r := range tb.records(tb.topics.Audit) {
		checkAuditSchema(tb.t, r.Value)
		var a wire.AuditRecord
		if err := json.Unmarshal(r.Value, &a); err != nil {
			tb.t.Fatalf("audit record %s: %v", r.Value, err)
		}
		if string(r.Key) != a.Key() {
			tb.t.Errorf("audit record key %q, want %q", r.Key, a.Key())
		}
		if got := header(r, wire.HeaderAuditAction); got != string(a.Action) {
			tb.t.Errorf("audit action header %q, want %q", got, a.Action)
		}
		if got := header(r, wire.HeaderAuditActor); got != string(a.Actor) {
			tb.t.Errorf("audit actor header %q, want %q", got, a.Actor)
		}
		out = append(out, a)
	}
	return out
}

// auditFor returns the audit records of the requests that sent
// X-Request-Id: clientID.
func (tb *testBundle) auditFor(clientID string) []wire.AuditRecord {
	var out []wire.AuditRecord
	for _, a := range tb.audits() {
		if a.Detail[wire.DetailClientRequestID] == clientID {
			out = append(out, a)
		}
	}
	return out
}

var auditSchema = sync.OnceValues(func() (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(must(schemas.JSON().Open("audit-record.schema.json")))
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("audit-record.schema.json", doc); err != nil {
		return nil, err
	}
	return c.Compile("audit-record.schema.json")
})

// checkAuditSchema fails t unless v is an audit record of
// schemas/json/audit-record.schema.json.
func checkAuditSchema(t *testing.T, v []byte) {
	t.Helper()
	sch, err := auditSchema()
	if err != nil {
		t.Fatalf("audit record schema: %v", err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(v))
	if err == nil {
		err = sch.Validate(doc)
	}
	if err != nil {
		t.Errorf("audit record %s does not match its schema: %v", v, err)
	}
}

// decision is the audit record that travels in event record r's header,
// checked as the consumer reads it.
func (tb *testBundle) decision(r *kgo.Record) wire.AuditRecord {
	tb.t.Helper()
	checkAuditSchema(tb.t, []byte(header(r, wire.HeaderAudit)))
	a, err := wire.AuditFromHeader([]byte(header(r, wire.HeaderAudit)))
	if err != nil {
		tb.t.Fatalf("event %s: %v", header(r, wire.HeaderEventID), err)
	}
	if a.EventID != header(r, wire.HeaderEventID) || a.Source != header(r, wire.HeaderSource) {
		tb.t.Errorf("event %s/%s carries the decision about %s/%s", header(r, wire.HeaderSource), header(r, wire.HeaderEventID), a.Source, a.EventID)
	}
	return *a
}

// decisionsFor returns the decisions that travelled with the events of the
// requests that sent X-Request-Id: clientID.
func (tb *testBundle) decisionsFor(clientID string) []wire.AuditRecord {
	var out []wire.AuditRecord
	for _, r := range tb.events() {
		if a := tb.decision(r); a.Detail[wire.DetailClientRequestID] == clientID {
			out = append(out, a)
		}
	}
	return out
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func (tb *testBundle) setStatus(source, eventID string, status ingest.Status) {
	tb.t.Helper()
	_, err := tb.pool.Exec(context.Background(),
		`INSERT INTO events (source, event_id, customer_id, status) VALUES ($1, $2, 'c', $3)`,
		source, eventID, string(status))
	if err != nil {
		tb.t.Fatal(err)
	}
}

// counter is the value of the counter name with the given labels in the
// default registry (the receiver's metrics), 0 when it has none.
func counter(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func decodeError(t *testing.T, body []byte) ingest.ErrorBody {
	t.Helper()
	var eb ingest.ErrorBody
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&eb); err != nil {
		t.Fatalf("error body %q: %v", body, err)
	}
	if eb.Error.Code == "" || eb.Error.Message == "" {
		t.Fatalf("error body %q lacks code or message", body)
	}
	return eb
}

func contains(list []string, sub string) bool {
	for _, s := range list {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
