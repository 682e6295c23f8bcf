package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/hookstream/hookstream/consumer"
	"github.com/hookstream/hookstream/internal/kafka"
	"github.com/hookstream/hookstream/internal/testenv"
	"github.com/hookstream/hookstream/internal/wire"
)

// The compound-faults test (issue 12, "How it is shown", second bullet):
// the receiver of `hookstream dev --consume=false` takes signed requests
// for 200 customers, three `hookstream consume` processes deliver them to
// an HTTP destination, and meanwhile the destination fails for some
// customers and refuses some events for good, members are killed inside a
// delivery and restarted, one is stopped inside a delivery until the group
// has given its partitions to the others and then resumed, and operators
// replay, unpark and skip through the admin API and `hookstream replay`
// while providers re-send. The events go through the receiver, not straight
// to Kafka, so that re-sends of FAILED and DEAD events take the path a
// provider's would (a re-drive record), and the admin API is the one dev
// serves.
//
// The schedule (which customers fail, which members are hit, what is
// replayed) comes from a fixed seed, logged; HOOKSTREAM_FAULTS_SEED
// replays another. Timing still varies from run to run; every assertion is
// on the final state and on the destination's record, never on a timer.

const (
	faultCustomers  = 200
	faultWaves      = 12 // events per customer, one per wave
	faultPartitions = 6
	faultSource     = "shop"
	faultSecret     = "faults-test-secret"
	faultToken      = "faults-admin-token"
	faultSeed       = 12
)

// faultPlan is the seeded part of the schedule.
type faultPlan struct {
	flaky    map[string]bool // the destination answers 503 while the outage lasts
	fixLater map[string]int  // seq refused (422) until the destination is fixed; then replayed
	skip     map[string]int  // seq refused for good; skipped by the operator, left DEAD
	victims  []string        // members hit: killed, stopped, killed
}

func newFaultPlan(rng *rand.Rand) *faultPlan {
	p := &faultPlan{flaky: map[string]bool{}, fixLater: map[string]int{}, skip: map[string]int{}}
	for i, c := range rng.Perm(faultCustomers) {
		cust := faultCustomer(c)
		switch {
		case i < 40:
			p.flaky[cust] = true
		case i < 50:
			p.fixLater[cust] = 1 + rng.IntN(faultWaves-2)
		case i < 60:
			p.skip[cust] = 1 + rng.IntN(faultWaves-2)
		}
	}
	p.victims = []string{"a", "b", "c"}
	rng.Shuffle(len(p.victims), func(i, j int) { p.victims[i], p.victims[j] = p.victims[j], p.victims[i] })
	return p
}

func faultCustomer(c int) string             { return fmt.Sprintf("cus%03d", c) }
func faultEvent(cust string, seq int) string { return fmt.Sprintf("%s-%d", cust, seq) }

// faultCall is one request the destination received.
type faultCall struct {
	member   string // the consume process (incarnation) that made it
	customer string
	seq      int
	eventID  string    // from the body
	key      string    // Idempotency-Key
	status   int       // what the destination answered (or would have, to a process killed meanwhile)
	at       time.Time // when the destination received it
}

// faultDest is the HTTP destination. Each member delivers to
// /hooks/<incarnation>, so every call says which process made it.
type faultDest struct {
	plan   *faultPlan
	mu     sync.Mutex
	calls  []faultCall
	outage bool // the flaky customers get 503
	fixed  bool // the fixLater events are accepted
	trap   *deliveryTrap
}

// deliveryTrap holds the first call of member that the destination
// accepts (and that match, when set, accepts), until released: the test
// kills or stops the member while it waits inside that delivery.
type deliveryTrap struct {
	member  string
	match   func(faultCall) bool
	caught  chan faultCall
	release chan struct{}
	once    sync.Once
}

func (tr *deliveryTrap) free() { tr.once.Do(func() { close(tr.release) }) }

