package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/hookstream/hookstream/audit"
	"github.com/hookstream/hookstream/internal/devstack"
	"github.com/hookstream/hookstream/internal/kafka"
	"github.com/hookstream/hookstream/internal/testenv"
	"github.com/hookstream/hookstream/internal/wire"
)

// TestReceiverSIGKILLAuditTrail: `hookstream serve` killed with SIGKILL in
// the middle of a load of signed events with duplicates and bad requests
// mixed in, then started again, while `hookstream consume`, the broker and
// PostgreSQL run on. Every request the receiver answered has exactly the
// one decision its answer stands for (the ACCEPTED of a 202 travelled in
// its event record; a 409's DUPLICATE and a 4xx's REJECTED were awaited on
// the audit topic before the answer). A request the kill cut off got no
// answer, so the design lets its decision go missing, whatever it was,
// except when its event was stored: then its ACCEPTED record travelled
// with it. Nothing else may be missing, and `audit verify`, which asks
// for the decisions events imply and not for those of requests, exits 0.
// (Before the decision travelled in the event record, a kill between the
// event's acknowledgement and its audit record's left stored events
// without ACCEPTED, which this test reports.)
func TestReceiverSIGKILLAuditTrail(t *testing.T) {
	t.Parallel()
	f := newKillFixture(t)
	startConsume(t, f.env, "consume")
	first := f.startServe("rcv-1")
	l := startKillLoad(t, f.ctx, first.url, 16)
	defer l.stop()

	l.waitAccepted(300)
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.cmd.Wait()
	atKill := l.accepted()
	second := f.startServe("rcv-2")
	l.retarget(second.url)
	l.waitAccepted(atKill + 150)
	l.stop()
	if err := second.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := second.cmd.Wait(); err != nil {
		t.Errorf("the restarted receiver did not stop cleanly on SIGTERM: %v", err)
	}
	l.summary()

	f.waitProcessed(l.acceptedEvents())
	f.waitGroupCommitted()
	f.waitSinkCaughtUp()
	f.runVerify()
	f.checkDecisions(l.sent)
}

// killFixture is a private broker with hookstream's topics, a database,
// and a sources file defining the generic source; the receiver runs as
// its own process so that it can be killed alone.
type killFixture struct {
	t      *testing.T
	ctx    context.Context
	env    []string
	broker []string
	pool   *pgxpool.Pool
}

const killSecret = "kill-test-s3cret"

