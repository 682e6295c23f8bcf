package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"golang.org/x/time/rate"
)

// authFailures counts refused requests by why: missing (no bearer
// token), wrong (a token, not the one), throttled (refused unchecked: the
// client failed too often).
var authFailures = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "hookstream_admin_auth_failures_total",
	Help: "Admin API requests refused, by reason: missing (no bearer token), wrong (another token), throttled (the client failed too often and was not checked).",
}, []string{"reason"})

// Defaults of the throttle on failed authentications.
const (
	DefaultAuthFailureBurst = 10
	DefaultAuthFailureEvery = 6 * time.Second
	// maxClients bounds the clients the throttle remembers.
	maxClients = 10000
)

// constantTimeCompare is subtle.ConstantTimeCompare, a variable so that a
// test can see what it is given.
var constantTimeCompare = subtle.ConstantTimeCompare

// authenticator checks the bearer token and throttles clients that fail.
type authenticator struct {
	// digest of the token: requests are compared by digest, so that the
	// comparison takes as long whatever the length of what is sent and
	// tells nothing of the token's length (ConstantTimeCompare returns at
	// once on a length mismatch).
	digest   [sha256.Size]byte
	log      *slog.Logger
	throttle *throttle

	logLimit      *rate.Limiter // failed authentications logged, over all clients
	logMu         sync.Mutex
	logSuppressed int
}

func newAuthenticator(cfg Config) *authenticator {
	burst, every := cfg.AuthFailureBurst, cfg.AuthFailureEvery
	if burst <= 0 {
		burst = DefaultAuthFailureBurst
	}
	if every <= 0 {
		every = DefaultAuthFailureEvery
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	// Every series from the start, at 0, so that a rate or an alert on
	// one has data before the first failure.
	for _, reason := range []string{"missing", "wrong", "throttled"} {
		authFailures.WithLabelValues(reason)
	}
	return &authenticator{
		digest:   sha256.Sum256([]byte(cfg.Token)),
		log:      log,
		throttle: newThrottle(burst, every),
		logLimit: rate.NewLimiter(rate.Every(time.Second), 20),
	}
}

// bearer returns the token of an Authorization header of the Bearer
// scheme, whose name is case-insensitive (RFC 9110, 11.1), and whether
// there was one.
func bearer(header string) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

func (a *authenticator) matches(token string) bool {
	got := sha256.Sum256([]byte(token))
	return constantTimeCompare(got[:], a.digest[:]) == 1
}

// sessionCall marks a request's context as a console session's call.
type sessionCall struct{}

// ForSession marks ctx as the context of a call made in-process on behalf
// of a console session, which the console authenticated by its cookie (an
// unguessable id, so that letting it through is no oracle for guesses):
// the throttle of failed authentications does not refuse it, though the
// bearer token is still checked. Behind a proxy every operator has the
// proxy's address, and one stranger's wrong tokens through it had every
// live session's pages answer 429 (docs/design.md, "Sessions"). Never
// for the login, whose token is the guess the throttle is for.
func ForSession(ctx context.Context) context.Context {
	return context.WithValue(ctx, sessionCall{}, true)
}

// handle is the middleware in front of every admin route.
func (a *authenticator) handle(c *gin.Context) {
	client := clientKey(c.Request.RemoteAddr)
	session := c.Request.Context().Value(sessionCall{}) != nil
	if wait := a.throttle.blocked(client, time.Now()); !session && wait > 0 {
		authFailures.WithLabelValues("throttled").Inc()
		c.Header("Retry-After", strconv.Itoa(int((wait+time.Second-1)/time.Second)))
		fail(c, http.StatusTooManyRequests, "too_many_failures", "too many failed authentications from this address; retry later")
		return
	}
	token, ok := bearer(c.GetHeader("Authorization"))
	reason := "missing"
	if ok {
		if a.matches(token) {
			c.Next()
			return
		}
		reason = "wrong"
	}
	authFailures.WithLabelValues(reason).Inc()
	// Only a wrong token is a guess, and only guesses spend the client's
	// failures: a request without a token learns nothing, and counted
	// against its address it would let anyone sharing that address (a
	// proxy's, a NAT's) shut out the operators who hold the token, as it
	// shut out a contract checker's authenticated requests.
	throttled := reason == "wrong" && a.throttle.failed(client, time.Now())
	a.logFailure(c, client, reason, throttled)
	c.Header("WWW-Authenticate", `Bearer realm="hookstream-admin"`)
	fail(c, http.StatusUnauthorized, "unauthorized", "a valid bearer token is required")
}

// logFailure logs a failed authentication. Many clients failing at once
// would flood the log, so lines are limited over all clients; the next
// line says how many were left out.
func (a *authenticator) logFailure(c *gin.Context, client, reason string, throttled bool) {
	a.logMu.Lock()
	if !a.logLimit.Allow() {
		a.logSuppressed++
		a.logMu.Unlock()
		return
	}
	suppressed := a.logSuppressed
	a.logSuppressed = 0
	a.logMu.Unlock()
	a.log.Warn("admin API: authentication failed", "reason", reason, "client", client,
		"method", c.Request.Method, "path", c.Request.URL.Path, "now_throttled", throttled, "not_logged_before", suppressed)
}

// clientKey is the address a client is throttled by: the connection's
// peer (never a header a client writes, such as X-Forwarded-For), an IPv6
// address by its /64, which one host commonly holds whole.
func clientKey(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return host
	}
	if ip.To4() == nil {
		return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
	return ip.String()
}

// throttle is a token bucket of failures per client: burst failures, then
// one per every; a client with no failure left is refused without a check
// until one has come back.
type throttle struct {
	burst   int
	every   time.Duration
	mu      sync.Mutex
	clients map[string]*rate.Limiter
}

func newThrottle(burst int, every time.Duration) *throttle {
	return &throttle{burst: burst, every: every, clients: map[string]*rate.Limiter{}}
}

// blocked returns how long client must wait before it may try again; 0
// when it may try now.
func (t *throttle) blocked(client string, now time.Time) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.lookup(client)
	if l == nil || l.TokensAt(now) >= 1 {
		return 0
	}
	return time.Duration((1 - l.TokensAt(now)) * float64(t.every))
}

// failed takes one of client's failures and reports whether it has none
// left.
func (t *throttle) failed(client string, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.clients) >= maxClients && t.clients[client] == nil {
		t.forgetRecovered(now)
	}
	l := t.lookup(client)
	if l == nil {
		if len(t.clients) >= maxClients {
			client = others
		}
		l = rate.NewLimiter(rate.Every(t.every), t.burst)
		t.clients[client] = l
	}
	l.AllowN(now, 1)
	return l.TokensAt(now) < 1
}

// others is the bucket that clients share once maxClients are remembered
// and every one of them is still failing: newcomers then share it rather
// than grow the map without bound.
const others = "(others)"

// lookup is client's bucket, the shared one when client is not
// remembered and there is no room for it; nil when it has none yet.
func (t *throttle) lookup(client string) *rate.Limiter {
	if l := t.clients[client]; l != nil {
		return l
	}
	if len(t.clients) >= maxClients {
		return t.clients[others]
	}
	return nil
}

// forgetRecovered drops clients whose buckets are full again: they are as
// a client never seen.
func (t *throttle) forgetRecovered(now time.Time) {
	for k, l := range t.clients {
		if l.TokensAt(now) >= float64(t.burst) {
			delete(t.clients, k)
		}
	}
}