func (d *faultDest) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	var body struct {
		EventID  string `json:"event_id"`
		Customer string `json:"customer_id"`
		Seq      int    `json:"seq"`
	}
	if err := json.NewDecoder(req.Body).Decode(&body); err != nil {
		body.EventID = "undecodable: " + err.Error()
	}
	c := faultCall{member: strings.TrimPrefix(req.URL.Path, "/hooks/"), customer: body.Customer, seq: body.Seq,
		eventID: body.EventID, key: req.Header.Get("Idempotency-Key")}
	d.mu.Lock()
	c.at = time.Now() // under the lock: the calls are in the order of their times
	c.status = d.answer(c)
	d.calls = append(d.calls, c)
	var tr *deliveryTrap
	if t := d.trap; t != nil && t.member == c.member && c.status == http.StatusNoContent && (t.match == nil || t.match(c)) {
		tr, d.trap = t, nil
	}
	d.mu.Unlock()
	if tr != nil {
		tr.caught <- c
		<-tr.release
	}
	w.WriteHeader(c.status)
}

func (d *faultDest) answer(c faultCall) int {
	if s, ok := d.plan.skip[c.customer]; ok && s == c.seq {
		return http.StatusUnprocessableEntity
	}
	if s, ok := d.plan.fixLater[c.customer]; ok && s == c.seq && !d.fixed {
		return http.StatusUnprocessableEntity
	}
	if d.plan.flaky[c.customer] && d.outage {
		return http.StatusServiceUnavailable
	}
	return http.StatusNoContent
}

func (d *faultDest) set(f func(d *faultDest)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f(d)
}

func (d *faultDest) snapshot() []faultCall {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.calls)
}

// faultRun is the running system and the test's handles on it.
type faultRun struct {
	t       *testing.T
	ctx     context.Context
	rng     *rand.Rand
	plan    *faultPlan
	dest    *faultDest
	destURL string
	dir     string
	env     []string // broker and database, for every process
	dev     *devProcess
	pool    *pgxpool.Pool
	adm     *kadm.Client
	http    *http.Client
	members map[string]*exec.Cmd // the running incarnation of each member
	gen     map[string]int
	traps   []*deliveryTrap
	sent    int         // waves sent
	faults  []faultSpan // the kills and the stop, each until the test moved on from it (redelivery_test.go)
}

func TestConsumerCompoundFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the receiver and three consumer processes through a minute of faults")
	}
	seed := uint64(faultSeed)
	if v := os.Getenv("HOOKSTREAM_FAULTS_SEED"); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("HOOKSTREAM_FAULTS_SEED: %v", err)
		}
	}
	t.Logf("seed %d (HOOKSTREAM_FAULTS_SEED=%d reruns this schedule)", seed, seed)
	start := time.Now()
	f := newFaultRun(t, seed)
	t.Logf("plan: %d flaky customers, %d refused until fixed, %d refused for good; members hit: %v",
		len(f.plan.flaky), len(f.plan.fixLater), len(f.plan.skip), f.plan.victims)

	for _, name := range []string{"a", "b", "c"} {
		f.startMember(name)
	}
	f.waitGroup(3)
	f.dest.set(func(d *faultDest) { d.outage = true })
	f.wave()

	// A member dies inside a delivery the destination accepted, with more
	// of the customer's events after it in its batch: those are delivered
	// but not recorded, and the next owner delivers them again.
	v := f.plan.victims
	tr, c := f.trapInBacklog(f.incarnation(v[0]), 2)
	f.killInDelivery(v[0], tr, c)
	f.replaySome(8)
	f.cli("replay", "--status", "DEAD", "--reason", "chaos")
	f.resendSome(20)
	f.wave()
	f.waitGroup(3)

	// A member paused inside a delivery past its session timeout: the
	// group moves its partitions, the others go on, and when it resumes
	// it finishes what it had begun, as a zombie that must commit nothing.
	tr, c = f.trapInBacklog(f.incarnation(v[1]), 3)
	f.stopPastSessionTimeout(v[1], tr, c, func() {
		f.wave()
		f.unparkSome(10)
		f.replaySome(5)
		f.resendSome(20)
	})

	// The destination heals; operators unpark, and a member dies inside
	// one of the drains that follow.
	f.dest.set(func(d *faultDest) { d.outage, d.fixed = false, true })
	f.unparkSome(40)
	draining := func(c faultCall) bool { _, fix := f.plan.fixLater[c.customer]; return f.plan.flaky[c.customer] || fix }
	tr, c = f.trapNext(f.incarnation(v[2]), draining)
	f.killInDelivery(v[2], tr, c)
	f.cli("replay", "--status", "FAILED", "--reason", "chaos")
	f.resendSome(20)
	for f.sent < faultWaves {
		f.wave()
	}
	f.settle()
	f.verify()
	t.Logf("finished in %s", time.Since(start).Round(time.Second))
}

