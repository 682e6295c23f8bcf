package audit_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/hookstream/hookstream/audit"
	"github.com/hookstream/hookstream/audit/audittest"
	"github.com/hookstream/hookstream/internal/testenv"
	"github.com/hookstream/hookstream/internal/wire"
)

// waitForLock waits until the backend pid is waiting for a lock.
func waitForLock(t *testing.T, pool *pgxpool.Pool, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var waiting bool
		if err := pool.QueryRow(context.Background(), `SELECT coalesce(wait_event_type = 'Lock', false) FROM pg_stat_activity WHERE pid = $1`, pid).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("backend %d is not waiting for a lock", pid)
		}
		time.Sleep(5 * time.Millisecond) // polling for the state
	}
}

func xidOf(t *testing.T, tx pgx.Tx) uint64 {
	t.Helper()
	var s string
	if err := tx.QueryRow(context.Background(), `SELECT pg_current_xact_id()::text`).Scan(&s); err != nil {
		t.Fatal(err)
	}
	x, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// TestRelayPublishesInCommitOrder: two transactions decide about the same
// event; the one that took its transaction id first waits for the
// other's lock on the event and commits last (a provider's re-send racing
// an admin replay). The topic's last record for the event is the later
// commit's, so compaction keeps the event's latest state.
func TestRelayPublishesInCommitOrder(t *testing.T) {
	t.Parallel()
	brokers, tp, pool := services(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `INSERT INTO events (source, event_id, customer_id, status) VALUES ('generic', 'e', 'c', 'DEAD')`); err != nil {
		t.Fatal(err)
	}
	early, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer early.Rollback(ctx) //nolint:errcheck // no-op once committed
	earlyXid := xidOf(t, early)
	var earlyPID int
	if err := early.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&earlyPID); err != nil {
		t.Fatal(err)
	}
	late, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer late.Rollback(ctx) //nolint:errcheck // no-op once committed
	if lateXid := xidOf(t, late); lateXid <= earlyXid {
		t.Fatalf("xids %d, %d: want the first transaction's lower", earlyXid, lateXid)
	}
	if _, err := late.Exec(ctx, `UPDATE events SET status = 'PROCESSING' WHERE source = 'generic' AND event_id = 'e'`); err != nil {
		t.Fatal(err)
	}
	replayed := record("e", wire.ActionReplayed)
	if err := (audit.Writer{}).Write(ctx, late, replayed); err != nil {
		t.Fatal(err)
	}
	processed := record("e", wire.ActionProcessed)
	done := make(chan error, 1)
	go func() {
		_, err := early.Exec(ctx, `UPDATE events SET status = 'PROCESSED' WHERE source = 'generic' AND event_id = 'e'`)
		if err == nil {
			err = (audit.Writer{}).Write(ctx, early, processed)
		}
		if err == nil {
			err = early.Commit(ctx)
		}
		done <- err
	}()
	waitForLock(t, pool, earlyPID)
	if err := late.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	audittest.Drain(t, newRelay(t, brokers, pool, audit.RelayConfig{Topic: tp.Audit}), pool)
	got := readAll(t, brokers, tp.Audit)
	if len(got) != 2 || got[1].AuditID != processed.AuditID {
		t.Fatalf("topic holds %v, want REPLAYED then PROCESSED (commit order; xid order is the reverse)", actionsOf(got))
	}
}

func actionsOf(recs []wire.AuditRecord) []string {
	var out []string
	for _, r := range recs {
		out = append(out, string(r.Action))
	}
	return out
}

