package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/hookstream/hookstream/internal/wire"
)

// Helpers shared by the tests that run hookstream's processes through
// faults (faults_test.go, schedule_*_test.go).

// waitFor polls cond until it holds, failing t with cond's last
// description after d or once ctx ends.
func waitFor(t *testing.T, ctx context.Context, what string, d time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("waiting for %s: %s", what, state)
		}
		time.Sleep(100 * time.Millisecond) // polling for a state, not timing one
	}
}

// groupStable says whether the hookstream group is stable with n members
// that share all partitions of the events topic, and describes it.
func groupStable(ctx context.Context, adm *kadm.Client, n, partitions int) (bool, string) {
	gs, err := adm.DescribeGroups(ctx, "hookstream")
	if err != nil {
		return false, err.Error()
	}
	g := gs["hookstream"]
	parts := len(g.AssignedPartitions()[wire.DefaultEventsTopic])
	return g.State == "Stable" && len(g.Members) == n && parts == partitions,
		fmt.Sprintf("state %s, %d members, %d partitions assigned", g.State, len(g.Members), parts)
}

// storedLag is how many records of the events topic lie beyond the
// group's positions stored in PostgreSQL.
func storedLag(ctx context.Context, adm *kadm.Client, pool *pgxpool.Pool) (int64, error) {
	ends, err := adm.ListEndOffsets(ctx, wire.DefaultEventsTopic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return 0, err
	}
	rows, err := pool.Query(ctx, `SELECT partition, next_offset FROM consumer_offsets WHERE group_id = 'hookstream' AND topic = $1`, wire.DefaultEventsTopic)
	if err != nil {
		return 0, err
	}
	stored := map[int32]int64{}
	var p int32
	var next int64
	if _, err := pgx.ForEachRow(rows, []any{&p, &next}, func() error { stored[p] = next; return nil }); err != nil {
		return 0, err
	}
	var lag int64
	ends.Each(func(o kadm.ListedOffset) { lag += max(0, o.Offset-stored[o.Partition]) })
	return lag, nil
}

// checkProcessedInOrder reads the PROCESSED records of audit_log and
// reports each event processed more than once, and each customer's first
// PROCESSED record of an event out of sequence order; never(customer, seq)
// says which events are never processed (refused for good and skipped).
// Event ids are faultEvent(customer, seq). It returns how many events
// have a PROCESSED record.
func checkProcessedInOrder(ctx context.Context, pool *pgxpool.Pool, never func(string, int) bool, report func(format string, args ...any)) (int, error) {
	rows, err := pool.Query(ctx, `SELECT customer_id, event_id FROM audit_log WHERE action = 'PROCESSED' ORDER BY seq`)
	if err != nil {
		return 0, err
	}
	processed := map[string]int{}
	next := map[string]int{}
	var cust, id string
	if _, err := pgx.ForEachRow(rows, []any{&cust, &id}, func() error {
		processed[id]++
		for never(cust, next[cust]) {
			next[cust]++
		}
		if want := faultEvent(cust, next[cust]); id != want && processed[id] == 1 {
			report("customer %s: PROCESSED %s, want %s next", cust, id, want)
		}
		next[cust]++
		return nil
	}); err != nil {
		return 0, err
	}
	for id, n := range processed {
		if n != 1 {
			report("%s has %d PROCESSED audit records", id, n)
		}
	}
	return len(processed), nil
}

// processSources writes, in dir, the sources file of one process of a
// system test: one hmac-sha256 source signed with secret, delivering to
// destURL+"/hooks/"+name, so that every call says which process made it,
// with the retry policy retry (YAML).
func processSources(t *testing.T, dir, name, source, secret, destURL, retry string) string {
	t.Helper()
	file := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(file, fmt.Appendf(nil, `sources:
  - name: %s
    scheme: hmac-sha256
    secrets: [%q]
    signature_header: X-Signature
    signature_encoding: hex
    event_id: {pointer: /event_id}
    customer_id: {pointer: /customer_id}
    event_type: {pointer: /type}
    destination: {url: %q, timeout: 5s}
    retry: %s
`, source, secret, destURL+"/hooks/"+name, retry), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}