func newFaultRun(t *testing.T, seed uint64) *faultRun {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed))
	f := &faultRun{t: t, rng: rng, plan: newFaultPlan(rng), dir: t.TempDir(), members: map[string]*exec.Cmd{}, gen: map[string]int{},
		http: &http.Client{Timeout: 30 * time.Second}}
	f.dest = &faultDest{plan: f.plan}
	srv := httptest.NewServer(f.dest)
	t.Cleanup(srv.Close)
	t.Cleanup(func() { // after every process is gone, before the server closes
		for _, tr := range f.traps {
			tr.free()
		}
	})
	f.destURL = srv.URL
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	t.Cleanup(cancel)
	f.ctx = ctx

	broker := testenv.NewKafka(t) // default topic names need a broker of this test's own
	dbURL := testenv.Postgres(t)
	f.env = []string{"HOOKSTREAM_KAFKA_BROKERS=" + broker.Addrs()[0], "HOOKSTREAM_DATABASE_URL=" + dbURL}
	recvSources := f.writeSources("receiver")
	// --consume=false: the receiver and the admin API only; the
	// consumers are the processes this test runs and hurts.
	f.dev = startDevWith(t, []string{"--consume=false", "--data-dir", t.TempDir(), "--partitions", strconv.Itoa(faultPartitions),
		"--sources", recvSources}, append(slices.Clone(f.env), "HOOKSTREAM_ADMIN_TOKEN="+faultToken))
	t.Cleanup(func() { f.dev.stop(t) })

	var err error
	if f.pool, err = pgxpool.New(ctx, dbURL); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.pool.Close)
	adm, cl, err := kafka.NewAdmin(kafka.Config{Brokers: broker.Addrs()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	f.adm = adm
	return f
}

// writeSources writes the sources file of one process: the same source
// everywhere, delivering to /hooks/<name>.
func (f *faultRun) writeSources(name string) string {
	f.t.Helper()
	return processSources(f.t, f.dir, name, faultSource, faultSecret, f.destURL,
		"{max_attempts: 5, initial_backoff: 100ms, max_backoff: 500ms}")
}

// startMember starts the next incarnation of member name (a1, a2, …).
func (f *faultRun) startMember(name string) string {
	f.t.Helper()
	f.gen[name]++
	inc := fmt.Sprintf("%s%d", name, f.gen[name])
	env := append(slices.Clone(f.env), "HOOKSTREAM_SOURCES="+f.writeSources(inc))
	f.members[name] = startConsumeLog(f.t, env, inc, &testLog{t: f.t, prefix: inc, drop: []string{"retry scheduled", "dead-lettered"}})
	return inc
}

func (f *faultRun) incarnation(name string) string { return fmt.Sprintf("%s%d", name, f.gen[name]) }

// waitUntil polls cond until it holds, failing the test with cond's last
// description after two minutes.
func (f *faultRun) waitUntil(what string, cond func() (bool, string)) {
	f.t.Helper()
	waitFor(f.t, f.ctx, what, 2*time.Minute, cond)
}

// waitGroup waits until the consumer group is stable with n members that
// share every partition: members killed or stopped have been evicted and
// members started have joined.
func (f *faultRun) waitGroup(n int) {
	f.t.Helper()
	f.waitUntil(fmt.Sprintf("the group stable with %d members", n), func() (bool, string) {
		return groupStable(f.ctx, f.adm, n, faultPartitions)
	})
}

// trapNext arms a trap for member's next accepted delivery that matches
// (nil: any) and waits until it holds one, sending more waves (or
// re-sends, once every wave is out) while the member has nothing to do.
func (f *faultRun) trapNext(member string, match func(faultCall) bool) (*deliveryTrap, faultCall) {
	f.t.Helper()
	tr := &deliveryTrap{member: member, match: match, caught: make(chan faultCall, 1), release: make(chan struct{})}
	f.traps = append(f.traps, tr)
	f.dest.set(func(d *faultDest) { d.trap = tr })
	for {
		select {
		case c := <-tr.caught:
			return tr, c
		case <-time.After(time.Second):
			if f.sent < faultWaves {
				f.wave()
			} else {
				f.resendSome(5)
			}
		case <-f.ctx.Done():
			f.t.Fatalf("no delivery by %s to trap", member)
		}
	}
}

// trapInBacklog traps a delivery of member that is likely to be the first
// of several of its customer in one batch: a first trap holds the
// member's batch while waves more are sent (its poll loop gathers them),
// and a second trap takes the next accepted delivery once the first lets
// go. Killed or stopped there, the member leaves delivered-but-unrecorded
// events behind with more of the same customer after them.
func (f *faultRun) trapInBacklog(member string, waves int) (*deliveryTrap, faultCall) {
	f.t.Helper()
	hold, _ := f.trapNext(member, nil)
	for range waves {
		f.wave()
	}
	tr := &deliveryTrap{member: member, caught: make(chan faultCall, 1), release: make(chan struct{})}
	f.traps = append(f.traps, tr)
	f.dest.set(func(d *faultDest) { d.trap = tr })
	hold.free()
	select {
	case c := <-tr.caught:
		return tr, c
	case <-f.ctx.Done():
		f.t.Fatalf("no delivery by %s to trap after its backlog", member)
		return nil, faultCall{}
	}
}

// waitRedelivered waits until a process other than the one of c delivered
// c's event again.
func (f *faultRun) waitRedelivered(c faultCall) {
	f.t.Helper()
	f.waitUntil(fmt.Sprintf("%s delivered again after %s", c.eventID, c.member), func() (bool, string) {
		for _, d := range f.dest.snapshot() {
			if d.eventID == c.eventID && d.member != c.member {
				return true, ""
			}
		}
		return false, "not yet"
	})
}

// killInDelivery kills member with SIGKILL while it waits for the
// destination's answer to a delivery the destination accepted, starts its
// next incarnation, and waits until the event is delivered again.
func (f *faultRun) killInDelivery(name string, tr *deliveryTrap, c faultCall) {
	f.t.Helper()
	began := time.Now()
	defer func() {
		f.faults = append(f.faults, faultSpan{what: "member-kill " + c.member, from: began, to: time.Now().Add(redeliveryMargin)})
	}()
	cmd := f.members[name]
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		f.t.Fatal(err)
	}
	_ = cmd.Wait()
	tr.free()
	next := f.startMember(name)
	f.t.Logf("wave %d: killed %s inside the delivery of %s (accepted, not recorded); started %s", f.sent, c.member, c.eventID, next)
	f.waitRedelivered(c)
}

