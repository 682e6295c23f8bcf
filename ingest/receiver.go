package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"

	"github.com/hookstream/hookstream/ingest/signature"
	"github.com/hookstream/hookstream/internal/sources"
	"github.com/hookstream/hookstream/internal/tracing"
	"github.com/hookstream/hookstream/internal/wire"
)

// Producer is the part of *kgo.Client the receiver needs.
type Producer interface {
	Produce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error))
	// TryProduce is Produce that fails a record with kgo.ErrMaxBuffered
	// instead of waiting for room in the buffer.
	TryProduce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error))
}

// Config configures a Receiver.
type Config struct {
	// Sources served at POST /webhooks/{name}. Required.
	Sources []sources.Source
	// Producer writes to Kafka. It must be idempotent with acks=all and fail
	// records at a delivery timeout no longer than ProduceTimeout, in flight
	// or not (internal/kafka.NewProducer). Required.
	Producer Producer
	// RejectionProducer writes the REJECTED records. A rejection is
	// answered whether or not its record lands, so nothing waits for the
	// record longer than ProduceTimeout; its delivery timeout is how long
	// it may wait for a broker that is away (a leader's fail-over, an
	// outage) before it is given up and counted, which should be minutes
	// rather than ProduceTimeout's seconds. It should bound what it
	// buffers (a full buffer fails a record at once, counted). Default:
	// Producer.
	RejectionProducer Producer
	// Duplicates answers the duplicate check; it must bound its own time
	// (PostgresDuplicatesConfig.Timeout). Nil: every event is new.
	Duplicates DuplicateChecker
	// Topics names the events and audit topics. Zero value: the defaults.
	Topics wire.Topics
	// Instance names this process in audit records. Default: "ingest".
	Instance string
	// ProduceTimeout bounds how long a request waits for the broker to
	// acknowledge its event before it is answered 503. Default 5s.
	ProduceTimeout time.Duration
	// RetryAfter is the Retry-After of a 503, in seconds. Default 5.
	RetryAfter int
	// Logger. Default slog.Default().
	Logger *slog.Logger
	// PreAuth bounds what requests cost before their signature is
	// verified (budget per source and client address, body memory).
	// Zero value: the defaults named in PreAuthConfig.
	PreAuth PreAuthConfig
	// RejectionAudit bounds the audit records of rejections. Zero value:
	// the defaults named in RejectionAuditConfig.
	RejectionAudit RejectionAuditConfig
	// TracerProvider makes the receiver's spans (trace.go). Default nil:
	// no spans, and a provider's valid traceparent and tracestate go on
	// in the event record unchanged.
	TracerProvider trace.TracerProvider
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	c.Topics = c.Topics.WithDefaults()
	if c.Instance == "" {
		c.Instance = "ingest"
	}
	if c.ProduceTimeout == 0 {
		c.ProduceTimeout = 5 * time.Second
	}
	if c.RetryAfter == 0 {
		c.RetryAfter = 5
	}
	if c.RejectionProducer == nil {
		c.RejectionProducer = c.Producer
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.PreAuth = c.PreAuth.WithDefaults()
	c.RejectionAudit = c.RejectionAudit.WithDefaults()
	return c
}

func (c Config) validate() error {
	switch {
	case len(c.Sources) == 0:
		return errors.New("ingest: no sources configured")
	case c.Producer == nil:
		return errors.New("ingest: Producer is required")
	case c.ProduceTimeout < 0:
		return errors.New("ingest: ProduceTimeout must be positive")
	}
	for _, msg := range []string{c.PreAuth.validate(), c.RejectionAudit.validate()} {
		if msg != "" {
			return errors.New("ingest: " + msg)
		}
	}
	return nil
}

// Reply is the body of a 2xx or 409: the event's id and what became of it
// ("accepted" or "duplicate"); Retry is set when a FAILED or DEAD event
// was accepted again for another attempt.
type Reply struct {
	EventID string `json:"event_id"`
	Status  string `json:"status"`
	Retry   bool   `json:"retry,omitempty"`
}

// reply writes body as the response, encoded as encoding/json would: by
// hand for the common reply (gin's c.JSON, encoding/json, was measurably
// slower on every request), else by c.JSON.
func reply(c *gin.Context, code int, body Reply) {
	b, ok := body.appendJSON(make([]byte, 0, 64+len(body.EventID)))
	if !ok {
		c.JSON(code, body)
		return
	}
	c.Data(code, "application/json; charset=utf-8", b)
}

// appendJSON appends the reply as encoding/json encodes it, when every
// string in it is printable ASCII that JSON leaves as it is (event ids
// nearly always are); otherwise it reports false.
func (r Reply) appendJSON(b []byte) ([]byte, bool) {
	for _, s := range [2]string{r.EventID, r.Status} {
		for i := 0; i < len(s); i++ {
			switch c := s[i]; {
			case c < 0x20, c > 0x7e, c == '"', c == '\\', c == '<', c == '>', c == '&':
				return nil, false
			}
		}
	}
	b = append(b, `{"event_id":"`...)
	b = append(b, r.EventID...)
	b = append(b, `","status":"`...)
	b = append(b, r.Status...)
	b = append(b, '"')
	if r.Retry {
		b = append(b, `,"retry":true`...)
	}
	return append(b, '}'), true
}

// Receiver serves POST /webhooks/{source}.
type Receiver struct {
	cfg     Config
	sources map[string]*source
	log     *slog.Logger
	// auditFailures counts and logs the audit records not published.
	auditFailures *auditFailureLog
	// budget bounds the memory of bodies not verified yet (body.go).
	budget *bodyBudget
	// rejections decides which rejections get a record of their own
	// (rejectaudit.go).
	rejections *rejectionAudit
	// tracer is nil when tracing is off.
	tracer trace.Tracer
	// digests are the signed digests seen last (replay.go).
	digests recentDigests
}

// New compiles the sources (signature schemes, JSON Schemas, rate limits)
// and returns a Receiver; any bad source is an error naming the field.
func New(cfg Config) (*Receiver, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	r := &Receiver{cfg: cfg, sources: make(map[string]*source, len(cfg.Sources)), log: cfg.Logger,
		auditFailures: newAuditFailureLog(cfg.Logger, auditFailureLogInterval),
		budget: &bodyBudget{
			open:     cfg.PreAuth.MaxUnverifiedBodyBytes - cfg.PreAuth.VerifiedReserveBytes,
			reserved: cfg.PreAuth.MaxUnverifiedBodyBytes,
		}}
	r.rejections = newRejectionAudit(cfg.RejectionAudit, cfg.Instance, r.summarized)
	if cfg.TracerProvider != nil {
		r.tracer = cfg.TracerProvider.Tracer(tracing.TracerName)
	}
	for _, s := range cfg.Sources {
		if _, dup := r.sources[s.Name]; dup {
			return nil, fmt.Errorf("ingest: source %q defined twice", s.Name)
		}
		cs, err := compileSource(s)
		if err != nil {
			return nil, fmt.Errorf("ingest: %w", err)
		}
		cs.addresses = newAddressTable(cfg.PreAuth)
		r.sources[s.Name] = cs
	}
	return r, nil
}

// Close writes the rejection summaries still pending (to the producer,
// without waiting: flush the producer after it). Call it once the HTTP
// server has stopped; a rejection after it gets a record of its own.
func (r *Receiver) Close() {
	r.rejections.close()
}

// UnverifiedBodies returns how many requests hold memory for a body whose
// signature is not verified yet, and how many bytes they hold together
// (also the gauge hookstream_ingest_unverified_body_bytes).
func (r *Receiver) UnverifiedBodies() (requests, bytes int64) {
	return r.budget.bodies.Load(), r.budget.bytes.Load()
}

// Register adds the webhook route to router.
func (r *Receiver) Register(router gin.IRouter) {
	router.POST("/webhooks/:source", r.handle)
}

// request is one webhook request on its way through the receiver.
type request struct {
	c               *gin.Context
	requestID       string // the server's own (requestIDs)
	clientRequestID string // the client's X-Request-Id, when sane
	receivedAt      time.Time
	src             *source
	sourceName      string
	addr            netip.Addr // the client's, for the budgets (clientAddress)
	raw             body       // the body's buffer and its share of the budget
	body            []byte     // raw's bytes, once read
	// bodyHeld: a record carrying body may still be in the producer, so
	// its buffer must not be reused.
	bodyHeld bool
	// verified: the source's scheme accepted the signature.
	verified   bool
	eventID    string
	customerID string
	eventType  string
	// trace is nil when tracing is off.
	trace *requestTrace
	// digest: what the signature covers, for sources whose event id it
	// does not cover (replay.go); "" otherwise.
	digest string
	// floor: the duplicate checker's bucket floor, read before the check
	// (bucket.go); the event record carries it only while it is > 0.
	floor int32
	// admitted: admitEvent ran (the rate limit is spent once).
	admitted bool
}

func (r *Receiver) handle(c *gin.Context) {
	req := &request{c: c, receivedAt: time.Now().UTC(), sourceName: c.Param("source")}
	req.requestID, req.clientRequestID = requestIDs(c)
	if r.tracer != nil {
		r.startRequest(req)
	}
	if rej, detail := r.checkTraced(req); rej != nil {
		r.rejected(req, rej, detail)
	} else {
		r.decide(req)
	}
	if req.trace != nil {
		r.endRequest(req)
	}
	req.raw.release(req.bodyHeld)
}

// check runs every validation that can reject a request, cheapest first, so
// that load shedding and bad input cost as little as possible. It returns
// the rejection and audit detail for it, or nil.
func (r *Receiver) check(req *request) (*rejection, map[string]any) {
	src, ok := r.sources[req.sourceName]
	if !ok {
		return reject(http.StatusNotFound, CodeUnknownSource, "no source named "+quoteName(req.sourceName)), nil
	}
	req.src = src
	if rej, detail := r.checkUnverified(req); rej != nil {
		return rej, detail
	}
	return r.checkVerified(req)
}

// admitEvent is the last step before a verified request's event is
// produced (a new event, a re-drive, or one whose duplicate check failed):
// the address is marked as one that delivered lately, and the source's
// rate limit is spent, once per request. Only here, after the duplicate
// check, and not at the signature: a signature that covers the body alone
// (github, shopify, hmac-sha256) vouches for a body anyone who captured
// it can send again, and such replays, refused as duplicates, must not
// spend the limit the provider's next delivery needs (GitHub does not
// retry a 429), nor pass for the provider's address (docs/design.md,
// "Rate limits and the pre-auth budget").
func (r *Receiver) admitEvent(req *request) *rejection {
	if req.admitted {
		return nil
	}
	req.admitted = true
	src := req.src
	now := time.Now()
	if src.signed {
		src.addresses.verifiedAt(req.addr, now)
	}
	if src.limiter == nil {
		return nil
	}
	res := src.limiter.ReserveN(now, 1)
	if d := res.DelayFrom(now); !res.OK() || d > 0 {
		res.CancelAt(now)
		rej := reject(http.StatusTooManyRequests, CodeRateLimited, "rate limit of source "+src.cfg.Name+" exceeded")
		rej.retryAfter = max(1, int(math.Ceil(d.Seconds())))
		return rej
	}
	return nil
}

// checkUnverified runs the checks up to and including the signature, on
// the budgets of preauth.go and body.go: a request that fails one of them
// is charged to its address (the budget's refusals are not).
func (r *Receiver) checkUnverified(req *request) (*rejection, map[string]any) {
	c, src := req.c, req.src
	req.addr = clientAddress(c.Request, r.cfg.PreAuth.TrustedProxies)
	if ok, wait := src.addresses.allow(req.addr, req.receivedAt); !ok {
		rej := reject(http.StatusTooManyRequests, CodeAddressLimited, "too many requests from this address failed before authentication; retry later")
		rej.retryAfter = max(1, int(math.Ceil(wait.Seconds())))
		return rej, nil
	}
	rej, detail := r.readAndVerify(req)
	if rej != nil && rej.code != CodeOverloaded {
		src.addresses.failed(req.addr, req.receivedAt)
	}
	return rej, detail
}

// readAndVerify checks the content type and size, reads the body and
// verifies its signature.
func (r *Receiver) readAndVerify(req *request) (*rejection, map[string]any) {
	c, src := req.c, req.src
	if msg := checkContentEncoding(c.Request.Header); msg != "" {
		return reject(http.StatusUnsupportedMediaType, CodeUnsupportedEncoding, msg), nil
	}
	if msg := checkContentType(c.GetHeader("Content-Type")); msg != "" {
		return reject(http.StatusUnsupportedMediaType, CodeUnsupportedMediaType, msg), nil
	}
	limit := src.cfg.MaxBodyBytes
	tooLarge := func() *rejection {
		return reject(http.StatusRequestEntityTooLarge, CodeBodyTooLarge, fmt.Sprintf("body larger than %d bytes", limit))
	}
	if c.Request.ContentLength > limit {
		return tooLarge(), nil
	}
	req.raw = body{budget: r.budget, addrs: src.addresses, addr: req.addr}
	err := req.raw.read(c.Request.Body, c.Request.ContentLength, limit, r.cfg.PreAuth.ClaimBytes)
	switch {
	case errors.Is(err, errTooLarge):
		return tooLarge(), nil
	case errors.Is(err, errOverBudget):
		rej := reject(http.StatusServiceUnavailable, CodeOverloaded, "too many request bodies are being received; retry later")
		rej.retryAfter = r.cfg.RetryAfter
		return rej, nil
	case err != nil:
		return reject(http.StatusBadRequest, CodeBadRequest, "could not read the request body"), map[string]any{"error": err.Error()}
	}
	req.body = req.raw.bytes()
	if err := src.verifier.Verify(c.Request.Header, req.body, time.Now()); err != nil {
		// The reply says nothing more; the audit record keeps the cause.
		rej := reject(http.StatusUnauthorized, CodeSignatureInvalid, "signature verification failed")
		rej.challenge = src.challenge
		return rej, map[string]any{"cause": signatureCause(err)}
	}
	req.raw.verified()
	req.verified = true
	return nil, nil
}

// checkVerified validates a verified request's body and reads its ids.
func (r *Receiver) checkVerified(req *request) (*rejection, map[string]any) {
	c, src, body := req.c, req.src, req.body
	var err error
	if !utf8.Valid(body) {
		return reject(http.StatusBadRequest, CodeInvalidEncoding, "body is not valid UTF-8"), nil
	}
	var doc any
	if src.needsDoc {
		if doc, err = decodeJSON(body); err != nil {
			return reject(http.StatusBadRequest, CodeMalformedJSON, "body is not valid JSON", jsonProblem(err)), nil
		}
	} else if !json.Valid(body) {
		return reject(http.StatusBadRequest, CodeMalformedJSON, "body is not valid JSON"), nil
	}
	if msg := src.ambiguity(body, doc); msg != "" {
		return reject(http.StatusBadRequest, CodeAmbiguousJSON, "the body's JSON could be read in more than one way", msg), map[string]any{"details": []string{msg}}
	}
	if src.schema != nil {
		if err := src.schema.Validate(doc); err != nil {
			details := schemaDetails(err)
			return reject(http.StatusBadRequest, CodeSchemaViolation, "body does not match the schema of source "+src.cfg.Name, details...), map[string]any{"details": details}
		}
	}
	// The event id is read only here, after the signature: it keys the
	// request's audit records (with the source), so it must be one the
	// source's secret vouches for.
	var problems []string
	h := c.Request.Header
	var p string
	if req.eventID, p = src.eventID.extract(h, doc); p != "" {
		problems = append(problems, p)
	}
	if req.customerID, p = src.customerID.extract(h, doc); p != "" {
		problems = append(problems, p)
	}
	if !src.eventType.isZero() {
		if req.eventType, p = src.eventType.extract(h, doc); p != "" {
			problems = append(problems, p)
		}
	}
	if len(problems) > 0 {
		code := CodeInvalidID
		for _, p := range problems {
			if strings.Contains(p, ": missing") {
				code = CodeMissingID
			}
		}
		return reject(http.StatusBadRequest, code, "the event's ids could not be read", problems...), map[string]any{"details": problems}
	}
	if doc != nil {
		req.eventID, req.customerID, req.eventType = ownIDs(req.eventID, req.customerID, req.eventType)
	}
	return nil, nil
}

// ownIDs copies ids read from the decoded body, which share its memory,
// into one allocation of their own: the body's buffer is reused once the
// request is answered, and an id may outlive it (a duplicate check that
// timed out still holds its look-up).
func ownIDs(a, b, c string) (string, string, string) {
	var sb strings.Builder // a + b + c may return a itself, uncopied
	sb.Grow(len(a) + len(b) + len(c))
	sb.WriteString(a)
	sb.WriteString(b)
	sb.WriteString(c)
	s := sb.String()
	return s[:len(a)], s[len(a) : len(a)+len(b)], s[len(a)+len(b):]
}

// decide runs the duplicate check and, for a new event, produces it with
// its decision (see flight); anything else it decides step by step.
func (r *Receiver) decide(req *request) {
	if req.src.replayGuard {
		req.digest = signedDigest(req.body)
		if first := r.digests.claim(req.src.cfg.Name, req.digest, req.eventID, req.receivedAt); first != "" {
			r.replayed(req, first)
			return
		}
	}
	res := r.startFlight(req).wait()
	switch {
	case res.limited != nil:
		r.rejected(req, res.limited, nil)
	case res.replayOf != "":
		r.digests.found(req.src.cfg.Name, req.digest, res.replayOf)
		r.replayed(req, res.replayOf)
	case res.checked:
		r.decideKnown(req, res.status, res.dupErr)
	case res.eventErr != nil:
		r.unstored(req, res.eventErr)
	default:
		reply(req.c, http.StatusAccepted, Reply{EventID: req.eventID, Status: "accepted"})
		observe(req, http.StatusAccepted)
	}
}

// decideKnown answers a request whose duplicate check found the event, or
// failed, or whose flight came back to the handler for another reason.
func (r *Receiver) decideKnown(req *request, status Status, dupErr error) {
	req.floor = 0 // the floor speaks for a check that found nothing
	detail := map[string]any(nil)
	if dupErr != nil {
		// The receiver does not own dedupe: accept, and let the consumer's
		// claim catch a duplicate. Refusing here would turn a database
		// outage into lost deliveries for providers that do not retry.
		r.logFor(req).Warn("duplicate check failed; accepting", "request_id", req.requestID, "error", dupErr)
		detail = map[string]any{"duplicate_check": "unavailable"}
	}
	switch status {
	case StatusProcessed:
		code := req.src.cfg.DuplicateStatus
		if r.duplicate(req, "already_processed", code, nil) {
			reply(req.c, code, Reply{EventID: req.eventID, Status: "duplicate"})
			duplicatesTotal.WithLabelValues(req.sourceName, "duplicate").Inc()
			observe(req, code)
		}
		return
	case StatusProcessing, StatusParked:
		// The events table has it, so it is already in Kafka: accepting again
		// would only add a record for the consumer to skip.
		if r.duplicate(req, "in_flight", http.StatusAccepted, map[string]any{"state": string(status)}) {
			reply(req.c, http.StatusAccepted, Reply{EventID: req.eventID, Status: "accepted"})
			duplicatesTotal.WithLabelValues(req.sourceName, "in_flight").Inc()
			observe(req, http.StatusAccepted)
		}
		return
	}
	if rej := r.admitEvent(req); rej != nil {
		r.rejected(req, rej, nil)
		return
	}
	redrive := status == StatusFailed || status == StatusDead
	action, body := wire.ActionAccepted, Reply{EventID: req.eventID, Status: "accepted"}
	if redrive {
		action = wire.ActionRetryAccepted
		body.Retry = true
		if detail == nil {
			detail = map[string]any{}
		}
		detail["previous_status"] = string(status)
	}
	rec, err := r.decidedEvent(req, action, detail, redrive)
	if err == nil {
		var span trace.Span
		if req.trace != nil {
			span = r.startSend(req.trace.ctx, rec.Topic)
		}
		produceStart := time.Now()
		err = r.produce(rec)
		produceSeconds.Observe(time.Since(produceStart).Seconds())
		if span != nil {
			endSend(span, rec, err)
		}
	}
	if err != nil {
		r.unstored(req, err)
		return
	}
	reply(req.c, http.StatusAccepted, body)
	if redrive {
		duplicatesTotal.WithLabelValues(req.sourceName, "redrive").Inc()
	}
	observe(req, http.StatusAccepted)
}

// duplicate produces the DUPLICATE decision about req to the audit topic
// and waits for it. The request produces no event for the decision to
// travel with, so when the record is not acknowledged duplicate answers
// 503 itself and reports false: a 2xx or 409 goes out only once its
// decision is durable.
func (r *Receiver) duplicate(req *request, reason string, status int, detail map[string]any) bool {
	rec := r.auditRecord(req, wire.ActionDuplicate, reason, status, detail)
	err := r.awaitAudit(req, rec)
	if err == nil {
		return true
	}
	r.auditFailures.failed(auditKindDuplicate, rec, err)
	r.unavailable(req, "the decision could not be recorded; retry later",
		map[string]any{"error": err.Error(), "unrecorded_action": string(wire.ActionDuplicate)})
	return false
}

// unstored answers 503 for an event the broker did not acknowledge.
func (r *Receiver) unstored(req *request, err error) {
	// Stopped waiting: the producer may still hold the record, and with it
	// the body's buffer.
	req.bodyHeld = errors.Is(err, errProduceTimeout)
	r.logFor(req).Error("produce failed", "request_id", req.requestID, "event_id", req.eventID, "error", err)
	r.unavailable(req, "the event could not be stored; retry later", map[string]any{"error": err.Error()})
}

// unavailable answers 503 with Retry-After.
func (r *Receiver) unavailable(req *request, message string, detail map[string]any) {
	rej := unavailable(message, r.cfg.RetryAfter)
	r.logFor(req).Warn("request not accepted", "request_id", req.requestID, "source", req.sourceName, "event_id", req.eventID, "status", rej.status, "code", rej.code)
	// The broker just failed us: waiting for this record too would
	// double the time to answer during an outage. It is sent all the
	// same and lands if the broker is back within the timeout.
	r.tryAudit(r.auditRecord(req, wire.ActionRejected, rej.code, rej.status, detail))
	rej.write(req.c)
	r.count(req, rej)
}

// decidedEvent is req's event record carrying its decision, action
// (ACCEPTED or RETRY_ACCEPTED), as the audit record JSON in the header
// wire.HeaderAudit: acknowledged together, durable together.
func (r *Receiver) decidedEvent(req *request, action wire.Action, detail map[string]any, redrive bool) (*kgo.Record, error) {
	if req.digest != "" {
		if detail == nil {
			detail = make(map[string]any, 1)
		}
		detail[detailSignedDigest] = req.digest
	}
	a, err := r.auditRecord(req, action, "", http.StatusAccepted, detail).Marshal()
	if err != nil {
		return nil, fmt.Errorf("ingest: %s audit record: %w", action, err)
	}
	return r.eventRecord(req, redrive, a), nil
}

func (r *Receiver) eventRecord(req *request, redrive bool, audit []byte) *kgo.Record {
	h := req.c.Request.Header
	var vals [11]string
	vals[0], vals[1], vals[2], vals[3] = req.eventID, req.src.cfg.Name, req.customerID, req.eventType
	vals[4], vals[5] = req.receivedAt.Format(time.RFC3339Nano), req.requestID
	vals[6] = h.Get("Content-Type")
	vals[7], vals[8] = req.eventTraceHeaders()
	if redrive {
		vals[9] = "true"
	}
	if req.floor > 0 && !redrive {
		vals[10] = strconv.Itoa(int(req.floor))
	}
	// One allocation holds every header value (and the key).
	size, n := len(req.customerID), 0
	for _, v := range vals {
		if v != "" {
			size += len(v)
			n++
		}
	}
	buf := make([]byte, 0, size)
	hs := make([]kgo.RecordHeader, 0, n+1)
	for i, v := range vals {
		if v != "" {
			buf = append(buf, v...)
			hs = append(hs, kgo.RecordHeader{Key: eventHeaderKeys[i], Value: buf[len(buf)-len(v) : len(buf) : len(buf)]})
		}
	}
	hs = append(hs, kgo.RecordHeader{Key: wire.HeaderAudit, Value: audit})
	buf = append(buf, req.customerID...)
	return &kgo.Record{
		Topic:   r.cfg.Topics.Events,
		Key:     buf[len(buf)-len(req.customerID) : len(buf) : len(buf)],
		Value:   req.body,
		Headers: hs,
	}
}

// eventHeaderKeys are the event record's headers, in the order eventRecord
// fills them.
var eventHeaderKeys = [11]string{
	wire.HeaderEventID, wire.HeaderSource, wire.HeaderCustomerID, wire.HeaderEventType,
	wire.HeaderReceivedAt, wire.HeaderRequestID, wire.HeaderContentType, wire.HeaderTraceparent,
	wire.HeaderTracestate, wire.HeaderRedrive, wire.HeaderBucket,
}

// errProduceTimeout: the broker neither acknowledged nor refused in time.
var errProduceTimeout = errors.New("ingest: broker did not acknowledge in time")

// produce writes rec and waits for the broker's acknowledgement. The
// producer fails a record at its delivery timeout (ProduceTimeout; see
// internal/kafka), in flight or not, so the promise normally answers within
// it; the wait is bounded here as well, so that no request outlives its
// timeout whatever the client does. A request answered 503 whose record
// reached the broker after all is retried by the provider and deduped by the
// consumer's claim.
//
// The context bounds the wait for room in the producer's buffer, which
// Produce does before it returns. (The fast path, flight, never waits for
// room: a full buffer sends it here.)
func (r *Receiver) produce(rec *kgo.Record) error {
	w := waiters.Get().(*waiter)
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.ProduceTimeout)
	defer cancel()
	r.cfg.Producer.Produce(ctx, rec, w.promise)
	w.timer.Reset(r.cfg.ProduceTimeout + promiseGrace)
	select {
	case err := <-w.done:
		w.timer.Stop()
		waiters.Put(w)
		return err
	case <-w.timer.C:
		// The promise may still come: this waiter is not reused.
		return errProduceTimeout
	}
}

