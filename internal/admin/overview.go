package admin

import (
	"context"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/hookstream/hookstream/internal/redact"
	"github.com/hookstream/hookstream/internal/wire"
)

// PartitionLag is how far a consumer group is behind on one partition of
// the events topic: its next offset (kept in consumer_offsets, where the
// consumer stores it with its work) and the partition's end offset.
type PartitionLag struct {
	Group     string `json:"group"`
	Partition int32  `json:"partition"`
	// NextOffset is absent while the group has stored no position for
	// the partition (the row's -1): it reads from the start of the log,
	// so the lag counts from the partition's start offset.
	NextOffset *int64 `json:"next_offset,omitempty"`
	EndOffset  *int64 `json:"end_offset,omitempty"` // absent when Kafka did not answer
	Lag        *int64 `json:"lag,omitempty"`
}

// RelayLag is how far the audit relay is behind: transactions that wrote
// audit records and are not yet on the audit topic, and the age of the
// oldest such record.
type RelayLag struct {
	PendingCommits   int64    `json:"pending_commits"`
	OldestPendingSec *float64 `json:"oldest_pending_seconds,omitempty"`
}

// overviewTimeout bounds each part of the overview: one slow dependency
// shows as unavailable instead of holding the page.
const overviewTimeout = 3 * time.Second

func (a *api) overview(c *gin.Context) {
	ctx := c.Request.Context()
	out := gin.H{"at": time.Now().UTC()}
	ready := gin.H{"postgres": "ok", "kafka": "ok"}
	if a.cfg.Rates != nil {
		minutes, since := a.cfg.Rates.Minutes(time.Now())
		out["rates"] = gin.H{"since": since.UTC(), "minutes": minutes}
	}
	pctx, cancel := context.WithTimeout(ctx, overviewTimeout)
	defer cancel()
	customers, relay, offsets, err := a.overviewTables(pctx)
	if err != nil {
		ready["postgres"] = "unavailable"
	} else {
		out["customers"], out["audit_relay"] = customers, relay
	}
	starts, ends, err := a.eventsOffsets(ctx)
	if err != nil {
		ready["kafka"] = "unavailable"
	}
	out["consumer_lag"], out["ready"] = lags(offsets, starts, ends), ready
	c.JSON(http.StatusOK, out)
}

// overviewTables reads the customers in trouble by state, the relay's
// lag and the consumers' stored offsets, in one snapshot.
func (a *api) overviewTables(ctx context.Context) (map[string]int64, RelayLag, []PartitionLag, error) {
	customers := map[string]int64{"BLOCKED": 0, "PARKED": 0, "DRAINING": 0}
	var relay RelayLag
	var offsets []PartitionLag
	err := pgx.BeginTxFunc(ctx, a.cfg.Pool, pgx.TxOptions{AccessMode: pgx.ReadOnly, IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, `SELECT state, count(*) FROM customer_blocks GROUP BY state`)
		var state string
		var n int64
		if _, err := pgx.ForEachRow(rows, []any{&state, &n}, func() error { customers[state] = n; return nil }); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT coalesce((SELECT n FROM audit_clock WHERE id = 1), 0) - coalesce((SELECT commit_seq FROM audit_relay WHERE id = 1), 0),
  extract(epoch FROM now() - (SELECT min(a.at) FROM audit_commits ac JOIN audit_log a ON a.xid = ac.xid
    WHERE ac.commit_seq > coalesce((SELECT commit_seq FROM audit_relay WHERE id = 1), 0)))::float8`).Scan(&relay.PendingCommits, &relay.OldestPendingSec); err != nil {
			return err
		}
		rows, _ = tx.Query(ctx, `SELECT group_id, partition, CASE WHEN next_offset >= 0 THEN next_offset END FROM consumer_offsets
WHERE topic = $1 ORDER BY group_id, partition`, a.eventsTopic())
		var l PartitionLag
		_, err := pgx.ForEachRow(rows, []any{&l.Group, &l.Partition, &l.NextOffset}, func() error { offsets = append(offsets, l); return nil })
		return err
	})
	if err != nil {
		a.cfg.Logger.Warn("admin overview: database", "error", redact.Text(err.Error()))
	}
	return customers, relay, offsets, err
}

// eventsOffsets asks Kafka for the start and end offsets of each
// partition of the events topic; it is also the overview's Kafka
// readiness check.
func (a *api) eventsOffsets(ctx context.Context) (starts, ends map[int32]int64, err error) {
	if len(a.cfg.Brokers) == 0 {
		return nil, nil, errNoBrokers
	}
	ctx, cancel := context.WithTimeout(ctx, overviewTimeout)
	defer cancel()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(a.cfg.Brokers...), kgo.ClientID("hookstream-admin-overview")}, a.cfg.KafkaOpts...)...)
	if err != nil {
		return nil, nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if starts, err = listed(adm.ListStartOffsets(ctx, a.eventsTopic())); err != nil {
		return nil, nil, err
	}
	ends, err = listed(adm.ListEndOffsets(ctx, a.eventsTopic()))
	return starts, ends, err
}

func listed(l kadm.ListedOffsets, err error) (map[int32]int64, error) {
	if err == nil {
		err = l.Error()
	}
	if err != nil {
		return nil, err
	}
	out := map[int32]int64{}
	l.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out, nil
}

func (a *api) eventsTopic() string {
	if a.cfg.EventsTopic != "" {
		return a.cfg.EventsTopic
	}
	return wire.DefaultEventsTopic
}

// lags completes the stored offsets with the end offsets, when known.
func lags(offsets []PartitionLag, starts, ends map[int32]int64) []PartitionLag {
	out := make([]PartitionLag, 0, len(offsets))
	for _, l := range offsets {
		end, ok := ends[l.Partition]
		if ok {
			from := starts[l.Partition]
			if l.NextOffset != nil {
				from = *l.NextOffset
			}
			lag := max(end-from, 0)
			l.EndOffset, l.Lag = &end, &lag
		}
		out = append(out, l)
	}
	return out
}