// stopPastSessionTimeout stops member with SIGSTOP inside an accepted
// delivery, waits until the group has evicted it and another member has
// taken over (delivering the same event again), runs meanwhile, and
// resumes the member with SIGCONT: a zombie, until it hears from the
// group, that must commit nothing.
func (f *faultRun) stopPastSessionTimeout(name string, tr *deliveryTrap, c faultCall, meanwhile func()) {
	f.t.Helper()
	cmd := f.members[name]
	owners, epochs := f.assignment(), f.epochs()
	began := time.Now()
	defer func() {
		f.faults = append(f.faults, faultSpan{what: "member-stop " + c.member, from: began, to: time.Now().Add(redeliveryMargin)})
	}()
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		f.t.Fatal(err)
	}
	tr.free() // the answer waits in the socket for the stopped process
	f.t.Logf("wave %d: stopped %s inside the delivery of %s", f.sent, c.member, c.eventID)
	f.waitGroup(2)
	// The member the group evicted is the stopped one: each of its
	// partitions must now be taken (its owner epoch raised) by another.
	var moved []int32
	after := f.assignment()
	for id, ps := range owners {
		if _, ok := after[id]; !ok {
			moved = append(moved, ps...)
		}
	}
	if len(moved) == 0 {
		f.t.Fatalf("no partition moved when the group evicted %s: %v, then %v", c.member, owners, after)
	}
	evictedAt := time.Now()
	waitFor(f.t, f.ctx, fmt.Sprintf("partitions %v of the stopped %s taken by the others", moved, c.member), 30*time.Second, func() (bool, string) {
		now := f.epochs()
		for _, p := range moved {
			if now[p] <= epochs[p] {
				return false, fmt.Sprintf("partition %d still at owner epoch %d; PostgreSQL sessions idle in a transaction or waiting for a lock: %s", p, now[p], f.pgActivity())
			}
		}
		return true, ""
	})
	f.t.Logf("wave %d: partitions %v taken by the others %s after the group evicted %s", f.sent, moved, time.Since(evictedAt).Round(100*time.Millisecond), c.member)
	f.waitRedelivered(c)
	meanwhile()
	before := len(f.dest.snapshot())
	if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
		f.t.Fatal(err)
	}
	f.waitGroup(3)
	zombie := 0
	for _, d := range f.dest.snapshot()[before:] {
		if d.member == c.member {
			zombie++
		}
	}
	f.t.Logf("wave %d: resumed %s; it made %d calls until the group took it back", f.sent, c.member, zombie)
}

