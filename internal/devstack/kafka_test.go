package devstack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Records the broker acknowledged with acks=all are there after Close and
// a StartKafka on the same directory, in the same partitions and order,
// and producing continues after them.
func TestKafkaKeepsAcknowledgedRecordsAcrossRestart(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	k, err := StartKafka(ctx, KafkaConfig{DataDir: dir, ListenAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()

	const topic, n = "events", 100
	adm, admCl := newAdmin(t, k.Addrs())
	if resp, err := adm.CreateTopic(ctx, 3, 1, nil, topic); err != nil || resp.Err != nil {
		t.Fatal(err, resp.Err)
	}
	admCl.Close()
	prod, err := kgo.NewClient(kgo.SeedBrokers(k.Addrs()...), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	for i := range n {
		recs = append(recs, &kgo.Record{Key: fmt.Appendf(nil, "cus_%d", i%7), Value: fmt.Appendf(nil, "event %d", i)})
	}
	if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	prod.Close()
	k.Close()

	k, err = StartKafka(ctx, KafkaConfig{DataDir: dir, ListenAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	defer k.Close()
	got := consumeAll(ctx, t, k.Addrs(), topic, n)
	for _, want := range recs {
		g, ok := got[string(want.Value)]
		if !ok {
			t.Fatalf("%s lost across the restart", want.Value)
		}
		if g.Partition != want.Partition || g.Offset != want.Offset || string(g.Key) != string(want.Key) {
			t.Errorf("%s: was partition %d offset %d key %s, now %d %d %s", want.Value, want.Partition, want.Offset, want.Key, g.Partition, g.Offset, g.Key)
		}
	}

	prod, err = kgo.NewClient(kgo.SeedBrokers(k.Addrs()...), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	last := recs[len(recs)-1]
	more := &kgo.Record{Key: last.Key, Value: []byte("after the restart")}
	if err := prod.ProduceSync(ctx, more).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if more.Partition != last.Partition || more.Offset <= last.Offset {
		t.Errorf("produced after the restart at partition %d offset %d, want after offset %d of partition %d", more.Partition, more.Offset, last.Offset, last.Partition)
	}
}

// The broker has no authentication, so it serves loopback only; the
// address asked for is the one it binds and advertises.
func TestKafkaListenAddr(t *testing.T) {
	t.Parallel()
	for _, addr := range []string{"0.0.0.0:9092", ":9092", "192.0.2.1:0", "example.com:0", "127.0.0.1", "127.0.0.1:x", "127.0.0.1:70000"} {
		if k, err := StartKafka(context.Background(), KafkaConfig{ListenAddr: addr}); err == nil {
			k.Close()
			t.Errorf("%q accepted", addr)
		}
	}
	_, err := StartKafka(context.Background(), KafkaConfig{ListenAddr: "0.0.0.0:9092"})
	if err == nil || !strings.Contains(err.Error(), "loopback") || !strings.Contains(err.Error(), "HOOKSTREAM_KAFKA_BROKERS") {
		t.Errorf("error does not say what to do: %v", err)
	}
	for addr, wantHost := range map[string]string{"localhost:0": "127.0.0.1", "127.0.0.2:0": "127.0.0.2"} {
		k, err := StartKafka(context.Background(), KafkaConfig{ListenAddr: addr})
		if err != nil {
			t.Errorf("%s: %v", addr, err)
			continue
		}
		host, _, _ := net.SplitHostPort(k.Addrs()[0])
		k.Close()
		if host != wantHost {
			t.Errorf("%s: listening on %s, want %s", addr, k.Addrs()[0], wantHost)
		}
	}
}

func TestKafkaPortInUse(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	_, err = StartKafka(context.Background(), KafkaConfig{ListenAddr: ln.Addr().String()})
	if err == nil || !strings.Contains(err.Error(), "already in use") {
		t.Fatalf("got %v, want an error saying the address is in use", err)
	}
}

// Two brokers on one directory would overwrite each other's files.
func TestKafkaDataDirIsExclusive(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	k, err := StartKafka(context.Background(), KafkaConfig{DataDir: dir, ListenAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = StartKafka(context.Background(), KafkaConfig{DataDir: dir, ListenAddr: "127.0.0.1:0"})
	if !errors.Is(err, ErrDataDirInUse) {
		t.Errorf("second broker on the same directory: %v, want ErrDataDirInUse", err)
	}
	k.Close()
	k.Close() // idempotent
	k, err = StartKafka(context.Background(), KafkaConfig{DataDir: dir, ListenAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatalf("after Close: %v", err)
	}
	k.Close()
}

// Partitions is what CreateTopics asking for the broker's default gets.
func TestKafkaDefaultPartitions(t *testing.T) {
	t.Parallel()
	k, err := StartKafka(context.Background(), KafkaConfig{ListenAddr: "127.0.0.1:0", Partitions: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	adm, cl := newAdmin(t, k.Addrs())
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := adm.CreateTopic(ctx, -1, -1, nil, "t")
	if err != nil || resp.Err != nil {
		t.Fatal(err, resp.Err)
	}
	if resp.NumPartitions != 4 {
		t.Errorf("got %d partitions, want 4", resp.NumPartitions)
	}
}

func newAdmin(t *testing.T, brokers []string) (*kadm.Client, *kgo.Client) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	return kadm.NewClient(cl), cl
}

// consumeAll reads topic from the start until it has n records, keyed by value.
func consumeAll(ctx context.Context, t *testing.T, brokers []string, topic string, n int) map[string]*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	got := map[string]*kgo.Record{}
	for len(got) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records: %v", len(got), n, ctx.Err())
		}
		fs.EachError(func(topic string, p int32, err error) { t.Logf("fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) { got[string(r.Value)] = r })
	}
	return got
}

// `hookstream dev` killed with SIGKILL: kfake writes no final snapshot, and
// what it acknowledged is still there after a restart (replayed from its
// segment files, which the OS had, fsync or not).
func TestKafkaKeepsAcknowledgedRecordsAcrossKill(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	helper, addr := startHelper(t, "kafka", dir)
	const topic, n = "events", 50
	adm, admCl := newAdmin(t, []string{addr})
	if resp, err := adm.CreateTopic(ctx, 3, 1, nil, topic); err != nil || resp.Err != nil {
		t.Fatal(err, resp.Err)
	}
	admCl.Close()
	prod, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	for i := range n {
		recs = append(recs, &kgo.Record{Key: fmt.Appendf(nil, "cus_%d", i%7), Value: fmt.Appendf(nil, "event %d", i)})
	}
	if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	prod.Close()
	killHelper(t, helper)

	k, err := StartKafka(ctx, KafkaConfig{DataDir: dir, ListenAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatalf("restart after a kill: %v", err)
	}
	defer k.Close()
	got := consumeAll(ctx, t, k.Addrs(), topic, n)
	for _, want := range recs {
		if g, ok := got[string(want.Value)]; !ok || g.Partition != want.Partition || g.Offset != want.Offset {
			t.Errorf("%s (partition %d offset %d) not there after the kill", want.Value, want.Partition, want.Offset)
		}
	}
}