// TestCommitClock: the clock counts a transaction that writes audit rows
// once, at its commit (not before: the trigger is deferred), as part of
// that transaction (a rollback after it fired takes the number back, so
// there is no gap), and does not count rows without an xid (the sink's
// copies) or a WriteIfAbsent that wrote nothing.
func TestCommitClock(t *testing.T) {
	t.Parallel()
	_, _, pool := services(t)
	ctx := context.Background()
	commits := func() (n int, last int64) {
		t.Helper()
		if err := pool.QueryRow(ctx, `SELECT count(*), coalesce(max(commit_seq), 0) FROM audit_commits`).Scan(&n, &last); err != nil {
			t.Fatal(err)
		}
		var clock int64
		if err := pool.QueryRow(ctx, `SELECT n FROM audit_clock`).Scan(&clock); err != nil {
			t.Fatal(err)
		}
		if clock != last || int64(n) != last {
			t.Fatalf("%d commits, last %d, clock %d: want all equal (no gaps)", n, last, clock)
		}
		return n, last
	}
	inTx := func(tx pgx.Tx) int {
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM audit_commits WHERE xid = pg_current_xact_id()`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	first := record("a", wire.ActionProcessed)
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := (audit.Writer{}).Write(ctx, tx, first, record("b", wire.ActionProcessed), record("c", wire.ActionProcessed)); err != nil {
		t.Fatal(err)
	}
	if n := inTx(tx); n != 0 {
		t.Fatalf("counted before COMMIT (%d)", n)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if n, last := commits(); n != 1 || last != 1 {
		t.Fatalf("after one commit of three rows: %d commits, last %d", n, last)
	}

	// Fired early, then rolled back: the number is taken back.
	tx, err = pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := (audit.Writer{}).Write(ctx, tx, record("d", wire.ActionProcessed)); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SET CONSTRAINTS ALL IMMEDIATE`); err != nil {
		t.Fatal(err)
	}
	if n := inTx(tx); n != 1 {
		t.Fatalf("SET CONSTRAINTS ALL IMMEDIATE fired the trigger %d times, want 1", n)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	commit(t, pool, record("e", wire.ActionProcessed))
	if n, last := commits(); n != 2 || last != 2 {
		t.Fatalf("after a rollback and a commit: %d commits, last %d, want 2 and 2", n, last)
	}

	// The sink's copies (no xid) and a write of nothing new do not count.
	if _, err := pool.Exec(ctx, `INSERT INTO audit_log (audit_id, action, actor, instance, at, xid) VALUES (gen_random_uuid(), 'ACCEPTED', 'ingest', 'x', now(), NULL)`); err != nil {
		t.Fatal(err)
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return (audit.Writer{}).WriteIfAbsent(ctx, tx, first) })
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := commits(); n != 2 {
		t.Fatalf("%d commits after a sink copy and an empty WriteIfAbsent, want still 2", n)
	}
}