// assignment is the events topic's partitions of each group member.
func (f *faultRun) assignment() map[string][]int32 {
	f.t.Helper()
	gs, err := f.adm.DescribeGroups(f.ctx, "hookstream")
	if err != nil {
		f.t.Fatal(err)
	}
	out := map[string][]int32{}
	for _, m := range gs["hookstream"].Members {
		if a, ok := m.Assigned.AsConsumer(); ok {
			for _, tp := range a.Topics {
				if tp.Topic == wire.DefaultEventsTopic {
					out[m.MemberID] = append(out[m.MemberID], tp.Partitions...)
				}
			}
		}
	}
	return out
}

// epochs are the partitions' owner epochs (consumer_offsets).
func (f *faultRun) epochs() map[int32]int64 {
	f.t.Helper()
	rows, err := f.pool.Query(f.ctx, `SELECT partition, owner_epoch FROM consumer_offsets WHERE group_id = 'hookstream' AND topic = $1`, wire.DefaultEventsTopic)
	if err != nil {
		f.t.Fatal(err)
	}
	out := map[int32]int64{}
	var p int32
	var e int64
	if _, err := pgx.ForEachRow(rows, []any{&p, &e}, func() error { out[p] = e; return nil }); err != nil {
		f.t.Fatal(err)
	}
	return out
}

// pgActivity describes the sessions that hold a transaction open without
// running anything, and those waiting for a lock.
func (f *faultRun) pgActivity() string {
	rows, err := f.pool.Query(f.ctx, `SELECT format('pid %s %s for %s, waiting for %s: %s', pid, state, now() - xact_start,
  coalesce(pg_blocking_pids(pid)::text, '-'), left(regexp_replace(query, '\s+', ' ', 'g'), 100))
FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()
  AND (state = 'idle in transaction' OR wait_event_type = 'Lock')`)
	if err != nil {
		return err.Error()
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err.Error()
	}
	return "\n\t" + strings.Join(lines, "\n\t")
}

