// Package admin is the operator API under /admin/ (docs/design.md, "HTTP
// contract"): an event's state and audit trail, listing events, replaying
// them, and parked customers. Every route needs
// "Authorization: Bearer <HOOKSTREAM_ADMIN_TOKEN>"; with no token the API is
// not mounted at all. Failed authentications are logged, counted
// (hookstream_admin_auth_failures_total) and throttled per client address
// (auth.go). Ids in paths may hold "/" percent-encoded as %2F, which the
// router (internal/httpserver) matches on the raw path.
package admin

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/hookstream/hookstream/audit"
	"github.com/hookstream/hookstream/consumer"
	"github.com/hookstream/hookstream/ingest"
	"github.com/hookstream/hookstream/internal/redact"
	"github.com/hookstream/hookstream/internal/wire"
)

// Config configures the API.
type Config struct {
	Token    string // required; empty disables the API
	Pool     *pgxpool.Pool
	Instance string
	// Logger receives failed authentications. Default slog.Default().
	Logger *slog.Logger
	// AuthFailureBurst failed authentications a client address may make
	// at once; after that one per AuthFailureEvery, and its requests are
	// answered 429 unchecked meanwhile. Defaults
	// DefaultAuthFailureBurst (10) and DefaultAuthFailureEvery (6s).
	AuthFailureBurst int
	AuthFailureEvery time.Duration
	// Brokers and KafkaOpts (TLS, SASL) reach the Kafka cluster that
	// GET /admin/audit/stream reads; without brokers it answers 503.
	Brokers   []string
	KafkaOpts []kgo.Opt
	// AuditTopic is the audit topic. Default wire.DefaultAuditTopic.
	AuditTopic string
	// EventsTopic is the events topic, whose end offsets give the
	// consumers' lag in GET /admin/overview. Default
	// wire.DefaultEventsTopic.
	EventsTopic string
	// Rates gives GET /admin/overview its per-minute counts; nil: the
	// overview has none.
	Rates *RateSampler
}

var errNoBrokers = errors.New("no Kafka brokers configured")

// Register mounts /admin/ on r when a token is configured.
func Register(cfg Config) func(gin.IRouter) {
	return func(r gin.IRouter) {
		if cfg.Token == "" {
			return
		}
		a := &api{cfg: cfg, streams: make(chan struct{}, maxStreams), replay: consumer.ReplayConfig{Pool: cfg.Pool, Audit: audit.Writer{},
			Actor: wire.ActorAdmin, Instance: cfg.Instance}}
		g := r.Group("/admin", newAuthenticator(cfg).handle, storableParameters)
		g.GET("/auth", checkAuth)
		g.GET("/events", a.listEvents)
		g.GET("/events/:source/:event_id", a.getEvent)
		g.GET("/events/:source/:event_id/body", a.eventBody)
		g.POST("/events/:source/:event_id/replay", a.replayEvent)
		g.GET("/customers/blocked", a.blocked)
		g.GET("/customers/parked", a.parked)
		g.POST("/customers/:customer_id/unpark", a.unpark)
		g.GET("/replay/preview", a.previewReplay)
		g.POST("/replay", a.bulkReplay)
		g.GET("/audit/stream", a.auditStream)
		g.GET("/overview", a.overview)
	}
}

type api struct {
	cfg     Config
	replay  consumer.ReplayConfig
	streams chan struct{} // a slot per open audit stream
}

// queryParameters are the query parameters the routes read.
var queryParameters = []string{"customer_id", "status", "limit", "cursor", "state", "source", "skip_blocker",
	"event_id", "event_type", "since", "until", "blocker", "max_bytes", "action", "max_seconds", "max_records"}

// storableParameters refuses a path or query parameter holding NUL or
// invalid UTF-8 (400 bad_request). PostgreSQL's text can hold neither, so
// no id or name hookstream stores does; let through, the database refuses
// the query and the client would be told the database is unavailable. A
// query parameter given twice is refused too: the routes read the first,
// and a proxy or a script may have meant the last
// (since=…&customer_id=&customer_id=C bulk-replayed every customer's).
func storableParameters(c *gin.Context) {
	for _, p := range c.Params {
		if !storable(p.Value) {
			fail(c, http.StatusBadRequest, "bad_request", p.Key+" must be UTF-8 text without NUL")
			return
		}
	}
	q := c.Request.URL.Query()
	for _, name := range queryParameters {
		if len(q[name]) > 1 {
			fail(c, http.StatusBadRequest, "bad_request", name+" must be given at most once")
			return
		}
		for _, v := range q[name] {
			if !storable(v) {
				fail(c, http.StatusBadRequest, "bad_request", name+" must be UTF-8 text without NUL")
				return
			}
		}
	}
}