// waiter is what a request waits on for one produce, reused across
// requests (its allocations showed in the profile when each request made
// two produces).
type waiter struct {
	done    chan error
	promise func(*kgo.Record, error)
	timer   *time.Timer
}

var waiters = sync.Pool{New: func() any {
	w := &waiter{done: make(chan error, 1), timer: time.NewTimer(time.Hour)}
	w.timer.Stop()
	w.promise = func(_ *kgo.Record, err error) { w.done <- err }
	return w
}}

func (r *Receiver) rejected(req *request, rej *rejection, detail map[string]any) {
	key := rejectionKey{reason: rej.code}
	if req.src != nil {
		key.source = req.src.cfg.Name
	}
	// A request whose signature vouches for its sender is recorded alone,
	// always; an anonymous one within its (source, reason)'s rate.
	anonymous := !req.verified || !req.src.signed
	if anonymous && !r.rejections.admit(key, rej.status, req.requestID, req.receivedAt) {
		// Past the rate of its source and reason: counted, and in the
		// next summary record, but neither written nor logged alone.
		rejectionsSummarized.WithLabelValues(sourceLabel(req), rej.code).Inc()
		rej.write(req.c)
		r.count(req, rej)
		return
	}
	source := req.sourceName
	if req.src == nil {
		source = quoteName(source) // a stranger's, and of any length
	}
	log := r.logFor(req)
	if rej.status >= 500 {
		log.Warn("request not accepted", "request_id", req.requestID, "source", source, "event_id", req.eventID, "status", rej.status, "code", rej.code)
	} else {
		log.Info("request rejected", "request_id", req.requestID, "source", source, "event_id", req.eventID, "status", rej.status, "code", rej.code)
	}
	// Best effort: the rejection stands whether or not its record lands
	// (a failure is counted and logged). It is awaited all the same, so
	// that the answer follows its record when the topic works.
	r.awaitRejection(req, r.auditRecord(req, wire.ActionRejected, rej.code, rej.status, detail))
	rej.write(req.c)
	r.count(req, rej)
}

