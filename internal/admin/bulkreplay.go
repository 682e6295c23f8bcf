package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5"

	"github.com/hookstream/hookstream/consumer"
	"github.com/hookstream/hookstream/internal/redact"
)

// BulkEvent is an event a bulk replay selected.
type BulkEvent struct {
	Source     string    `json:"source"`
	EventID    string    `json:"event_id"`
	CustomerID string    `json:"customer_id"`
	EventType  string    `json:"event_type"`
	Status     string    `json:"status"` // before the replay
	UpdatedAt  time.Time `json:"updated_at"`
}

// Skipped is a selected event the bulk replay did not re-drive: it was
// not FAILED or DEAD any more, or was updated since it was selected, when
// its turn came (the consumer, or another operator, got to it first).
type Skipped struct {
	Source  string `json:"source"`
	EventID string `json:"event_id"`
	Reason  string `json:"reason"`
}

// selectReplayable counts the events of f and returns the first f.limit,
// oldest update first, from one snapshot (so that the count is never
// below the events listed).
func (a *api) selectReplayable(ctx context.Context, f *replayFilter) (matched int, events []BulkEvent, err error) {
	where, args := f.where()
	err = pgx.BeginTxFunc(ctx, a.cfg.Pool, pgx.TxOptions{AccessMode: pgx.ReadOnly, IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM events WHERE `+where, args...).Scan(&matched); err != nil {
			return err
		}
		rows, _ := tx.Query(ctx, `SELECT source, event_id, customer_id, event_type, status, updated_at FROM events
WHERE `+where+` ORDER BY updated_at, source, event_id LIMIT `+strconv.Itoa(f.limit), args...)
		events = []BulkEvent{}
		var e BulkEvent
		_, err := pgx.ForEachRow(rows, []any{&e.Source, &e.EventID, &e.CustomerID, &e.EventType, &e.Status, &e.UpdatedAt}, func() error {
			events = append(events, e)
			return nil
		})
		return err
	})
	return matched, events, err
}

// previewReplay answers what POST /admin/replay with the same query would
// re-drive now, changing nothing.
func (a *api) previewReplay(c *gin.Context) {
	f, ok := parseReplayFilter(c)
	if !ok {
		return
	}
	matched, events, err := a.selectReplayable(c.Request.Context(), f)
	if err != nil {
		fail(c, http.StatusServiceUnavailable, "unavailable", "database unavailable")
		return
	}
	c.JSON(http.StatusOK, gin.H{"matched": matched, "limit": f.limit, "max_per_request": MaxBulkReplay, "events": events})
}

// bulkReplay re-drives the selected events one by one, each in its own
// transaction audited REPLAYED under the operator, as a single replay
// would be (consumer.Replay). One transaction per event, not one for all:
// it takes the locks of one customer at a time, in the order the consumer
// takes them, so it cannot deadlock with a consumer's batch, and an event
// the consumer finishes meanwhile is skipped, not a failed request.
func (a *api) bulkReplay(c *gin.Context) {
	f, ok := parseReplayFilter(c)
	if !ok {
		return
	}
	reason, ok := operatorReason(c)
	if !ok {
		return
	}
	ctx := c.Request.Context()
	matched, events, err := a.selectReplayable(ctx, f)
	if err != nil {
		fail(c, http.StatusServiceUnavailable, "unavailable", "database unavailable")
		return
	}
	replayed, skipped := []BulkEvent{}, []Skipped{}
	for _, e := range events {
		// Only as selected: one replayed meanwhile (FAILED again, due
		// now) or retried by the consumer is skipped, not re-driven in a
		// state the preview did not show.
		err := consumer.ReplaySelected(ctx, a.replay, e.Source, e.EventID, reason, e.UpdatedAt)
		switch {
		case errors.Is(err, consumer.ErrNotReplayable):
			skipped = append(skipped, Skipped{Source: e.Source, EventID: e.EventID, Reason: err.Error()})
		case err != nil:
			fail(c, http.StatusServiceUnavailable, "unavailable", fmt.Sprintf("replayed %d of %d selected events, then: %s",
				len(replayed), len(events), redact.Text(err.Error())))
			return
		default:
			replayed = append(replayed, e)
		}
	}
	c.JSON(http.StatusAccepted, gin.H{"matched": matched, "replayed": replayed, "skipped": skipped,
		"remaining": matched - len(events), "max_per_request": MaxBulkReplay})
}