func storable(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }

func fail(c *gin.Context, status int, code, msg string) {
	c.AbortWithStatusJSON(status, ingest.ErrorBody{Error: ingest.ErrorDetail{Code: code, Message: msg}})
}

// Event is an event's state as the admin API shows it.
type Event struct {
	Source      string              `json:"source"`
	EventID     string              `json:"event_id"`
	CustomerID  string              `json:"customer_id"`
	EventType   string              `json:"event_type"`
	Status      string              `json:"status"`
	Attempts    int                 `json:"attempts"`
	Partition   *int32              `json:"partition,omitempty"`
	Offset      *int64              `json:"offset,omitempty"`
	LastError   string              `json:"last_error,omitempty"`
	ReceivedAt  *time.Time          `json:"received_at,omitempty"`
	UpdatedAt   time.Time           `json:"updated_at"`
	ProcessedAt *time.Time          `json:"processed_at,omitempty"`
	Trail       []*wire.AuditRecord `json:"trail,omitempty"`
}

const eventColumns = `source, event_id, customer_id, event_type, status, attempts, kafka_partition, kafka_offset,
coalesce(last_error, ''), received_at, updated_at, processed_at`

func scanEvent(row pgx.Row) (*Event, error) {
	var e Event
	err := row.Scan(&e.Source, &e.EventID, &e.CustomerID, &e.EventType, &e.Status, &e.Attempts, &e.Partition, &e.Offset,
		&e.LastError, &e.ReceivedAt, &e.UpdatedAt, &e.ProcessedAt)
	// Errors are redacted when they are stored; rows an older version
	// wrote may still name a destination with its credentials.
	e.LastError = redact.Text(e.LastError)
	return &e, err
}

// redactTrail redacts the error text of audit records, as scanEvent does
// last_error.
func redactTrail(trail []*wire.AuditRecord) []*wire.AuditRecord {
	for _, r := range trail {
		if msg, ok := r.Detail["error"].(string); ok {
			r.Detail["error"] = redact.Text(msg)
		}
	}
	return trail
}

func (a *api) getEvent(c *gin.Context) {
	ctx := c.Request.Context()
	ev, err := scanEvent(a.cfg.Pool.QueryRow(ctx, `SELECT `+eventColumns+` FROM events WHERE source = $1 AND event_id = $2`, c.Param("source"), c.Param("event_id")))
	if errors.Is(err, pgx.ErrNoRows) {
		// The receiver may have decided about it (a rejection, say) without
		// the consumer ever seeing it: show the trail if there is one.
		trail, terr := audit.Trail(ctx, a.cfg.Pool, c.Param("source"), c.Param("event_id"))
		if terr != nil || len(trail) == 0 {
			fail(c, http.StatusNotFound, "not_found", "no such event")
			return
		}
		c.JSON(http.StatusOK, gin.H{"source": c.Param("source"), "event_id": c.Param("event_id"), "status": "UNKNOWN", "trail": redactTrail(trail)})
		return
	}
	if err != nil {
		fail(c, http.StatusServiceUnavailable, "unavailable", "database unavailable")
		return
	}
	if ev.Trail, err = audit.Trail(ctx, a.cfg.Pool, ev.Source, ev.EventID); err != nil {
		fail(c, http.StatusServiceUnavailable, "unavailable", "database unavailable")
		return
	}
	redactTrail(ev.Trail)
	c.JSON(http.StatusOK, ev)
}

// cursor is the position after the last event of a page.
type cursor struct {
	UpdatedAt time.Time `json:"u"`
	Source    string    `json:"s"`
	EventID   string    `json:"e"`
}