func (r *Receiver) count(req *request, rej *rejection) {
	rejectionsTotal.WithLabelValues(sourceLabel(req), rej.code).Inc()
	observe(req, rej.status)
}

// sourceLabel is req's source as a metric label: bounded, never a
// stranger's path segment.
func sourceLabel(req *request) string {
	if req.src == nil {
		return "unknown"
	}
	return req.src.cfg.Name
}

// summarized writes a summary of rejections (rejectaudit.go), best
// effort as any rejection's record, without waiting.
func (r *Receiver) summarized(rec *wire.AuditRecord) {
	sum := rec.Detail[wire.DetailSummary].(map[string]any)
	r.log.Info("rejections summarized", "source", rec.Source, "code", rec.Reason, "count", sum["count"],
		"first_seen", sum["first_seen"], "last_seen", sum["last_seen"], "audit_id", rec.AuditID)
	r.tryAudit(rec)
}

// auditRecord is the receiver's decision about req. Its event id is set
// only once the signature was verified (check), so the record's key
// (wire.AuditRecord.Key) is the authenticated source/event_id or the
// server's request id. detail is the caller's to give away: the client's
// request id is added to it.
func (r *Receiver) auditRecord(req *request, action wire.Action, reason string, status int, detail map[string]any) *wire.AuditRecord {
	if req.trace != nil {
		detail = req.withTraceID(detail)
	}
	if req.clientRequestID != "" {
		if detail == nil {
			detail = make(map[string]any, 1)
		}
		detail[wire.DetailClientRequestID] = req.clientRequestID
	}
	rec := &wire.AuditRecord{
		SchemaVersion: wire.AuditSchemaVersion,
		AuditID:       newID(),
		EventID:       req.eventID,
		CustomerID:    req.customerID,
		EventType:     req.eventType,
		Action:        action,
		Reason:        reason,
		HTTPStatus:    status,
		Actor:         wire.ActorIngest,
		Instance:      r.cfg.Instance,
		RequestID:     req.requestID,
		At:            req.receivedAt, // before anything the consumer does with the event
		Detail:        detail,
	}
	if req.src != nil {
		rec.Source = req.src.cfg.Name
	}
	return rec
}