// wave sends the next event of every customer through the receiver, each
// customer's events one after another, so that their order in Kafka is
// their sequence. Once every wave is out it does nothing.
func (f *faultRun) wave() {
	f.t.Helper()
	seq := f.sent
	if seq == faultWaves {
		return
	}
	next := make(chan int)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for c := range next {
				f.send(faultCustomer(c), seq)
			}
		})
	}
	for c := range faultCustomers {
		next <- c
	}
	close(next)
	wg.Wait()
	f.sent++
}

func faultBody(cust string, seq int) []byte {
	return fmt.Appendf(nil, `{"event_id":%q,"customer_id":%q,"type":"order.updated","seq":%d}`, faultEvent(cust, seq), cust, seq)
}

// send posts an event until the receiver accepts it.
func (f *faultRun) send(cust string, seq int) {
	for attempt := 0; ; attempt++ {
		status, err := f.post(faultBody(cust, seq))
		switch {
		case err == nil && status == http.StatusAccepted:
			return
		case err == nil && status == http.StatusConflict && attempt > 0:
			return // an earlier attempt was stored after all, and is processed
		case err == nil && status != http.StatusServiceUnavailable:
			f.t.Errorf("post %s: status %d", faultEvent(cust, seq), status)
			return
		}
		if attempt == 20 {
			f.t.Errorf("post %s: not accepted after %d attempts: %d %v", faultEvent(cust, seq), attempt, status, err)
			return
		}
		time.Sleep(100 * time.Millisecond) // a provider's pause before it retries
	}
}