// TestCommitSeqHasNoGapsInAnySnapshot: while transactions that write
// audit rows commit and roll back concurrently, every snapshot sees
// commit numbers 1..n and nothing else. The relay relies on it to read
// from its position without a horizon: were a number visible before a
// lower one (the lock on the clock released before the commit became
// visible, or numbers taken from a sequence), a reader would see a gap.
func TestCommitSeqHasNoGapsInAnySnapshot(t *testing.T) {
	t.Parallel()
	brokers := testenv.Kafka(t)
	tp := testenv.TopicsN(t, brokers, 1)
	pool, err := pgxpool.New(context.Background(), testenv.Postgres(t)+"&pool_max_conns=8")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	ctx := context.Background()
	const writers, txs = 4, 40
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		committed int
		rows      int
	)
	errs := make(chan error, writers+1)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range txs {
				recs := []*wire.AuditRecord{record(fmt.Sprintf("w%d-%d", w, i), wire.ActionProcessed)}
				if i%2 == 0 {
					recs = append(recs, record(fmt.Sprintf("w%d-%d", w, i), wire.ActionUnparked))
				}
				rollback := i%5 == 4
				err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
					if err := (audit.Writer{}).Write(ctx, tx, recs...); err != nil {
						return err
					}
					if rollback {
						if _, err := tx.Exec(ctx, `SET CONSTRAINTS ALL IMMEDIATE`); err != nil {
							return err
						}
						return errRollback
					}
					return nil
				})
				if err != nil && !errors.Is(err, errRollback) {
					errs <- err
					return
				}
				if !rollback {
					mu.Lock()
					committed, rows = committed+1, rows+len(recs)
					mu.Unlock()
				}
			}
		}()
	}
	stop := make(chan struct{})
	readerDone := make(chan struct{})
	snapshots := 0
	go func() {
		defer close(readerDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			var n, last, clock int64
			if err := pool.QueryRow(ctx, `SELECT count(*), coalesce(max(commit_seq), 0), (SELECT n FROM audit_clock) FROM audit_commits`).Scan(&n, &last, &clock); err != nil {
				errs <- err
				return
			}
			if n != last || clock != last {
				errs <- fmt.Errorf("a snapshot saw %d commits up to %d, clock at %d: a gap", n, last, clock)
				return
			}
			snapshots++
		}
	}()
	wg.Wait()
	close(stop)
	<-readerDone
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM audit_commits`).Scan(&n); err != nil || n != committed {
		t.Fatalf("%d commits recorded (%v), want the %d committed transactions", n, err, committed)
	}
	t.Logf("%d snapshots checked", snapshots)
	if got := audittest.Drain(t, newRelay(t, brokers, pool, audit.RelayConfig{Topic: tp.Audit, Batch: 50}), pool); got != rows {
		t.Fatalf("relay published %d rows, want the %d committed", got, rows)
	}
	if got := readAll(t, brokers, tp.Audit); len(got) != rows {
		t.Fatalf("topic holds %d records, want %d", len(got), rows)
	}
}

var errRollback = errors.New("roll back")

// fencingSetup commits five rows, one transaction each, and returns their
// audit ids in order, a relay, and two connections for two of its turns.
func fencingSetup(t *testing.T) (brokers []string, tp wire.Topics, relay *audit.Relay, want []string, a, b *pgx.Conn) {
	t.Helper()
	brokers, tp, pool := services(t)
	for i := range 5 {
		r := record(fmt.Sprintf("e%d", i), wire.ActionProcessed)
		commit(t, pool, r)
		want = append(want, r.AuditID)
	}
	relay = newRelay(t, brokers, pool, audit.RelayConfig{Topic: tp.Audit})
	conn := func() *pgx.Conn {
		c, err := pool.Acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Release)
		return c.Conn()
	}
	return brokers, tp, relay, want, conn(), conn()
}

// publishAll publishes every row left in one turn.
func publishAll(t *testing.T, term *audit.Term) {
	t.Helper()
	ctx := context.Background()
	b, err := term.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := term.Produce(ctx, b); err != nil {
		t.Fatal(err)
	}
	if err := term.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := term.Store(ctx, b); err != nil {
		t.Fatal(err)
	}
}

// TestRelayFencedInKafka: a relay that took over (its connection, and its
// advisory lock, gone while a batch was on its way) cannot commit that
// batch once another relay has started: the new relay's producer fences
// it, and readers of the topic (read_committed) never see its records,
// which would otherwise land after the new relay's.
func TestRelayFencedInKafka(t *testing.T) {
	t.Parallel()
	brokers, tp, relay, want, connA, connB := fencingSetup(t)
	ctx := context.Background()
	a, err := relay.Begin(ctx, connA)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ba, err := a.Read(ctx)
	if err != nil || ba.Len() != 5 {
		t.Fatalf("first relay read %d rows (%v), want 5", ba.Len(), err)
	}
	if err := a.Produce(ctx, ba); err != nil {
		t.Fatal(err)
	}
	b, err := relay.Begin(ctx, connB)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := a.Commit(ctx); err == nil {
		t.Fatal("the first relay committed its transaction after a second relay started")
	}
	if err := a.Store(ctx, ba); !errors.Is(err, audit.ErrFenced) {
		t.Fatalf("the first relay moved the position: %v", err)
	}
	publishAll(t, b)
	topicHolds(t, brokers, tp.Audit, want)
	if n := countUncommitted(t, brokers, tp.Audit, 10); n != 10 {
		t.Fatalf("read_uncommitted sees %d records, want the 5 aborted and the 5 committed", n)
	}
}

// countUncommitted reads topic read_uncommitted until it has seen want
// data records or 10 seconds have passed, and returns how many it saw.
func countUncommitted(t *testing.T, brokers []string, topic string, want int) int {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n := 0
	for n < want && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(*kgo.Record) { n++ })
	}
	return n
}

// TestRelayFencedInPostgres: a relay whose transaction committed just
// before another relay started cannot move the position afterwards; the
// new relay publishes those rows again, after them, so the topic holds
// each event's records in order, with repeats but never an older state
// after a newer one.
func TestRelayFencedInPostgres(t *testing.T) {
	t.Parallel()
	brokers, tp, relay, want, connA, connB := fencingSetup(t)
	ctx := context.Background()
	a, err := relay.Begin(ctx, connA)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ba, err := a.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Produce(ctx, ba); err != nil {
		t.Fatal(err)
	}
	if err := a.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := relay.Begin(ctx, connB)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := a.Store(ctx, ba); !errors.Is(err, audit.ErrFenced) {
		t.Fatalf("the first relay moved the position after a second relay started: %v", err)
	}
	publishAll(t, b)
	topicHolds(t, brokers, tp.Audit, append(append([]string(nil), want...), want...))
}