// awaitAudit produces rec, a decision about req, to the audit topic and
// waits for the broker.
func (r *Receiver) awaitAudit(req *request, rec *wire.AuditRecord) error {
	kr, err := rec.KafkaRecord(r.cfg.Topics.Audit)
	if err != nil {
		return err
	}
	var span trace.Span
	if req.trace != nil {
		span = r.startSend(req.trace.ctx, kr.Topic)
	}
	start := time.Now()
	err = r.produce(kr)
	auditSeconds.Observe(time.Since(start).Seconds())
	if span != nil {
		endSend(span, kr, err)
	}
	return err
}

// awaitRejection produces rec, a REJECTED record, to the audit topic with
// the rejection producer and waits for it up to ProduceTimeout, so that
// the answer follows its record when the topic works. When the wait ends
// first the record stays buffered: it lands when the broker is back
// within the rejection producer's delivery timeout, and is counted as not
// published only if it does not.
func (r *Receiver) awaitRejection(req *request, rec *wire.AuditRecord) {
	kr, err := rec.KafkaRecord(r.cfg.Topics.Audit)
	if err != nil {
		r.auditFailures.failed(auditKindRejected, rec, err)
		return
	}
	var span trace.Span
	if req.trace != nil {
		span = r.startSend(req.trace.ctx, kr.Topic) // ends with the promise, which may come after the answer
	}
	start := time.Now()
	done := make(chan struct{})
	r.cfg.RejectionProducer.TryProduce(context.Background(), kr, func(sent *kgo.Record, err error) {
		if err != nil {
			r.auditFailures.failed(auditKindRejected, rec, err)
		}
		if span != nil {
			endSend(span, sent, err)
		}
		close(done)
	})
	t := time.NewTimer(r.cfg.ProduceTimeout)
	select {
	case <-done:
	case <-t.C:
	}
	t.Stop()
	auditSeconds.Observe(time.Since(start).Seconds())
}

