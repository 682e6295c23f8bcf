package e2e_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/hookstream/hookstream/audit"
	"github.com/hookstream/hookstream/consumer"
	"github.com/hookstream/hookstream/ingest"
	"github.com/hookstream/hookstream/internal/admin"
	"github.com/hookstream/hookstream/internal/apidocs/apidocstest"
	"github.com/hookstream/hookstream/internal/httpserver"
	"github.com/hookstream/hookstream/internal/kafka"
	"github.com/hookstream/hookstream/internal/metricstest"
	"github.com/hookstream/hookstream/internal/sources"
	"github.com/hookstream/hookstream/internal/testenv"
	"github.com/hookstream/hookstream/internal/wire"
	"github.com/hookstream/hookstream/schemas"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const (
	secret     = "e2e-test-secret-key"
	adminToken = "e2e-admin-token"
)

type stack struct {
	t       *testing.T
	url     string
	brokers []string
	topics  wire.Topics
	group   string // the consumer's
	pool    *pgxpool.Pool
	// client checks every response of the receiver and the admin API
	// against schemas/openapi.yaml.
	client *http.Client
}

// start runs receiver, consumer, relay and sink in this process.
func start(t *testing.T, h consumer.Handler, policy consumer.RetryPolicy) *stack {
	t.Helper()
	brokers := testenv.Kafka(t)
	st := &stack{t: t, brokers: brokers, topics: testenv.Topics(t, brokers), client: apidocstest.Client(t)}
	var err error
	st.pool, err = pgxpool.New(context.Background(), testenv.Postgres(t)+"&pool_max_conns=30")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.pool.Close)
	producer, err := kafka.NewProducer(kafka.Config{Brokers: brokers})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(producer.Close)
	log := slog.New(slog.DiscardHandler)

	schema, err := fs.ReadFile(schemas.JSON(), "generic.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	dups := ingest.NewPostgresDuplicates(st.pool, ingest.PostgresDuplicatesConfig{})
	t.Cleanup(dups.Close)
	rcv, err := ingest.New(ingest.Config{Sources: []sources.Source{sources.Generic([]string{secret}, schema)}, Producer: producer,
		Duplicates: dups, Topics: st.topics, Instance: "e2e-ingest", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	adminAPI := admin.Register(admin.Config{Token: adminToken, Pool: st.pool, Instance: "e2e-admin"})
	hs := httptest.NewServer(httpserver.New(httpserver.Config{Routes: []func(gin.IRouter){rcv.Register, adminAPI}, Logger: log}).Handler())
	t.Cleanup(hs.Close)
	st.url = hs.URL

	run := strings.ReplaceAll(t.Name(), "/", "-") + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	st.group = "e2e-" + run
	c, err := consumer.New(consumer.Config{Brokers: brokers, Pool: st.pool, Handler: h, Audit: audit.Writer{}, Group: st.group,
		Topics: st.topics, Retry: func(string) consumer.RetryPolicy { return policy }, Instance: "e2e-consumer", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	relay, err := audit.NewRelay(audit.RelayConfig{Pool: st.pool, Kafka: kafka.Config{Brokers: brokers}, Topic: st.topics.Audit, Logger: log, Idle: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	sink, err := audit.NewSink(audit.SinkConfig{Brokers: brokers, Pool: st.pool, Topic: st.topics.Audit, Group: "e2e-sink-" + run, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 3)
	for _, run := range []func(context.Context) error{c.Run, relay.Run, sink.Run} {
		go func() { _ = run(ctx); done <- struct{}{} }()
	}
	t.Cleanup(func() {
		cancel()
		for range 3 {
			<-done
		}
	})
	return st
}

// verify runs audit.Verify over the last hour.
func (st *stack) verify() (*audit.Report, error) {
	return audit.Verify(context.Background(), audit.VerifyConfig{Pool: st.pool, Brokers: st.brokers, Topics: st.topics, Group: st.group,
		Since: time.Now().Add(-time.Hour)})
}

func (st *stack) post(eventID, customer string, sign bool) int {
	st.t.Helper()
	body := fmt.Sprintf(`{"event_id":%q,"customer_id":%q,"event_type":"t","payload":{}}`, eventID, customer)
	req, _ := http.NewRequest(http.MethodPost, st.url+"/webhooks/generic", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(body))
	sig := hex.EncodeToString(m.Sum(nil))
	if !sign {
		sig = strings.Repeat("0", 64)
	}
	req.Header.Set("X-Signature", sig)
	req.Header.Set("X-Request-Id", "req-"+eventID)
	resp, err := st.client.Do(req)
	if err != nil {
		st.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// eventually polls cond until it holds or d passes.
func (st *stack) eventually(d time.Duration, what string, cond func() (bool, error)) {
	st.t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, err := cond()
		if err != nil {
			st.t.Fatal(err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			st.t.Fatalf("not after %s: %s", d, what)
		}
		time.Sleep(50 * time.Millisecond) // polling for the state, not timing it
	}
}

func (st *stack) actions(eventID string) []string {
	st.t.Helper()
	trail, err := audit.Trail(context.Background(), st.pool, "generic", eventID)
	if err != nil {
		st.t.Fatal(err)
	}
	var out []string
	for _, r := range trail {
		out = append(out, string(r.Action))
	}
	return out
}

// TestAuditLifecycle: every decision of a full life cycle — accepted and
// processed, rejected, duplicate, failed and retried and dead-lettered and
// parked, re-sent and processed and unparked — is in both the topic and the
// table, with the same audit_ids, in order.
func TestAuditLifecycle(t *testing.T) {
	t.Parallel()
	var broken atomic.Bool
	broken.Store(true)
	h := consumer.HandlerFunc(func(_ context.Context, _ pgx.Tx, ev *consumer.Event) error {
		if ev.EventID == "evt_bad" && broken.Load() {
			return errors.New("destination unavailable")
		}
		return nil
	})
	st := start(t, h, consumer.RetryPolicy{MaxAttempts: 2, InitialBackoff: 10 * time.Millisecond, MaxBackoff: 10 * time.Millisecond})

	if got := st.post("evt_ok", "cus_1", true); got != 202 {
		t.Fatalf("evt_ok: %d", got)
	}
	if got := st.post("evt_forged", "cus_1", false); got != 401 {
		t.Fatalf("evt_forged: %d", got)
	}
	if got := st.post("evt_bad", "cus_2", true); got != 202 {
		t.Fatalf("evt_bad: %d", got)
	}
	st.eventually(time.Minute, "evt_ok processed and evt_bad dead", func() (bool, error) {
		var n int
		err := st.pool.QueryRow(context.Background(), `SELECT count(*) FROM events WHERE (event_id = 'evt_ok' AND status = 'PROCESSED') OR (event_id = 'evt_bad' AND status = 'DEAD')`).Scan(&n)
		return n == 2, err
	})
	if got := st.post("evt_ok", "cus_1", true); got != 409 {
		t.Fatalf("evt_ok again: %d, want 409", got)
	}
	broken.Store(false)
	if got := st.post("evt_bad", "cus_2", true); got != 202 {
		t.Fatalf("evt_bad re-sent: %d", got)
	}
	st.eventually(time.Minute, "evt_bad processed", func() (bool, error) {
		var n int
		err := st.pool.QueryRow(context.Background(), `SELECT count(*) FROM events WHERE event_id = 'evt_bad' AND status = 'PROCESSED'`).Scan(&n)
		return n == 1, err
	})

	// The sink copies the receiver's records into the table; the relay
	// publishes the consumer's. Wait until the two sides agree.
	var rep *audit.Report
	start := time.Now()
	st.eventually(time.Minute, "topic and table agree (see the log for the last report)", func() (bool, error) {
		var err error
		rep, err = st.verify()
		if err != nil {
			return false, err
		}
		want := []string{"ACCEPTED", "PROCESSING", "FAILED", "RETRY_SCHEDULED", "PROCESSING", "FAILED", "DEAD_LETTERED", "PARKED", "RETRY_ACCEPTED", "RETRY_SCHEDULED", "PROCESSING", "PROCESSED", "UNPARKED"}
		got := st.actions("evt_bad")
		ok := rep.OK() && rep.Pending == 0 && fmt.Sprint(got) == fmt.Sprint(want)
		if !ok && time.Since(start) > 50*time.Second {
			t.Logf("report %+v; evt_bad trail %v", rep, got)
		}
		return ok, nil
	})
	if got, want := fmt.Sprint(st.actions("evt_ok")), fmt.Sprint([]string{"ACCEPTED", "PROCESSING", "PROCESSED", "DUPLICATE"}); got != want {
		t.Errorf("evt_ok trail %s, want %s", got, want)
	}
	var rejected int
	if err := st.pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_log WHERE action = 'REJECTED' AND detail->>'client_request_id' = 'req-evt_forged' AND request_id <> 'req-evt_forged' AND reason = 'signature_invalid' AND http_status = 401 AND detail->>'cause' = 'mismatch'`).Scan(&rejected); err != nil || rejected != 1 {
		t.Errorf("REJECTED row for the forged request: %d, %v", rejected, err)
	}
	if rep.TopicRecords != rep.TableRecords || rep.TopicRecords < 17 {
		t.Errorf("report %+v", rep)
	}

	// audit verify reports a record deleted from one side.
	var gone string
	if err := st.pool.QueryRow(context.Background(), `DELETE FROM audit_log WHERE event_id = 'evt_ok' AND action = 'PROCESSED' RETURNING audit_id::text`).Scan(&gone); err != nil {
		t.Fatal(err)
	}
	rep2, err := st.verify()
	if err != nil {
		t.Fatal(err)
	}
	if rep2.OK() || fmt.Sprint(rep2.MissingFromTable) != "["+gone+"]" || len(rep2.MissingFromTopic) != 0 {
		t.Errorf("after deleting %s from the table, verify says %+v", gone, rep2)
	}

	// The counters moved (other tests of this binary may add to them).
	resp, err := st.client.Get(st.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range [][]string{
		{"hookstream_ingest_requests_total", `source="generic"`, `status="202"`},
		{"hookstream_ingest_requests_total", `source="generic"`, `status="401"`},
		{"hookstream_ingest_requests_total", `source="generic"`, `status="409"`},
		{"hookstream_ingest_rejections_total", `reason="signature_invalid"`, `source="generic"`},
		{"hookstream_ingest_duplicates_total", `kind="redrive"`, `source="generic"`},
		{"hookstream_consumer_events_total", `outcome="processed"`, `source="generic"`},
		{"hookstream_consumer_events_total", `outcome="failed"`, `source="generic"`},
		{"hookstream_consumer_events_total", `outcome="dead"`, `source="generic"`},
		{"hookstream_ingest_produce_duration_seconds_count"},
		{"hookstream_ingest_duplicate_check_duration_seconds_count"},
		{"hookstream_ingest_audit_produce_duration_seconds_count"},
		{"hookstream_consumer_end_to_end_seconds_count", `source="generic"`},
		{"hookstream_consumer_batch_events_count"},
		{"hookstream_consumer_claim_seconds_count"},
		{"hookstream_audit_relay_published_total"},
	} {
		if v, _ := metricstest.Sum(t, string(metrics), m[0], m[1:]...); v < 1 {
			t.Errorf("metric %s%v = %v, want at least 1", m[0], m[1:], v)
		}
	}

	// Lag is reported for the partitions that had records, and is zero now
	// that everything is processed.
	lagLines := 0
	for _, line := range strings.Split(string(metrics), "\n") {
		if strings.HasPrefix(line, `hookstream_consumer_lag_records{partition=`) && strings.Contains(line, `topic="`+st.topics.Events+`"`) {
			lagLines++
			if !strings.HasSuffix(line, " 0") {
				t.Errorf("lag after catching up: %s", line)
			}
		}
	}
	if lagLines == 0 {
		t.Error("no hookstream_consumer_lag_records series")
	}

	// An outside reader (kcat, a real Kafka client) sees records that
	// validate against the published JSON Schema.
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("kcat is not installed (.ci/run installs it)")
		}
		t.Skip("kcat not installed")
	}
	out, err := exec.Command(kcat, "-b", strings.Join(st.brokers, ","), "-C", "-t", st.topics.Audit, "-e", "-q", "-f", "%s\n").Output()
	if err != nil {
		t.Fatalf("kcat: %v", err)
	}
	sch := auditSchema(t)
	lines := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
	if len(lines) != rep.TopicRecords {
		t.Errorf("kcat read %d records, want %d", len(lines), rep.TopicRecords)
	}
	for _, l := range lines {
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(l))
		if err != nil {
			t.Fatalf("kcat line %q: %v", l, err)
		}
		if err := sch.Validate(doc); err != nil {
			t.Errorf("record %s does not match the schema: %v", l, err)
		}
	}
}

func auditSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	raw, err := fs.ReadFile(schemas.JSON(), "audit-record.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("audit-record.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("audit-record.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	return sch
}
