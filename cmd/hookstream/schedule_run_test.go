package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/hookstream/hookstream/consumer"
	"github.com/hookstream/hookstream/internal/devstack"
	"github.com/hookstream/hookstream/internal/kafka"
	"github.com/hookstream/hookstream/internal/testenv"
	"github.com/hookstream/hookstream/internal/wire"
)

const (
	scheduleSource     = "shop"
	scheduleSecret     = "schedule-secret-0123456789"
	scheduleToken      = "schedule-admin-token"
	schedulePartitions = 6
)

// scheduleRun is the running system and the test's handles on it.
type scheduleRun struct {
	t       *testing.T
	cfg     scheduleConfig
	ctx     context.Context
	start   time.Time // the load's start; steps are timed from it
	cluster *testenv.Cluster
	pg      *testenv.PGServer
	pool    *pgxpool.Pool
	adm     *kadm.Client
	dir     string
	env     []string // broker, database and admin token, for every process
	dest    *scheduleDest
	destURL string
	http    *http.Client

	recvAddr   string
	receiver   *scheduleProc
	recvGen    int
	members    map[string]*scheduleProc // the running incarnation of each member
	gen        map[string]int
	downBroker int // the node the nodes' lane killed last
	recvKills  []time.Time

	mu         sync.Mutex
	injected   map[string]int
	faults     []faultSpan          // the faults that can cause re-delivery, as they happened (redelivery_test.go)
	open       map[string]time.Time // such faults begun and not yet ended, by kind and target
	violations atomic.Int64
}

func newScheduleRun(t *testing.T, cfg scheduleConfig) *scheduleRun {
	t.Helper()
	r := &scheduleRun{t: t, cfg: cfg, dir: t.TempDir(), members: map[string]*scheduleProc{}, gen: map[string]int{},
		injected: map[string]int{}, open: map[string]time.Time{}, http: &http.Client{Timeout: 30 * time.Second}}
	r.cluster = testenv.KafkaCluster(t, 3)
	r.pg = testenv.NewPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.duration+20*time.Minute)
	t.Cleanup(cancel)
	r.ctx = ctx
	testTopics(ctx, t, r.cluster.Brokers(), schedulePartitions)

	r.dest = &scheduleDest{seed: cfg.seed, outage: map[string]bool{}}
	srv := httptest.NewServer(r.dest)
	t.Cleanup(srv.Close) // after the processes: cleanups run last first
	r.destURL = srv.URL
	r.env = []string{"HOOKSTREAM_KAFKA_BROKERS=" + strings.Join(r.cluster.Brokers(), ","),
		"HOOKSTREAM_DATABASE_URL=" + r.pg.URL(), "HOOKSTREAM_ADMIN_TOKEN=" + scheduleToken}

	var err error
	if r.pool, err = pgxpool.New(ctx, r.pg.URL()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.pool.Close)
	adm, cl, err := kafka.NewAdmin(kafka.Config{Brokers: r.cluster.Brokers()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	r.adm = adm

	port, err := devstack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	r.recvAddr = fmt.Sprintf("127.0.0.1:%d", port)
	r.startReceiver()
	for _, m := range []string{"a", "b", "c"} {
		r.startMember(m)
	}
	r.waitGroup(3)
	r.start = time.Now()
	return r
}

// violation reports what the system did wrong; the test goes on, so that
// one run shows every violation it meets.
func (r *scheduleRun) violation(format string, args ...any) {
	r.violations.Add(1)
	r.t.Errorf("VIOLATION: "+format, args...)
}

// scheduleProc is a hookstream process of the run. Exiting when the test
// did not end it is a violation.
type scheduleProc struct {
	name  string
	addr  string // its HTTP listener (health, metrics)
	cmd   *exec.Cmd
	done  chan struct{}
	ended atomic.Bool
}

func (r *scheduleRun) spawn(name string, env []string, args ...string) *scheduleProc {
	r.t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(append(os.Environ(), r.env...), env...)
	// What the faults make every process say over and over; the summary
	// counts the answers and the verifier checks what came of them.
	cmd.Stderr = &testLog{t: r.t, prefix: name, drop: []string{"retry scheduled", "dead-lettered", "produce failed", "request not accepted"}}
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	p := &scheduleProc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		if !p.ended.Load() && r.ctx.Err() == nil {
			r.violation("%s exited on its own: %v", name, err)
		}
		close(p.done)
	}()
	r.t.Cleanup(func() {
		p.ended.Store(true)
		_ = cmd.Process.Kill()
		<-p.done
	})
	return p
}

