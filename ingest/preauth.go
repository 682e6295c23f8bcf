package ingest

import (
	"math"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// What a request may cost before its signature is verified.
//
// The source's own rate_limit guards what verified events cost downstream,
// so it is taken only after the signature: when it was taken first, two
// unsigned POSTs to a source with burst 2 made the provider's next signed
// delivery a 429 (GitHub does not retry; that delivery was lost).
//
// What an unverified request costs - reading its body, one HMAC per
// secret, a rejection - is budgeted per source and per client address, by
// a token bucket that only requests failing before or at the signature
// charge (415, 413, an unreadable body, 401). Two properties follow, and
// they are the point:
//
//   - A verified request costs its address nothing, so a provider's own
//     deliveries never run its bucket down, however many it sends (but
//     for a replay of a body under a new id, replayed_body: the provider
//     does not send those, a stranger with a captured delivery does).
//   - A bucket is its address's own: other addresses' failures never
//     refuse a request. There is deliberately no bucket shared by every
//     address of a source, which a flood from other addresses could empty.
//   - An address that delivered the source a new event lately is never
//     refused by its bucket (see allow): failures sent through a
//     provider's own addresses, which anyone can cause, do not refuse the
//     provider.
//
// The table of buckets is bounded (PreAuthConfig.MaxAddresses per source).
// Only addresses that failed are in it, and an entry whose bucket has
// refilled is dropped. When it is full, entries that refilled are swept and
// then a random one is evicted, which gives that address a full bucket:
// eviction can only make the receiver more lenient, never refuse someone.
// The cost is that an attacker with more addresses than the table holds is
// not limited per address; what bounds it then is the total of unverified
// body bytes (bodyBudget), the per-request cost of a rejection, and the
// audit records' own bound (rejectionAudit).
//
// Addresses that delivered a new event recently (admitEvent) are
// remembered apart, in a table only such deliveries write (so neither a
// flood nor a replayer can evict them): they may use the part of the body
// budget held back from everyone else.

// PreAuthConfig bounds what requests cost the receiver before their
// signature is verified. Zero fields take the defaults named.
type PreAuthConfig struct {
	// PerSecond and Burst are each (source, client address)'s budget of
	// requests that fail before or at the signature: a token bucket of
	// Burst tokens, PerSecond back a second. Past it the address gets 429
	// address_limited, before its request is read. Defaults 2 and 20.
	PerSecond float64
	Burst     int
	// MaxAddresses bounds each source's table of failing addresses.
	// Default 10000.
	MaxAddresses int
	// TrustedProxies are the peers whose X-Forwarded-For names the client.
	// Default none: the client is the connection's peer. Behind a proxy or
	// load balancer, list it, or every client shares the proxy's budget.
	TrustedProxies []netip.Prefix
	// ClaimBytes is the most a request's Content-Length alone makes the
	// receiver reserve for its body; more is reserved as bytes arrive.
	// Default 16 KiB.
	ClaimBytes int
	// MaxUnverifiedBodyBytes bounds the memory held by request bodies
	// whose signature is not verified yet, over all requests; a request
	// that would pass it gets 503 overloaded with Retry-After. Default
	// 64 MiB.
	MaxUnverifiedBodyBytes int64
	// VerifiedReserveBytes is the part of MaxUnverifiedBodyBytes only
	// requests from an address that sent the source a verified request
	// within VerifiedWindow may use. Default a quarter of it.
	VerifiedReserveBytes int64
	// VerifiedWindow is how long an address counts as verified after its
	// last verified request. Default 10 minutes.
	VerifiedWindow time.Duration
	// MaxVerifiedAddresses bounds each source's table of verified
	// addresses. Default 4096.
	MaxVerifiedAddresses int
}

// WithDefaults returns c with zero fields set to their defaults.
func (c PreAuthConfig) WithDefaults() PreAuthConfig {
	if c.PerSecond == 0 {
		c.PerSecond = 2
	}
	if c.Burst == 0 {
		c.Burst = 20
	}
	if c.MaxAddresses == 0 {
		c.MaxAddresses = 10000
	}
	if c.ClaimBytes == 0 {
		c.ClaimBytes = 16 << 10
	}
	if c.MaxUnverifiedBodyBytes == 0 {
		c.MaxUnverifiedBodyBytes = 64 << 20
	}
	if c.VerifiedReserveBytes == 0 {
		c.VerifiedReserveBytes = c.MaxUnverifiedBodyBytes / 4
	}
	if c.VerifiedWindow == 0 {
		c.VerifiedWindow = 10 * time.Minute
	}
	if c.MaxVerifiedAddresses == 0 {
		c.MaxVerifiedAddresses = 4096
	}
	return c
}

func (c PreAuthConfig) validate() string {
	switch {
	case c.PerSecond < 0 || math.IsInf(c.PerSecond, 0) || math.IsNaN(c.PerSecond):
		return "PreAuth.PerSecond must be positive"
	case c.Burst < 0:
		return "PreAuth.Burst must be positive"
	case c.MaxAddresses < 0 || c.MaxVerifiedAddresses < 0:
		return "PreAuth.MaxAddresses and MaxVerifiedAddresses must be positive"
	case c.ClaimBytes < 0:
		return "PreAuth.ClaimBytes must be positive"
	case c.MaxUnverifiedBodyBytes < 0:
		return "PreAuth.MaxUnverifiedBodyBytes must be positive"
	case c.VerifiedReserveBytes < 0 || c.VerifiedReserveBytes > c.MaxUnverifiedBodyBytes:
		return "PreAuth.VerifiedReserveBytes must be between 0 and MaxUnverifiedBodyBytes"
	case c.VerifiedWindow < 0:
		return "PreAuth.VerifiedWindow must be positive"
	}
	return ""
}

// clientAddress is the address a request's budget is kept under: the
// connection's peer or, when the peer is a trusted proxy, the rightmost
// address of X-Forwarded-For that is not one (what the proxy nearest the
// client saw; everything left of it the client may have written). An
// IPv6 address counts as its /64, which one subscriber usually holds
// whole. An address that cannot be read is the zero Addr, one shared
// bucket.
func clientAddress(r *http.Request, trusted []netip.Prefix) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	a := ap.Addr().Unmap()
	if len(trusted) > 0 && inPrefixes(trusted, a) {
		a = forwardedClient(r.Header.Values("X-Forwarded-For"), trusted, a)
	}
	if a.Is6() {
		if p, err := a.Prefix(64); err == nil {
			return p.Addr()
		}
	}
	return a
}