// tryAudit produces rec, a REJECTED record nobody waits for, to the audit
// topic with the rejection producer. TryProduce: it must not hold up the
// reply while the buffer is full (then it is counted as not published).
func (r *Receiver) tryAudit(rec *wire.AuditRecord) {
	kr, err := rec.KafkaRecord(r.cfg.Topics.Audit)
	if err != nil {
		r.auditFailures.failed(auditKindRejected, rec, err)
		return
	}
	r.cfg.RejectionProducer.TryProduce(context.Background(), kr, func(_ *kgo.Record, err error) {
		if err != nil {
			r.auditFailures.failed(auditKindRejected, rec, err)
		}
	})
}

func checkContentType(ct string) string {
	switch ct {
	case "application/json", "application/json; charset=utf-8":
		return ""
	case "":
		return "Content-Type is required and must be application/json"
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return "Content-Type is not a valid media type"
	}
	if mt != "application/json" && !(strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")) {
		return "Content-Type must be application/json, got " + mt
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return "charset must be utf-8, got " + cs
	}
	return ""
}

func signatureCause(err error) string {
	switch {
	case errors.Is(err, signature.ErrMissing):
		return "missing"
	case errors.Is(err, signature.ErrMalformed):
		return "malformed"
	case errors.Is(err, signature.ErrStale):
		return "stale"
	case errors.Is(err, signature.ErrMismatch):
		return "mismatch"
	}
	return "invalid"
}

func jsonProblem(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("at byte %d: %s", se.Offset, se.Error())
	}
	return err.Error()
}

func quoteName(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return fmt.Sprintf("%q", s)
}
