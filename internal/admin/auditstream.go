package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/hookstream/hookstream/internal/wire"
)

// The live audit tail reads the audit topic, not the audit_log table. The
// topic holds every decision, the receiver's (produced there directly)
// and the consumer's and operators' (relayed from audit_log), each
// partition in order, and a reader positioned at the end sees only what
// comes next: a cursor is a next offset per partition. The table holds
// the receiver's decisions only once the sink has copied them, and its
// seq is taken at insert, not at commit, so a reader polling seq > cursor
// would skip a row whose transaction committed after a later one (the
// relay needs audit_commits to publish in commit order for this reason).

// maxStreams is how many audit streams may be open at once: each holds
// a Kafka client (connections, fetch buffers).
const maxStreams = 16

// keepAliveEvery is how often an idle stream sends a comment, so that a
// proxy does not close it as idle.
const keepAliveEvery = 15 * time.Second

// auditStream serves GET /admin/audit/stream: server-sent events of the
// audit decisions as they are made, from now (or from a cursor), until
// max_seconds or max_records.
func (a *api) auditStream(c *gin.Context) {
	o, ok := parseStreamOptions(c)
	if !ok {
		return
	}
	if len(a.cfg.Brokers) == 0 {
		fail(c, http.StatusServiceUnavailable, "unavailable", errNoBrokers.Error())
		return
	}
	select {
	case a.streams <- struct{}{}:
		defer func() { <-a.streams }()
	default:
		fail(c, http.StatusServiceUnavailable, "unavailable", fmt.Sprintf("%d audit streams are open already", maxStreams))
		return
	}
	openCtx, cancelOpen := context.WithTimeout(c.Request.Context(), 10*time.Second)
	cl, next, err := a.openAuditReader(openCtx, o.from)
	cancelOpen()
	if err != nil {
		fail(c, http.StatusServiceUnavailable, "unavailable", "Kafka unavailable: "+err.Error())
		return
	}
	defer cl.Close()
	// max_seconds counts from when the stream is positioned.
	ctx, cancel := context.WithTimeout(c.Request.Context(), o.duration)
	defer cancel()
	h := c.Writer.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: pass each event on at once
	c.Status(http.StatusOK)
	s := &sse{w: c.Writer}
	s.send("ready", streamCursor(next), map[string]string{"cursor": streamCursor(next)}, "retry: 2000\n")
	reason := a.streamRecords(ctx, cl, o, next, s)
	s.send("end", "", map[string]string{"reason": reason}, "")
}

// openAuditReader is a client reading the audit topic from from (nil:
// the end of every partition), and the next offset of each partition.
func (a *api) openAuditReader(ctx context.Context, from map[int32]int64) (*kgo.Client, map[int32]int64, error) {
	topic := a.auditTopic()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(a.cfg.Brokers...), kgo.ClientID("hookstream-admin-audit-stream"),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(500 * time.Millisecond)}, a.cfg.KafkaOpts...)...)
	if err != nil {
		return nil, nil, err
	}
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		cl.Close()
		return nil, nil, err
	}
	next, offsets := map[int32]int64{}, map[int32]kgo.Offset{}
	ends.Each(func(l kadm.ListedOffset) {
		next[l.Partition] = l.Offset
		if o, ok := from[l.Partition]; ok {
			next[l.Partition] = o
		}
		offsets[l.Partition] = kgo.NewOffset().At(next[l.Partition])
	})
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets})
	return cl, next, nil
}

func (a *api) auditTopic() string {
	if a.cfg.AuditTopic != "" {
		return a.cfg.AuditTopic
	}
	return wire.DefaultAuditTopic
}

// streamRecords sends the matching records until ctx ends or o.records
// were sent, and says which ("max_records", "max_seconds", "closed").
func (a *api) streamRecords(ctx context.Context, cl *kgo.Client, o *streamOptions, next map[int32]int64, s *sse) string {
	sent := 0
	for sent < o.records {
		pollCtx, cancel := context.WithTimeout(ctx, keepAliveEvery)
		fetches := cl.PollRecords(pollCtx, o.records-sent)
		cancel()
		if ctx.Err() != nil {
			break
		}
		if fetches.NumRecords() == 0 {
			s.comment("keep-alive")
			continue
		}
		fetches.EachRecord(func(r *kgo.Record) {
			next[r.Partition] = r.Offset + 1
			var rec wire.AuditRecord
			if r.Value == nil || json.Unmarshal(r.Value, &rec) != nil || !o.matches(&rec) || sent >= o.records {
				return // a tombstone, not a record, or not asked for
			}
			redactTrail([]*wire.AuditRecord{&rec})
			s.send("audit", streamCursor(next), &rec, "")
			sent++
		})
	}
	switch {
	case sent >= o.records:
		return "max_records"
	case ctx.Err() == context.DeadlineExceeded:
		return "max_seconds"
	default:
		return "closed"
	}
}

// sse writes server-sent events, flushing each.
type sse struct{ w gin.ResponseWriter }

func (s *sse) send(event, id string, data any, prefix string) {
	b, _ := json.Marshal(data) // an audit record or a map of strings always marshals
	msg := prefix + "event: " + event + "\n"
	if id != "" {
		msg += "id: " + id + "\n"
	}
	_, _ = s.w.WriteString(msg + "data: " + string(b) + "\n\n")
	s.w.Flush()
}

func (s *sse) comment(text string) {
	_, _ = s.w.WriteString(": " + text + "\n\n")
	s.w.Flush()
}