func (a *api) listEvents(c *gin.Context) {
	f, ok := parseEventFilter(c)
	if !ok {
		return
	}
	limit := f.limit
	sql, args := f.query()
	// Planned for its values each time, never a cached generic plan: a
	// plan for the average customer is not the one for the biggest.
	args = append([]any{pgx.QueryExecModeExec}, args...)
	rows, err := a.cfg.Pool.Query(c.Request.Context(), sql, args...)
	if err != nil {
		fail(c, http.StatusServiceUnavailable, "unavailable", "database unavailable")
		return
	}
	defer rows.Close()
	events := []*Event{}
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			fail(c, http.StatusServiceUnavailable, "unavailable", "database unavailable")
			return
		}
		events = append(events, e)
	}
	if rows.Err() != nil { // an error during the rows comes only after them
		fail(c, http.StatusServiceUnavailable, "unavailable", "database unavailable")
		return
	}
	out := gin.H{"events": events}
	if len(events) > limit {
		last := events[limit-1]
		raw, _ := json.Marshal(cursor{UpdatedAt: last.UpdatedAt, Source: last.Source, EventID: last.EventID})
		out["events"] = events[:limit]
		out["next_cursor"] = base64.RawURLEncoding.EncodeToString(raw)
	}
	c.JSON(http.StatusOK, out)
}

func (a *api) replayEvent(c *gin.Context) {
	reason, ok := operatorReason(c)
	if !ok {
		return
	}
	err := consumer.Replay(c.Request.Context(), a.replay, c.Param("source"), c.Param("event_id"), reason)
	switch {
	case errors.Is(err, consumer.ErrNotReplayable):
		fail(c, http.StatusConflict, "not_replayable", err.Error())
	case err != nil:
		fail(c, http.StatusServiceUnavailable, "unavailable", redact.Text(err.Error()))
	default:
		c.JSON(http.StatusAccepted, gin.H{"source": c.Param("source"), "event_id": c.Param("event_id"), "status": "replayed"})
	}
}

// blocked lists the customers with unfinished older events, in any state
// (?state=BLOCKED|PARKED|DRAINING narrows it).
func (a *api) blocked(c *gin.Context) {
	state := c.Query("state")
	switch state {
	case "", "BLOCKED", "PARKED", "DRAINING":
	default:
		fail(c, http.StatusBadRequest, "bad_request", "state must be one of BLOCKED, PARKED, DRAINING")
		return
	}
	a.listBlocked(c, state)
}

// parked lists the customers parked behind a dead event.
func (a *api) parked(c *gin.Context) { a.listBlocked(c, "PARKED") }

func (a *api) listBlocked(c *gin.Context, state string) {
	bs, err := consumer.BlockedCustomers(c.Request.Context(), a.cfg.Pool, state)
	if err != nil {
		fail(c, http.StatusServiceUnavailable, "unavailable", "database unavailable")
		return
	}
	c.JSON(http.StatusOK, bs)
}

func (a *api) unpark(c *gin.Context) {
	skip := false
	if v := c.Query("skip_blocker"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			fail(c, http.StatusBadRequest, "bad_request", "skip_blocker must be true or false")
			return
		}
		skip = b
	}
	reason, ok := operatorReason(c)
	if !ok {
		return
	}
	blocker, expect := c.GetQuery("blocker")
	err := consumer.Unpark(c.Request.Context(), a.replay, c.Param("customer_id"), consumer.UnparkOptions{
		Source: c.Query("source"), SkipBlocker: skip, Reason: reason, ExpectBlocker: expect, Blocker: blocker})
	switch {
	case errors.Is(err, consumer.ErrBlockerChanged):
		fail(c, http.StatusConflict, "blocker_changed", err.Error())
	case errors.Is(err, consumer.ErrAmbiguous):
		fail(c, http.StatusConflict, "ambiguous_customer", err.Error())
	case errors.Is(err, consumer.ErrNotParked):
		fail(c, http.StatusNotFound, "not_parked", err.Error())
	case errors.Is(err, consumer.ErrNotReplayable):
		fail(c, http.StatusConflict, "not_replayable", err.Error())
	case err != nil:
		fail(c, http.StatusServiceUnavailable, "unavailable", redact.Text(err.Error()))
	default:
		c.JSON(http.StatusAccepted, gin.H{"customer_id": c.Param("customer_id"), "status": "unparking", "skip_blocker": skip})
	}
}