func newKillFixture(t *testing.T) *killFixture {
	t.Helper()
	broker := testenv.NewKafka(t) // default topic names need a broker of this test's own
	dbURL := testenv.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	testTopics(ctx, t, broker.Addrs(), 3)
	srcFile := filepath.Join(t.TempDir(), "sources.yaml")
	if err := os.WriteFile(srcFile, []byte(`sources:
  - name: generic
    scheme: hmac-sha256
    secrets: [`+killSecret+`]
    event_id: {pointer: /event_id}
    customer_id: {pointer: /customer_id}
    event_type: {pointer: /event_type}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return &killFixture{t: t, ctx: ctx, pool: pool, broker: broker.Addrs(),
		env: []string{"HOOKSTREAM_KAFKA_BROKERS=" + broker.Addrs()[0], "HOOKSTREAM_DATABASE_URL=" + dbURL, "HOOKSTREAM_SOURCES=" + srcFile}}
}

type killServe struct {
	cmd *exec.Cmd
	url string
}

// startServe runs `hookstream serve` on a free port and waits for /readyz.
func (f *killFixture) startServe(instance string) *killServe {
	t := f.t
	t.Helper()
	port, err := devstack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(binary, "serve", "--http-addr", addr, "--instance", instance, "--shutdown-grace", "20s", "--log-level", "warn")
	cmd.Env = append(os.Environ(), f.env...)
	cmd.Stderr = &testLog{t: t, prefix: instance}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	for {
		if resp, err := http.Get("http://" + addr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return &killServe{cmd: cmd, url: "http://" + addr}
			}
		}
		if f.ctx.Err() != nil {
			t.Fatalf("%s never became ready", instance)
		}
		time.Sleep(50 * time.Millisecond) // polling for readiness
	}
}

// waitProcessed waits until every event in ids is PROCESSED.
func (f *killFixture) waitProcessed(ids []string) {
	t := f.t
	t.Helper()
	for {
		var n int
		if err := f.pool.QueryRow(f.ctx, `SELECT count(*) FROM events WHERE source = 'generic' AND event_id = ANY($1) AND status = 'PROCESSED'`, ids).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == len(ids) {
			return
		}
		if f.ctx.Err() != nil {
			t.Fatalf("%d of the %d events answered 202 are PROCESSED", n, len(ids))
		}
		time.Sleep(50 * time.Millisecond) // polling for the state
	}
}

// waitGroupCommitted waits until the consumer group has committed (to
// Kafka, where verify looks) the end of every partition of the events
// topic: everything the receivers stored, answered or not, was processed,
// and verify checks every event record.
func (f *killFixture) waitGroupCommitted() {
	t := f.t
	t.Helper()
	adm, cl, err := kafka.NewAdmin(kafka.Config{Brokers: f.broker})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := adm.ListEndOffsets(f.ctx, wire.DefaultEventsTopic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	for {
		committed, err := adm.FetchOffsets(f.ctx, "hookstream")
		if err != nil && f.ctx.Err() == nil {
			t.Fatal(err)
		}
		behind := 0
		ends.Each(func(o kadm.ListedOffset) {
			if c, ok := committed.Lookup(o.Topic, o.Partition); !ok || c.At < o.Offset {
				behind++
			}
		})
		if behind == 0 {
			return
		}
		if f.ctx.Err() != nil {
			t.Fatalf("the consumer group has not committed the end of %d partitions of %s", behind, wire.DefaultEventsTopic)
		}
		time.Sleep(100 * time.Millisecond) // polling for the group's commit
	}
}

// waitSinkCaughtUp waits until every receiver record on the audit topic
// (`hookstream audit tail`, read to its end; the receivers have stopped, so
// no more come) is in audit_log: the sink has copied them all, and verify
// compares a settled topic and table.
func (f *killFixture) waitSinkCaughtUp() {
	t := f.t
	t.Helper()
	cmd := exec.CommandContext(f.ctx, binary, "audit", "tail")
	cmd.Env = append(os.Environ(), f.env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("audit tail: %v\n%s", err, stderr.String())
	}
	// Distinct ids: the relay publishes again, after a failure, rows it
	// may have published before (the receiver's ACCEPTED records among
	// them, which travel in the event and reach the table first).
	var ids []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var a wire.AuditRecord
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			t.Fatalf("audit tail printed %q: %v", sc.Text(), err)
		}
		if a.Actor == wire.ActorIngest && !seen[a.AuditID] {
			seen[a.AuditID] = true
			ids = append(ids, a.AuditID)
		}
	}
	for {
		var n int
		if err := f.pool.QueryRow(f.ctx, `SELECT count(*) FROM audit_log WHERE audit_id = ANY($1::uuid[])`, ids).Scan(&n); err != nil {
			t.Fatalf("waiting for the sink to copy %d receiver records: %v", len(ids), err)
		}
		if n == len(ids) {
			t.Logf("%d receiver records on the audit topic, all in audit_log", n)
			return
		}
		if f.ctx.Err() != nil {
			t.Fatalf("%d of the %d receiver records on the audit topic are in audit_log", n, len(ids))
		}
		time.Sleep(50 * time.Millisecond) // polling for the sink
	}
}

// runVerify runs `hookstream audit verify` and requires exit 0 and a
// report in which nothing is missing and every event record was checked.
// A failure does not stop the test: the checks in PostgreSQL that follow
// say which requests the missing decisions belong to. It returns the
// report.
func (f *killFixture) runVerify() *audit.Report {
	t := f.t
	t.Helper()
	cmd := exec.CommandContext(f.ctx, binary, "audit", "verify", "--since", "1h")
	cmd.Env = append(os.Environ(), f.env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var rep audit.Report
	if jerr := json.Unmarshal(stdout.Bytes(), &rep); jerr != nil {
		t.Fatalf("audit verify: %v, report %q: %v\nstderr: %s", err, stdout.String(), jerr, stderr.String())
	}
	if err != nil || !rep.OK() {
		t.Errorf("audit verify: %v\nstderr: %s\nreport: %.4000s", err, stderr.String(), stdout.String())
		return &rep
	}
	if rep.Unconsumed != 0 || rep.Quarantined != 0 || rep.EventRecords == 0 || rep.Events == 0 {
		t.Errorf("audit verify checked %d event records (%d unconsumed) and %d events, %d quarantined: %s",
			rep.EventRecords, rep.Unconsumed, rep.Events, rep.Quarantined, stdout.String())
	}
	t.Logf("audit verify: exit 0; %d topic and %d table records (%d pending), %d events, %d event records",
		rep.TopicRecords, rep.TableRecords, rep.Pending, rep.Events, rep.EventRecords)
	return &rep
}

// killDecision is a receiver decision in audit_log.
type killDecision struct {
	action, eventID string
	status          int
}

// checkDecisions asserts, from audit_log and events, that each request
// has the decisions its answer (or the lack of one) allows, and that
// every event has its ACCEPTED and PROCESSED records.
func (f *killFixture) checkDecisions(sent []killRequest) {
	t := f.t
	t.Helper()
	rows, err := f.pool.Query(f.ctx, `SELECT coalesce(detail->>'client_request_id', ''), action, coalesce(event_id, ''), coalesce(http_status, 0),
  coalesce((detail->'summary'->>'count')::int, 0)
FROM audit_log WHERE actor = 'ingest'`)
	if err != nil {
		t.Fatal(err)
	}
	byRequest := map[string][]killDecision{}
	var client string
	var r killDecision
	// Unsigned requests past their rate are recorded only in a summary
	// (docs/design.md, "Rejections of anonymous requests").
	var summarized, unrecorded int
	var count int
	if _, err := pgx.ForEachRow(rows, []any{&client, &r.action, &r.eventID, &r.status, &count}, func() error {
		if count > 0 {
			summarized += count
			return nil
		}
		byRequest[client] = append(byRequest[client], r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	stored := f.storedEvents()
	cut := map[string]int{}
	for _, s := range sent {
		recs := byRequest[s.clientID]
		delete(byRequest, s.clientID)
		if s.status == 0 {
			if len(recs) > 1 {
				t.Errorf("request %s (%s %s), cut off by the kill: %d decisions %v", s.clientID, s.kind, s.eventID, len(recs), recs)
			}
			what := "none"
			if len(recs) == 1 {
				what = recs[0].action
			}
			cut[s.kind+" -> "+what]++
			if s.kind == "new" && (stored[s.eventID] != (what == string(wire.ActionAccepted))) {
				t.Errorf("request %s (new %s), cut off by the kill: stored %v, decision %s", s.clientID, s.eventID, stored[s.eventID], what)
			}
			continue
		}
		if len(recs) == 0 && s.status == http.StatusUnauthorized {
			unrecorded++
			continue
		}
		if len(recs) != 1 || !s.allows(recs[0]) {
			t.Errorf("request %s (%s %s) answered %d: decisions %v", s.clientID, s.kind, s.eventID, s.status, recs)
		}
		if s.status == http.StatusAccepted && !stored[s.eventID] {
			t.Errorf("request %s (%s %s) answered 202: the event is not in events", s.clientID, s.kind, s.eventID)
		}
	}
	for client, recs := range byRequest {
		t.Errorf("receiver decisions of no request of this test (client request id %q): %v", client, recs)
	}
	if unrecorded > summarized {
		t.Errorf("%d unsigned requests answered 401 have no record of their own, and summaries count only %d", unrecorded, summarized)
	}
	t.Logf("requests cut off by the kill, by kind -> decision: %v", cut)
	f.checkEvents()
}

// storedEvents are the event ids in events.
func (f *killFixture) storedEvents() map[string]bool {
	rows, err := f.pool.Query(f.ctx, `SELECT event_id FROM events WHERE source = 'generic'`)
	if err != nil {
		f.t.Fatal(err)
	}
	ids := map[string]bool{}
	var id string
	if _, err := pgx.ForEachRow(rows, []any{&id}, func() error { ids[id] = true; return nil }); err != nil {
		f.t.Fatal(err)
	}
	return ids
}

// checkEvents: every event is PROCESSED, with at least one ACCEPTED
// record and exactly one PROCESSED record.
func (f *killFixture) checkEvents() {
	rows, err := f.pool.Query(f.ctx, `SELECT e.event_id, e.status,
  (SELECT count(*) FROM audit_log a WHERE a.source = e.source AND a.event_id = e.event_id AND a.action IN ('ACCEPTED', 'RETRY_ACCEPTED')),
  (SELECT count(*) FROM audit_log a WHERE a.source = e.source AND a.event_id = e.event_id AND a.action = 'PROCESSED')
FROM events e`)
	if err != nil {
		f.t.Fatal(err)
	}
	var id, status string
	var accepted, processed, n int
	if _, err := pgx.ForEachRow(rows, []any{&id, &status, &accepted, &processed}, func() error {
		n++
		if status != "PROCESSED" || accepted < 1 || processed != 1 {
			f.t.Errorf("event %s: %s with %d ACCEPTED and %d PROCESSED records", id, status, accepted, processed)
		}
		return nil
	}); err != nil {
		f.t.Fatal(err)
	}
	f.t.Logf("%d events checked for their ACCEPTED and PROCESSED records", n)
}

// killRequest is one request of the load and what came of it.
type killRequest struct {
	clientID string // X-Request-Id, recorded as detail.client_request_id
	kind     string // new, duplicate, bad_signature, malformed
	eventID  string
	body     []byte
	status   int // 0: no answer (the receiver died, or was dead)
	err      error
}

// allows reports whether rec is the decision the answer stands for.
func (s *killRequest) allows(rec killDecision) bool {
	if rec.status != s.status {
		return false
	}
	switch s.status {
	case http.StatusAccepted:
		// A duplicate of an event not yet in events is produced again;
		// of one being processed, it is a DUPLICATE answered 202.
		return rec.action == string(wire.ActionAccepted) ||
			s.kind == "duplicate" && rec.action == string(wire.ActionDuplicate)
	case http.StatusConflict:
		return s.kind == "duplicate" && rec.action == string(wire.ActionDuplicate)
	case http.StatusUnauthorized:
		return s.kind == "bad_signature" && rec.action == string(wire.ActionRejected)
	case http.StatusBadRequest:
		return s.kind == "malformed" && rec.action == string(wire.ActionRejected)
	}
	return false // the broker never failed: no 503
}

// killLoad is many workers posting to the current receiver. A worker whose
// request gets no answer waits for the receiver to be replaced; it does
// not send that request again.
type killLoad struct {
	t      *testing.T
	ctx    context.Context
	client *http.Client
	done   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once

	mu       sync.Mutex
	url      string
	gen      int
	replaced chan struct{} // closed when url changes
	sent     []killRequest
	nAccept  int
	progress chan struct{}
}

func startKillLoad(t *testing.T, ctx context.Context, url string, workers int) *killLoad {
	l := &killLoad{t: t, ctx: ctx, done: make(chan struct{}), url: url, replaced: make(chan struct{}), progress: make(chan struct{}, 1),
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers}}}
	for w := range workers {
		l.wg.Add(1)
		go l.worker(w)
	}
	return l
}

func (l *killLoad) worker(w int) {
	defer l.wg.Done()
	rng := rand.New(rand.NewPCG(uint64(w), 13))
	var mine []killRequest // this worker's events answered 202, to send again
	for i := 0; ; i++ {
		select {
		case <-l.done:
			return
		default:
		}
		l.mu.Lock()
		url, gen := l.url, l.gen
		l.mu.Unlock()
		r := nextKillRequest(rng, w, i, mine)
		r.status, r.err = l.post(url, &r)
		l.record(r)
		if r.err != nil {
			if !l.waitReplaced(gen) {
				return
			}
			continue
		}
		if r.kind == "new" && r.status == http.StatusAccepted {
			mine = append(mine, r)
		}
	}
}

// nextKillRequest: mostly new events, some sent again, some unsigned or
// signed but not JSON.
func nextKillRequest(rng *rand.Rand, w, i int, mine []killRequest) killRequest {
	r := killRequest{clientID: fmt.Sprintf("rk-%d-%d", w, i), kind: "new", eventID: fmt.Sprintf("evt-%d-%d", w, i)}
	switch n := rng.IntN(100); {
	case n < 8 && len(mine) > 0:
		prev := mine[rng.IntN(len(mine))]
		r.kind, r.eventID, r.body = "duplicate", prev.eventID, prev.body
		return r
	case n < 11:
		r.kind = "bad_signature"
	case n < 14:
		r.kind = "malformed"
		r.body = []byte(fmt.Sprintf(`{"event_id":%q,"customer_id":"cus_x"`, r.eventID))
		return r
	}
	r.body = []byte(fmt.Sprintf(`{"event_id":%q,"customer_id":"cus_%d","event_type":"kill.test","payload":{"n":%d}}`, r.eventID, rng.IntN(24), i))
	return r
}

func (l *killLoad) post(url string, r *killRequest) (int, error) {
	m := hmac.New(sha256.New, []byte(killSecret))
	m.Write(r.body)
	sig := hex.EncodeToString(m.Sum(nil))
	if r.kind == "bad_signature" {
		sig = strings.Repeat("0", len(sig))
	}
	req, err := http.NewRequestWithContext(l.ctx, http.MethodPost, url+"/webhooks/generic", bytes.NewReader(r.body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Signature", sig)
	req.Header.Set("X-Request-Id", r.clientID)
	resp, err := l.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		// The status came but the reply was cut: the receiver decided,
		// and the test treats it as answered.
		l.t.Logf("request %s: body cut after status %d: %v", r.clientID, resp.StatusCode, err)
	}
	return resp.StatusCode, nil
}

func (l *killLoad) record(r killRequest) {
	l.mu.Lock()
	l.sent = append(l.sent, r)
	if r.status == http.StatusAccepted {
		l.nAccept++
	}
	l.mu.Unlock()
	select {
	case l.progress <- struct{}{}:
	default:
	}
}

func (l *killLoad) accepted() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.nAccept
}

// waitAccepted waits until n requests in all were answered 202.
func (l *killLoad) waitAccepted(n int) {
	l.t.Helper()
	for l.accepted() < n {
		select {
		case <-l.progress:
		case <-l.ctx.Done():
			l.t.Fatalf("%d requests answered 202, waiting for %d", l.accepted(), n)
		}
	}
}

// retarget sends the load to url from now on.
func (l *killLoad) retarget(url string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.url = url
	l.gen++
	close(l.replaced)
	l.replaced = make(chan struct{})
}

// waitReplaced waits until the target is newer than gen; false when the
// load stops first.
func (l *killLoad) waitReplaced(gen int) bool {
	for {
		l.mu.Lock()
		now, ch := l.gen, l.replaced
		l.mu.Unlock()
		if now > gen {
			return true
		}
		select {
		case <-ch:
		case <-l.done:
			return false
		case <-l.ctx.Done():
			return false
		}
	}
}

// stop ends the load and waits for the workers' last answers.
func (l *killLoad) stop() {
	l.once.Do(func() { close(l.done) })
	l.wg.Wait()
}

// acceptedEvents are the event ids of the requests answered 202.
func (l *killLoad) acceptedEvents() []string {
	seen := map[string]bool{}
	var ids []string
	for _, s := range l.sent {
		if s.status == http.StatusAccepted && !seen[s.eventID] {
			seen[s.eventID] = true
			ids = append(ids, s.eventID)
		}
	}
	return ids
}

// summary logs the answers, and the transport errors of the requests that
// got none: "connection refused" reached no receiver; the others were cut
// off in a receiver (or on the way to it) by the kill.
func (l *killLoad) summary() {
	codes := map[int]int{}
	unanswered := map[string]int{}
	for _, s := range l.sent {
		codes[s.status]++
		if s.err != nil {
			kind := "cut off"
			if errors.Is(s.err, syscall.ECONNREFUSED) {
				kind = "refused"
			}
			unanswered[kind]++
		}
	}
	l.t.Logf("%d requests: answers %v (0: none), unanswered %v", len(l.sent), codes, unanswered)
}