// kill ends the process with SIGKILL and waits until it is gone.
func (p *scheduleProc) kill() {
	p.ended.Store(true)
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// terminate asks the process to stop (SIGTERM) and waits for it; it
// returns its exit code.
func (p *scheduleProc) terminate() int {
	p.ended.Store(true)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.done
	return p.cmd.ProcessState.ExitCode()
}

func (p *scheduleProc) signal(sig syscall.Signal) {
	_ = p.cmd.Process.Signal(sig)
}

// writeSources writes a sources file delivering to /hooks/<name>, so that
// every call says which process made it.
func (r *scheduleRun) writeSources(name string) string {
	r.t.Helper()
	return processSources(r.t, r.dir, name, scheduleSource, scheduleSecret, r.destURL,
		"{max_attempts: 4, initial_backoff: 200ms, max_backoff: 1s}")
}

// startReceiver starts the next incarnation of `hookstream serve` on the
// run's address and waits until it is ready.
func (r *scheduleRun) startReceiver() {
	r.t.Helper()
	r.recvGen++
	name := fmt.Sprintf("r%d", r.recvGen)
	r.receiver = r.spawn(name, []string{"HOOKSTREAM_SOURCES=" + r.writeSources(name)},
		"serve", "--http-addr", r.recvAddr, "--instance", name, "--shutdown-grace", "20s", "--log-level", "warn")
	r.waitUntil(name+" ready", 2*time.Minute, func() (bool, string) {
		resp, err := r.http.Get("http://" + r.recvAddr + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
}

// startMember starts the next incarnation of member name (a1, a2, …).
func (r *scheduleRun) startMember(name string) {
	r.t.Helper()
	r.gen[name]++
	inc := fmt.Sprintf("%s%d", name, r.gen[name])
	port, err := devstack.FreePort()
	if err != nil {
		r.t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	r.members[name] = r.spawn(inc, []string{"HOOKSTREAM_SOURCES=" + r.writeSources(inc)},
		"consume", "--instance", inc, "--concurrency", "8", "--log-level", "warn", "--session-timeout", "6s", "--http-addr", addr)
	r.members[name].addr = addr
}

// waitServing waits until the process answers on its HTTP listener: it is
// past its start, and a SIGTERM is a shutdown, not the default death of a
// process that has not yet set up its signal handling.
func (r *scheduleRun) waitServing(p *scheduleProc) {
	r.t.Helper()
	r.waitUntil(p.name+" serving", time.Minute, func() (bool, string) {
		resp, err := r.http.Get("http://" + p.addr + "/healthz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return true, ""
	})
}

// waitUntil polls cond until it holds, failing the test with cond's last
// description after d.
func (r *scheduleRun) waitUntil(what string, d time.Duration, cond func() (bool, string)) {
	r.t.Helper()
	waitFor(r.t, r.ctx, what, d, cond)
}

// waitGroup waits until the consumer group is stable with n members that
// share every partition.
func (r *scheduleRun) waitGroup(n int) {
	r.t.Helper()
	r.waitUntil(fmt.Sprintf("the group stable with %d members", n), 3*time.Minute, func() (bool, string) {
		return groupStable(r.ctx, r.adm, n, schedulePartitions)
	})
}

// runSteps carries out the schedule, each step at its time or, when the
// step before took longer, as soon as that is done. The nodes' faults
// have a lane of their own: a node takes many seconds to serve again, and
// the other faults do not wait for it.
func (r *scheduleRun) runSteps(steps []step) {
	r.t.Helper()
	var nodes, others []step
	for _, s := range steps {
		if s.kind == faultBrokerKill || s.kind == faultLeaderKill {
			nodes = append(nodes, s)
		} else {
			others = append(others, s)
		}
	}
	lane := make(chan error, 1)
	go func() { lane <- r.runLane(nodes, r.doNode) }()
	err := r.runLane(others, func(s step) (string, error) { return r.do(s), nil })
	if lerr := <-lane; err == nil {
		err = lerr
	}
	if err != nil {
		r.t.Fatal(err)
	}
}

// runLane carries out steps in order with do, each at its time or late.
func (r *scheduleRun) runLane(steps []step, do func(step) (string, error)) error {
	for _, s := range steps {
		select {
		case <-time.After(time.Until(r.start.Add(s.at))):
		case <-r.ctx.Done():
			return fmt.Errorf("the schedule did not finish: %w", r.ctx.Err())
		}
		began := time.Since(r.start)
		detail, err := do(s)
		if err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
		r.mu.Lock()
		if !s.end {
			r.injected[s.kind]++
		}
		r.noteFault(s, r.start.Add(began), time.Now())
		r.mu.Unlock()
		r.t.Logf("+%6.1fs (planned +%.1fs, took %.1fs) %s%s", began.Seconds(), s.at.Seconds(),
			(time.Since(r.start) - began).Seconds(), s, detail)
	}
	return nil
}

// doNode carries out a node's fault step, on the nodes' lane.
func (r *scheduleRun) doNode(s step) (string, error) {
	if s.end {
		if err := r.cluster.StartNode(r.ctx, r.downBroker); err != nil {
			return "", err
		}
		return fmt.Sprintf(": node %d serves again", r.downBroker), nil
	}
	r.downBroker = r.nodeToKill(s)
	if err := r.cluster.KillNode(r.ctx, r.downBroker); err != nil {
		return "", err
	}
	return fmt.Sprintf(": killed node %d", r.downBroker), nil
}

// do carries out one step and says what it found.
func (r *scheduleRun) do(s step) string {
	r.t.Helper()
	switch s.kind {
	case faultMemberKill:
		if s.end {
			r.startMember(s.target)
			return ": started " + r.members[s.target].name
		}
		r.members[s.target].kill()
		return ": killed " + r.members[s.target].name
	case faultMemberStop:
		sig := syscall.SIGSTOP
		if s.end {
			sig = syscall.SIGCONT
		}
		r.members[s.target].signal(sig)
		return ": " + sig.String() + " to " + r.members[s.target].name
	case faultReceiverKill:
		if s.end {
			r.startReceiver()
			return ": started r" + strconv.Itoa(r.recvGen)
		}
		r.receiver.kill()
		r.recvKills = append(r.recvKills, time.Now())
		return ": killed " + r.receiver.name
	case faultPostgres:
		r.pg.Crash()
		r.pg.Start()
		return ": crashed and started again"
	case faultOutage:
		r.dest.setOutage(s.victims)
		return ""
	case faultMemberAdd:
		if s.end {
			p := r.members["d"]
			delete(r.members, "d")
			r.waitServing(p)
			if code := p.terminate(); code != 0 {
				r.violation("%s exited %d on SIGTERM", p.name, code)
			}
			return ": " + p.name + " stopped"
		}
		r.startMember("d")
		return ": started " + r.members["d"].name
	case faultReplay:
		if s.n == 0 {
			return ": " + r.cli("replay", "--status", "DEAD", "--reason", "schedule")
		}
		return ": " + r.replaySome(s.n)
	case faultUnpark:
		return ": " + r.unparkSome(s.n)
	}
	r.t.Fatalf("unknown step %v", s)
	return ""
}

// noteFault records when a fault that can cause re-delivery was in
// effect: a member killed or stopped, or a node down, from the step that
// began it to the one that ended it; PostgreSQL's restart for the step;
// the fourth member's join and its leave each for its own step (a
// rebalance each; the member's stay between them moves nothing). Each
// span ends redeliveryMargin after its step was done. Called with r.mu
// held.
func (r *scheduleRun) noteFault(s step, began, done time.Time) {
	if !redeliveryFault(s.kind) {
		return
	}
	key := s.kind + " " + s.target
	switch {
	case s.kind == faultMemberAdd:
		what := "member-add (d joins)"
		if s.end {
			what = "member-add ends (d leaves)"
		}
		r.faults = append(r.faults, faultSpan{what: what, from: began, to: done.Add(redeliveryMargin)})
	case s.kind == faultPostgres:
		r.faults = append(r.faults, faultSpan{what: key, from: began, to: done.Add(redeliveryMargin)})
	case !s.end:
		r.open[key] = began
	default:
		r.faults = append(r.faults, faultSpan{what: key, from: r.open[key], to: done.Add(redeliveryMargin)})
		delete(r.open, key)
	}
}

// redeliveryCauses is what may explain a repeated delivery in this run:
// the faults' spans (one still open lasts until now and its margin) and
// the replays and re-drives in audit_log.
func (r *scheduleRun) redeliveryCauses() redeliveryCauses {
	r.t.Helper()
	redrives, err := loadRedrives(r.ctx, r.pool, scheduleSource)
	if err != nil {
		r.t.Fatal(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	rc := redeliveryCauses{spans: append([]faultSpan(nil), r.faults...), redrives: redrives, origin: r.start}
	for key, from := range r.open {
		rc.spans = append(rc.spans, faultSpan{what: key + " (not ended)", from: from, to: time.Now().Add(redeliveryMargin)})
	}
	return rc
}

// receiverKilledWithin says whether a receiver was killed within d after
// t.
func (r *scheduleRun) receiverKilledWithin(t time.Time, d time.Duration) bool {
	for _, k := range r.recvKills {
		if !k.Before(t) && k.Sub(t) <= d {
			return true
		}
	}
	return false
}

// nodeToKill is the step's node, or for faultLeaderKill the node that
// leads most partitions of the events topic now.
func (r *scheduleRun) nodeToKill(s step) int {
	if s.kind == faultBrokerKill {
		id, _ := strconv.Atoi(s.target)
		return id
	}
	md, err := r.adm.Metadata(r.ctx, wire.DefaultEventsTopic)
	if err != nil {
		r.t.Logf("metadata for the leader: %v; killing node 1", err)
		return 1
	}
	leads := map[int32]int{}
	for _, p := range md.Topics[wire.DefaultEventsTopic].Partitions {
		leads[p.Leader]++
	}
	best, most := int32(1), 0
	for id, n := range leads {
		if n > most || n == most && id < best {
			best, most = id, n
		}
	}
	return int(best)
}

// admin calls the admin API; status 0 when the receiver did not answer
// (it may be down: operators meet that too).
func (r *scheduleRun) admin(method, path string) (int, []byte) {
	req, err := http.NewRequestWithContext(r.ctx, method, "http://"+r.recvAddr+"/admin"+path, nil)
	if err != nil {
		r.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+scheduleToken)
	resp, err := r.http.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// replaySome replays up to n FAILED or DEAD events through the admin API.
// Each may have moved on by the time the replay arrives (409).
func (r *scheduleRun) replaySome(n int) string {
	rows, err := r.pool.Query(r.ctx, `SELECT event_id FROM events WHERE status IN ('FAILED', 'DEAD') ORDER BY random() LIMIT $1`, n)
	if err != nil {
		return "query: " + err.Error()
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return "query: " + err.Error()
	}
	codes := map[int]int{}
	for _, id := range ids {
		status, body := r.admin(http.MethodPost, "/events/"+scheduleSource+"/"+id+"/replay")
		if !operatorStatus(status) {
			r.violation("replay %s: %d %s", id, status, body)
		}
		codes[status]++
	}
	return fmt.Sprintf("replayed %d: %v", len(ids), codes)
}

// unparkSome unparks up to n parked customers as their operator would:
// the event the destination refuses for good is skipped (left DEAD), any
// other blocker replayed.
func (r *scheduleRun) unparkSome(n int) string {
	bs, err := r.blocked("PARKED")
	if err != nil {
		return err.Error()
	}
	codes := map[int]int{}
	for _, b := range bs[:min(n, len(bs))] {
		codes[r.unpark(b)]++
	}
	return fmt.Sprintf("unparked %d of %d: %v", min(n, len(bs)), len(bs), codes)
}

func (r *scheduleRun) blocked(state string) ([]consumer.Blocked, error) {
	status, body := r.admin(http.MethodGet, "/customers/blocked?state="+state)
	if status != http.StatusOK {
		return nil, fmt.Errorf("blocked customers: %d %s", status, body)
	}
	var bs []consumer.Blocked
	if err := json.Unmarshal(body, &bs); err != nil {
		return nil, fmt.Errorf("blocked customers: %w", err)
	}
	return bs, nil
}

func (r *scheduleRun) unpark(b consumer.Blocked) int {
	path := "/customers/" + b.CustomerID + "/unpark?source=" + b.Source
	if cust, seq, ok := parseScheduleEvent(b.BlockingEventID); ok && scheduleRefused(r.cfg.seed, cust, seq) {
		path += "&skip_blocker=true"
	}
	status, body := r.admin(http.MethodPost, path)
	if !operatorStatus(status) {
		r.violation("unpark %s: %d %s", b.CustomerID, status, body)
	}
	return status
}

// operatorStatus says whether an admin API answer to a replay or an
// unpark is one the contract allows during faults: done (202), moved on
// meanwhile (404, 409), PostgreSQL unavailable (503, to retry), or no
// answer from a receiver that is down (0).
func operatorStatus(status int) bool {
	switch status {
	case 0, http.StatusAccepted, http.StatusNotFound, http.StatusConflict, http.StatusServiceUnavailable:
		return true
	}
	return false
}

// cli runs a hookstream command against the run's services and says how
// it ended; it may fail when the events it names moved on meanwhile.
func (r *scheduleRun) cli(args ...string) string {
	cmd := exec.CommandContext(r.ctx, binary, args...)
	cmd.Env = append(os.Environ(), r.env...)
	out, err := cmd.CombinedOutput()
	return fmt.Sprintf("hookstream %s: %d lines, %v", strings.Join(args, " "), strings.Count(string(out), "\n"), err)
}

func (r *scheduleRun) injectedSummary() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	kinds := make([]string, 0, len(r.injected))
	for k, n := range r.injected {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
	}
	slices.Sort(kinds)
	return strings.Join(kinds, ", ")
}

// scheduleDest is the HTTP destination: it refuses a few events for good
// (422), answers 503 to the customers of an outage while it lasts, and
// accepts the rest; it records every call.
type scheduleDest struct {
	seed   uint64
	mu     sync.Mutex
	calls  []faultCall
	outage map[string]bool
}

func (d *scheduleDest) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	var body struct {
		EventID  string `json:"event_id"`
		Customer string `json:"customer_id"`
		Seq      int    `json:"seq"`
	}
	if err := json.NewDecoder(req.Body).Decode(&body); err != nil {
		body.EventID = "undecodable: " + err.Error()
	}
	c := faultCall{member: strings.TrimPrefix(req.URL.Path, "/hooks/"), customer: body.Customer, seq: body.Seq,
		eventID: body.EventID, key: req.Header.Get("Idempotency-Key"), status: http.StatusNoContent}
	d.mu.Lock()
	c.at = time.Now() // under the lock: the calls are in the order of their times
	switch {
	case scheduleRefused(d.seed, c.customer, c.seq):
		c.status = http.StatusUnprocessableEntity
	case d.outage[c.customer]:
		c.status = http.StatusServiceUnavailable
	}
	d.calls = append(d.calls, c)
	d.mu.Unlock()
	w.WriteHeader(c.status)
}

func (d *scheduleDest) setOutage(custs []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.outage = map[string]bool{}
	for _, c := range custs {
		d.outage[c] = true
	}
}

func (d *scheduleDest) snapshot() []faultCall {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.calls)
}

// parseScheduleEvent splits an event id cus007-12 into its customer and
// sequence number.
func parseScheduleEvent(id string) (string, int, bool) {
	i := strings.LastIndexByte(id, '-')
	if i < 0 {
		return "", 0, false
	}
	seq, err := strconv.Atoi(id[i+1:])
	return id[:i], seq, err == nil
}