func (f *faultRun) post(body []byte) (int, error) {
	m := hmac.New(sha256.New, []byte(faultSecret))
	m.Write(body)
	req, err := http.NewRequestWithContext(f.ctx, http.MethodPost, f.dev.url+"/webhooks/"+faultSource, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Signature", hex.EncodeToString(m.Sum(nil)))
	resp, err := f.http.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// resendSome re-sends n events already sent of the customers that fail, as
// a provider does: a FAILED or DEAD one is re-driven, a PARKED one is
// in flight, a PROCESSED one is a duplicate.
func (f *faultRun) resendSome(n int) {
	f.t.Helper()
	var custs []string
	for c := range faultCustomers {
		cust := faultCustomer(c)
		_, fix := f.plan.fixLater[cust]
		_, skip := f.plan.skip[cust]
		if f.plan.flaky[cust] || fix || skip {
			custs = append(custs, cust)
		}
	}
	codes := map[int]int{}
	for range n {
		cust, seq := custs[f.rng.IntN(len(custs))], f.rng.IntN(f.sent)
		status, err := f.post(faultBody(cust, seq))
		if err != nil || status != http.StatusAccepted && status != http.StatusConflict {
			f.t.Errorf("re-send of %s: %d %v", faultEvent(cust, seq), status, err)
		}
		codes[status]++
	}
	f.t.Logf("wave %d: re-sent %d events: %v", f.sent, n, codes)
}

// admin calls the admin API; it returns the status and the body.
func (f *faultRun) admin(method, path string) (int, []byte) {
	f.t.Helper()
	req, err := http.NewRequestWithContext(f.ctx, method, f.dev.url+"/admin"+path, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+faultToken)
	resp, err := f.http.Do(req)
	if err != nil {
		f.t.Fatalf("%s /admin%s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// replaySome replays n FAILED or DEAD events through the admin API. Each
// may have moved on by the time the replay arrives (409).
func (f *faultRun) replaySome(n int) {
	f.t.Helper()
	rows, err := f.pool.Query(f.ctx, `SELECT event_id FROM events WHERE status IN ('FAILED', 'DEAD') ORDER BY event_id`)
	if err != nil {
		f.t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		f.t.Fatal(err)
	}
	f.rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	codes := map[int]int{}
	for _, id := range ids[:min(n, len(ids))] {
		status, body := f.admin(http.MethodPost, "/events/"+faultSource+"/"+id+"/replay")
		if status != http.StatusAccepted && status != http.StatusConflict {
			f.t.Errorf("replay %s: %d %s", id, status, body)
		}
		codes[status]++
	}
	f.t.Logf("wave %d: replayed %d of %d FAILED/DEAD events: %v", f.sent, min(n, len(ids)), len(ids), codes)
}

// blocked lists the blocked customers through the admin API.
func (f *faultRun) blocked(state string) []consumer.Blocked {
	f.t.Helper()
	status, body := f.admin(http.MethodGet, "/customers/blocked?state="+state)
	if status != http.StatusOK {
		f.t.Fatalf("blocked customers: %d %s", status, body)
	}
	var bs []consumer.Blocked
	if err := json.Unmarshal(body, &bs); err != nil {
		f.t.Fatal(err)
	}
	return bs
}

// unpark resolves a parked customer as its operator would: the event the
// destination refuses for good is skipped (left DEAD), any other blocker
// replayed. The customer may have moved on meanwhile (404, 409).
func (f *faultRun) unpark(b consumer.Blocked) int {
	f.t.Helper()
	path := "/customers/" + b.CustomerID + "/unpark?source=" + b.Source
	if s, ok := f.plan.skip[b.CustomerID]; ok && b.BlockingEventID == faultEvent(b.CustomerID, s) {
		path += "&skip_blocker=true"
	}
	status, body := f.admin(http.MethodPost, path)
	if status != http.StatusAccepted && status != http.StatusNotFound && status != http.StatusConflict {
		f.t.Errorf("unpark %s: %d %s", b.CustomerID, status, body)
	}
	return status
}

func (f *faultRun) unparkSome(n int) {
	f.t.Helper()
	bs := f.blocked("PARKED")
	f.rng.Shuffle(len(bs), func(i, j int) { bs[i], bs[j] = bs[j], bs[i] })
	codes := map[int]int{}
	for _, b := range bs[:min(n, len(bs))] {
		codes[f.unpark(b)]++
	}
	f.t.Logf("wave %d: unparked %d of %d parked customers: %v", f.sent, min(n, len(bs)), len(bs), codes)
}

// cli runs a hookstream command against the test's services; it may fail
// when the events it names moved on meanwhile.
func (f *faultRun) cli(args ...string) {
	f.t.Helper()
	cmd := exec.CommandContext(f.ctx, binary, args...)
	cmd.Env = append(os.Environ(), f.env...)
	out, err := cmd.CombinedOutput()
	f.t.Logf("wave %d: hookstream %s: %d lines, %v", f.sent, strings.Join(args, " "), bytes.Count(out, []byte("\n")), err)
}

// settle resolves what is left the way an operator would, until every
// record of the events topic is consumed, every event has its final
// status and no customer is blocked.
func (f *faultRun) settle() {
	f.t.Helper()
	f.dest.set(func(d *faultDest) { d.outage, d.fixed = false, true })
	f.waitUntil("every event settled", func() (bool, string) {
		bs := f.blocked("")
		for _, b := range bs {
			if b.State == "PARKED" {
				f.unpark(b)
			}
		}
		var total, unsettled int
		if err := f.pool.QueryRow(f.ctx, `SELECT count(*), count(*) FILTER (WHERE status NOT IN ('PROCESSED', 'DEAD')) FROM events`).Scan(&total, &unsettled); err != nil {
			f.t.Fatal(err)
		}
		lag := f.lag()
		return len(bs) == 0 && unsettled == 0 && lag == 0 && total == faultCustomers*faultWaves,
			fmt.Sprintf("%d customers blocked, %d events stored, %d not PROCESSED or DEAD, %d records not consumed", len(bs), total, unsettled, lag)
	})
}

// lag is how many records of the events topic lie beyond the positions
// stored in PostgreSQL.
func (f *faultRun) lag() int64 {
	f.t.Helper()
	lag, err := storedLag(f.ctx, f.adm, f.pool)
	if err != nil {
		f.t.Fatal(err)
	}
	return lag
}

// verify asserts the final state and the destination's record.
func (f *faultRun) verify() {
	f.t.Helper()
	status := f.verifyStatuses()
	f.verifyProcessedOnceInOrder()
	calls := f.dest.snapshot()
	redrives, err := loadRedrives(f.ctx, f.pool, faultSource)
	if err != nil {
		f.t.Fatal(err)
	}
	causes := redeliveryCauses{spans: f.faults, redrives: redrives}
	f.t.Logf("faults that can cause re-delivery, with their margins:%s\n%s", causes.describeSpans(), describeRepeats(calls, causes))
	for _, v := range deliveryViolations(calls, f.dead, causes) {
		f.t.Error(v)
	}
	// The destination accepted exactly the events that are PROCESSED.
	accepted := map[string]bool{}
	for _, c := range calls {
		if c.status/100 == 2 {
			accepted[c.eventID] = true
		}
	}
	for id, st := range status {
		if accepted[id] != (st == "PROCESSED") {
			f.t.Errorf("%s is %s; the destination accepted it: %v", id, st, accepted[id])
		}
	}
	f.logDeliveries(calls)
}

// dead says whether the event is the one of its customer the destination
// refuses for good.
func (f *faultRun) dead(cust string, seq int) bool {
	s, ok := f.plan.skip[cust]
	return ok && s == seq
}

// verifyStatuses asserts that every accepted event is PROCESSED, except
// those the destination refuses for good, which the operator skipped and
// left DEAD; nothing is left FAILED, PARKED or PROCESSING, and no customer
// blocked. It returns the statuses.
func (f *faultRun) verifyStatuses() map[string]string {
	f.t.Helper()
	status := map[string]string{}
	rows, err := f.pool.Query(f.ctx, `SELECT event_id, status FROM events`)
	if err != nil {
		f.t.Fatal(err)
	}
	var id, st string
	if _, err := pgx.ForEachRow(rows, []any{&id, &st}, func() error { status[id] = st; return nil }); err != nil {
		f.t.Fatal(err)
	}
	if len(status) != faultCustomers*faultWaves {
		f.t.Errorf("%d events stored, want %d", len(status), faultCustomers*faultWaves)
	}
	for c := range faultCustomers {
		cust := faultCustomer(c)
		for seq := range faultWaves {
			want := "PROCESSED"
			if f.dead(cust, seq) {
				want = "DEAD"
			}
			if got := status[faultEvent(cust, seq)]; got != want {
				f.t.Errorf("%s is %q, want %s", faultEvent(cust, seq), got, want)
			}
		}
	}
	var blocks int
	if err := f.pool.QueryRow(f.ctx, `SELECT count(*) FROM customer_blocks`).Scan(&blocks); err != nil {
		f.t.Fatal(err)
	}
	if blocks != 0 {
		f.t.Errorf("%d rows left in customer_blocks", blocks)
	}
	return status
}

// verifyProcessedOnceInOrder asserts that audit_log has one PROCESSED
// record per PROCESSED event, each customer's in sequence order.
func (f *faultRun) verifyProcessedOnceInOrder() {
	f.t.Helper()
	n, err := checkProcessedInOrder(f.ctx, f.pool, f.dead, f.t.Errorf)
	if err != nil {
		f.t.Fatal(err)
	}
	if want := faultCustomers*faultWaves - len(f.plan.skip); n != want {
		f.t.Errorf("%d events have a PROCESSED audit record, want %d", n, want)
	}
}

// logDeliveries reports how the calls were spread: what the faults cost in
// repeated deliveries, and who made them.
func (f *faultRun) logDeliveries(calls []faultCall) {
	byStatus := map[int]int{}
	byMember := map[string]int{}
	repeatsBy := map[string]int{}
	acceptedOnce := map[string]bool{}
	repeats := 0
	for _, c := range calls {
		byStatus[c.status]++
		byMember[c.member]++
		if c.status/100 != 2 {
			continue
		}
		if acceptedOnce[c.eventID] {
			repeats++
			repeatsBy[c.member]++
		}
		acceptedOnce[c.eventID] = true
	}
	f.t.Logf("%d calls to the destination by status %v, by member %v; %d accepted again (by member %v)",
		len(calls), byStatus, byMember, repeats, repeatsBy)
}