// forwardedClient walks X-Forwarded-For from the right past the trusted
// proxies; peer is the nearest one.
func forwardedClient(values []string, trusted []netip.Prefix, peer netip.Addr) netip.Addr {
	for i := len(values) - 1; i >= 0; i-- {
		v := values[i]
		for v != "" {
			hop := v
			if j := strings.LastIndexByte(v, ','); j >= 0 {
				hop, v = v[j+1:], v[:j]
			} else {
				v = ""
			}
			a, err := netip.ParseAddr(strings.TrimSpace(hop))
			if err != nil {
				// Not what a proxy writes: no client address to trust.
				return netip.Addr{}
			}
			a = a.Unmap()
			if !inPrefixes(trusted, a) {
				return a
			}
			peer = a
		}
	}
	return peer // every hop is a proxy of ours
}

func inPrefixes(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// addressTable is a source's per-address state: the budget of failing
// addresses, and the addresses that sent a verified request recently.
type addressTable struct {
	perSecond, burst float64
	maxFailing       int
	maxVerified      int
	window           int64 // nanoseconds

	failingLen atomic.Int64 // len(failing), read without the lock

	mu        sync.Mutex
	failing   map[netip.Addr]*addrBucket
	verified  map[netip.Addr]int64 // unix nanoseconds of the last verified request
	nextSweep int64
}

// addrBucket is a token bucket. Its tokens may fall below zero, so that
// the failures of requests let in at once are all charged (else opening
// many connections would multiply the budget), but by at most an hour of
// refill, so that a flood does not shut its address out for longer.
type addrBucket struct {
	tokens float64
	at     int64 // unix nanoseconds of tokens
}

func newAddressTable(c PreAuthConfig) *addressTable {
	return &addressTable{
		perSecond: c.PerSecond, burst: float64(c.Burst),
		maxFailing: c.MaxAddresses, maxVerified: c.MaxVerifiedAddresses,
		window:   int64(c.VerifiedWindow),
		failing:  make(map[netip.Addr]*addrBucket),
		verified: make(map[netip.Addr]int64),
	}
}

func (t *addressTable) refill(b *addrBucket, now int64) float64 {
	if now > b.at {
		b.tokens = min(t.burst, b.tokens+float64(now-b.at)/1e9*t.perSecond)
		b.at = now
	}
	return b.tokens
}

// allow reports whether a's budget lets a request in, and if not, when
// it will. An address that sent the source a verified request within the
// window is let in whatever its budget: a provider's delivery addresses
// also carry what anyone makes the provider send (a webhook configured
// with the wrong secret is a stranger's to create), and refusing them
// would refuse the provider's real deliveries with them.
func (t *addressTable) allow(a netip.Addr, now time.Time) (bool, time.Duration) {
	if t.failingLen.Load() == 0 {
		return true, 0 // the common case: nobody failed lately
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.failing[a]
	if b == nil {
		return true, 0
	}
	tokens := t.refill(b, now.UnixNano())
	if tokens >= t.burst {
		delete(t.failing, a) // a full bucket is no different from none
		t.failingLen.Store(int64(len(t.failing)))
		return true, 0
	}
	if tokens >= 1 || t.verifiedWithin(a, now) {
		return true, 0
	}
	if t.perSecond == 0 {
		return false, time.Hour
	}
	return false, time.Duration((1 - tokens) / t.perSecond * float64(time.Second))
}

// failed charges a request of a that failed before or at its signature.
func (t *addressTable) failed(a netip.Addr, now time.Time) {
	ns := now.UnixNano()
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.failing[a]
	if b == nil {
		if t.maxFailing == 0 {
			return
		}
		if len(t.failing) >= t.maxFailing {
			t.makeRoom(ns)
		}
		b = &addrBucket{tokens: t.burst, at: ns}
		t.failing[a] = b
		t.failingLen.Store(int64(len(t.failing)))
	}
	t.refill(b, ns)
	b.tokens = max(b.tokens-1, -3600*t.perSecond)
}

// makeRoom frees one entry of the full failing table: those refilled
// already, at most once a second (a sweep reads them all), else a random
// one (its address starts again with a full bucket).
func (t *addressTable) makeRoom(now int64) {
	if now >= t.nextSweep {
		t.nextSweep = now + int64(time.Second)
		for a, b := range t.failing {
			if t.refill(b, now) >= t.burst {
				delete(t.failing, a)
			}
		}
		if len(t.failing) < t.maxFailing {
			return
		}
	}
	for a := range t.failing {
		delete(t.failing, a)
		preAuthEvictions.Inc()
		return
	}
}

// verifiedAt records that a delivered a new event (admitEvent). Only
// those write this table, so no flood can push a provider out of it.
func (t *addressTable) verifiedAt(a netip.Addr, now time.Time) {
	ns := now.UnixNano()
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.verified[a]; !ok && len(t.verified) >= t.maxVerified {
		if t.maxVerified == 0 {
			return
		}
		for old, at := range t.verified {
			if ns-at > t.window {
				delete(t.verified, old)
			}
		}
		for old := range t.verified {
			if len(t.verified) < t.maxVerified {
				break
			}
			delete(t.verified, old)
		}
	}
	t.verified[a] = ns
}

// recentlyVerified reports whether a sent a verified request within the
// window.
func (t *addressTable) recentlyVerified(a netip.Addr, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.verifiedWithin(a, now)
}

// verifiedWithin is recentlyVerified with t.mu held.
func (t *addressTable) verifiedWithin(a netip.Addr, now time.Time) bool {
	at, ok := t.verified[a]
	return ok && now.UnixNano()-at <= t.window
}
