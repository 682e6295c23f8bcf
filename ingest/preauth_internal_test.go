package ingest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"testing"
	"testing/iotest"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hookstream/hookstream/internal/wire"
)

// postFrom sends the flight tests' event to engine from the client
// address addr, signed or not.
func postFrom(engine *gin.Engine, addr string, signed bool) *httptest.ResponseRecorder {
	body := []byte(`{"event_id":"evt_f","customer_id":"cus_f","event_type":"t","payload":{}}`)
	sig := ""
	if signed {
		sig = genericSignature(flightSecret, body)
	}
	req := genericRequest(body, sig)
	req.RemoteAddr = addr
	w := httptest.NewRecorder()
	engine.ServeHTTP(w, req)
	return w
}

// TestPreAuthBudgetPerAddress: requests that fail before authentication
// are budgeted per client address. An address past its budget is refused
// 429 address_limited before its request is read, while another
// address's signed requests go on being accepted: after that address's
// flood, beyond the budget's burst (verified requests never spend it),
// after failures from its own address (it delivered verified requests
// lately), and after a flood from more addresses than the table holds.
// (Before, nothing limited the failing address, and the source's own rate
// limit was what an unsigned request spent.)
func TestPreAuthBudgetPerAddress(t *testing.T) {
	p := newScriptedProducer(t)
	cfg := flightConfig(p, nil, time.Second)
	cfg.PreAuth = PreAuthConfig{PerSecond: 0.001, Burst: 3, MaxAddresses: 8}
	r, engine := genericReceiver(t, flightSecret, cfg)
	const attacker, provider = "198.51.100.1:4000", "203.0.113.7:5000"

	for i := range 3 {
		if w := postFrom(engine, attacker, false); w.Code != http.StatusUnauthorized {
			t.Fatalf("unsigned request %d: status %d %s, want 401", i, w.Code, w.Body)
		}
	}
	w := postFrom(engine, attacker, false)
	if w.Code != http.StatusTooManyRequests || !bytes.Contains(w.Body.Bytes(), []byte(CodeAddressLimited)) {
		t.Fatalf("unsigned request past the budget: status %d %s, want 429 %s", w.Code, w.Body, CodeAddressLimited)
	}
	if ra, err := strconv.Atoi(w.Header().Get("Retry-After")); err != nil || ra < 1 {
		t.Errorf("Retry-After %q", w.Header().Get("Retry-After"))
	}
	// Its signed requests are refused too: the budget is the address's.
	if w := postFrom(engine, attacker, true); w.Code != http.StatusTooManyRequests {
		t.Errorf("signed request from the refused address: status %d, want 429", w.Code)
	}

	for i := range 10 { // more than the burst: verified requests cost nothing
		if w := postFrom(engine, provider, true); w.Code != http.StatusAccepted {
			t.Fatalf("provider's request %d: status %d %s, want 202", i, w.Code, w.Body)
		}
	}
	// Failures sent from the provider's address (anyone can make a
	// provider deliver with the wrong secret) do not refuse it: it sent
	// a verified request lately.
	for i := range 10 {
		if w := postFrom(engine, provider, false); w.Code != http.StatusUnauthorized {
			t.Fatalf("unsigned request %d from the provider's address: status %d, want 401", i, w.Code)
		}
	}
	if w := postFrom(engine, provider, true); w.Code != http.StatusAccepted {
		t.Errorf("provider after failures from its address: status %d %s, want 202", w.Code, w.Body)
	}

	evictions := testutil.ToFloat64(preAuthEvictions)
	for i := range 100 {
		addr := netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}).String() + ":1"
		for range 4 {
			postFrom(engine, addr, false)
		}
	}
	if got := testutil.ToFloat64(preAuthEvictions) - evictions; got == 0 {
		t.Errorf("100 failing addresses into a table of 8 evicted none")
	}
	tbl := r.sources["generic"].addresses
	tbl.mu.Lock()
	size := len(tbl.failing)
	tbl.mu.Unlock()
	if size > 8 {
		t.Errorf("the table of failing addresses holds %d, want at most 8", size)
	}
	if w := postFrom(engine, provider, true); w.Code != http.StatusAccepted {
		t.Errorf("provider after a flood from 100 addresses: status %d %s, want 202", w.Code, w.Body)
	}
}

// TestClientAddress: the budget's address is the connection's peer; a
// trusted proxy's X-Forwarded-For names the client, read from the right
// so that what the client wrote itself is never believed; IPv6 counts by
// /64.
func TestClientAddress(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	for _, c := range []struct {
		name, peer string
		xff        []string
		trusted    []netip.Prefix
		want       string
	}{
		{"peer", "198.51.100.1:1234", nil, nil, "198.51.100.1"},
		{"forwarded-for ignored from an untrusted peer", "198.51.100.1:1234", []string{"203.0.113.7"}, nil, "198.51.100.1"},
		{"forwarded-for ignored from a peer not in the trusted list", "198.51.100.1:1234", []string{"203.0.113.7"}, proxies, "198.51.100.1"},
		{"trusted proxy", "10.0.0.1:80", []string{"203.0.113.7"}, proxies, "203.0.113.7"},
		{"a spoofed first hop is not the client", "10.0.0.1:80", []string{"203.0.113.7, 198.51.100.9"}, proxies, "198.51.100.9"},
		{"proxies in a chain", "10.0.0.1:80", []string{"198.51.100.9, 10.0.0.2", "10.0.0.3"}, proxies, "198.51.100.9"},
		{"only proxies", "10.0.0.1:80", []string{"10.0.0.2"}, proxies, "10.0.0.2"},
		{"no forwarded-for", "10.0.0.1:80", nil, proxies, "10.0.0.1"},
		{"garbage hop", "10.0.0.1:80", []string{"not-an-address"}, proxies, "invalid IP"},
		{"IPv6 by /64", "[2001:db8:1:2:3:4:5:6]:443", nil, nil, "2001:db8:1:2::"},
		{"IPv4-mapped", "[::ffff:198.51.100.1]:1", nil, nil, "198.51.100.1"},
		{"unreadable peer", "@", nil, nil, "invalid IP"},
	} {
		req := httptest.NewRequest(http.MethodPost, "/", nil)
		req.RemoteAddr = c.peer
		for _, v := range c.xff {
			req.Header.Add("X-Forwarded-For", v)
		}
		if got := clientAddress(req, c.trusted).String(); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}

// TestBodyReservationGrowsWithArrivedBytes: a body claiming 1 MiB holds
// the claim cap until more arrives, then grows with what arrived (each
// growth at most doubling), and gives everything back when it ends.
func TestBodyReservationGrowsWithArrivedBytes(t *testing.T) {
	budget := &bodyBudget{open: 64 << 20, reserved: 64 << 20}
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	b := body{budget: budget}
	go func() { done <- b.read(pr, 1<<20, 1<<20, 16<<10) }()

	if _, err := pw.Write([]byte("{")); err != nil { // returns once read
		t.Fatal(err)
	}
	if got := budget.bytes.Load(); got != 16<<10 {
		t.Errorf("after 1 byte of a 1 MiB claim: %d bytes held, want the 16 KiB cap", got)
	}
	if _, err := pw.Write(make([]byte, 100<<10)); err != nil {
		t.Fatal(err)
	}
	if got := budget.bytes.Load(); got != 128<<10 {
		t.Errorf("after 100 KiB: %d bytes held, want 128 KiB", got)
	}
	pw.CloseWithError(io.ErrUnexpectedEOF)
	if err := <-done; err != io.ErrUnexpectedEOF {
		t.Errorf("read: %v, want the connection's error", err)
	}
	b.release(false)
	if n, got := budget.bodies.Load(), budget.bytes.Load(); n != 0 || got != 0 {
		t.Errorf("after release: %d bodies hold %d bytes, want none", n, got)
	}
}

// TestBodyRead: bodies of known and unknown length are read whole, up to
// the limit.
func TestBodyRead(t *testing.T) {
	for _, c := range []struct {
		name          string
		size          int
		contentLength int64
		limit         int64
		wantErr       error
	}{
		{"empty", 0, 0, 100, nil},
		{"small, known", 10, 10, 100, nil},
		{"at the limit, known", 100 << 10, 100 << 10, 100 << 10, nil},
		{"at the limit, unknown", 100 << 10, -1, 100 << 10, nil},
		{"past the limit, unknown", 100<<10 + 1, -1, 100 << 10, errTooLarge},
		{"larger than the pooled classes", 3<<20 + 7, -1, 4 << 20, nil},
	} {
		budget := &bodyBudget{open: 64 << 20, reserved: 64 << 20}
		want := bytes.Repeat([]byte("x"), c.size)
		b := body{budget: budget}
		// Short reads, as from a network.
		err := b.read(iotest.HalfReader(bytes.NewReader(want)), c.contentLength, c.limit, 1<<10)
		if err != c.wantErr {
			t.Errorf("%s: %v, want %v", c.name, err, c.wantErr)
		}
		if err == nil && !bytes.Equal(b.bytes(), want) {
			t.Errorf("%s: read %d bytes, want %d", c.name, len(b.bytes()), len(want))
		}
		b.release(false)
		if got := budget.bytes.Load(); got != 0 {
			t.Errorf("%s: %d bytes held after release", c.name, got)
		}
	}
}

// TestRejectionAudit: rejections get records of their own within their
// (source, reason)'s rate; the others are counted into one summary per
// interval, with the first and last seen and sample request ids, and
// close writes what is pending.
func TestRejectionAudit(t *testing.T) {
	emitted := make(chan map[string]any, 10)
	a := newRejectionAudit(RejectionAuditConfig{PerSecond: 1, Burst: 2, Interval: time.Hour, Samples: 2}, "test",
		func(rec *wire.AuditRecord) { emitted <- summaryOf(t, rec) })
	clock := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	a.now = func() time.Time { return clock }
	k := rejectionKey{source: "generic", reason: CodeSignatureInvalid}

	var own int
	for i := range 10 {
		if a.admit(k, 401, "req-"+strconv.Itoa(i), clock.Add(time.Duration(i)*time.Millisecond)) {
			own++
		}
	}
	if own != 2 {
		t.Errorf("%d of 10 rejections recorded alone, want the burst of 2", own)
	}
	if !a.admit(rejectionKey{reason: CodeUnknownSource}, 404, "other", clock) {
		t.Errorf("another (source, reason) has a budget of its own")
	}
	clock = clock.Add(time.Second)
	if !a.admit(k, 401, "req-later", clock) {
		t.Errorf("a second later the budget has one token again")
	}
	a.close()
	select {
	case sum := <-emitted:
		if sum["count"] != float64(8) || sum["first_seen"] != "2026-12-01T00:00:00.002Z" || sum["last_seen"] != "2026-12-01T00:00:00.009Z" {
			t.Errorf("summary %v, want 8 rejections from .002 to .009", sum)
		}
		if ids, _ := sum["sample_request_ids"].([]any); len(ids) != 2 || ids[0] != "req-2" {
			t.Errorf("samples %v, want the first 2 summarized", sum["sample_request_ids"])
		}
	default:
		t.Fatal("close wrote no summary")
	}
	if len(emitted) != 0 {
		t.Errorf("%d more summaries, want one", len(emitted))
	}
}

// TestRejectionAuditInterval: a summary is written when its interval
// ends, without waiting for the next rejection.
func TestRejectionAuditInterval(t *testing.T) {
	emitted := make(chan map[string]any, 10)
	a := newRejectionAudit(RejectionAuditConfig{PerSecond: 0.001, Burst: 1, Interval: 10 * time.Millisecond, Samples: 5}, "test",
		func(rec *wire.AuditRecord) { emitted <- summaryOf(t, rec) })
	defer a.close()
	k := rejectionKey{reason: CodeUnknownSource}
	for i := range 4 {
		a.admit(k, 404, "r"+strconv.Itoa(i), time.Now())
	}
	select {
	case sum := <-emitted:
		if sum["count"] != float64(3) {
			t.Errorf("summary %v, want 3 rejections", sum)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no summary within 10s of a 10ms interval")
	}
}

// summaryOf checks rec is a summary record and returns its summary, as
// the JSON reads.
func summaryOf(t *testing.T, rec *wire.AuditRecord) map[string]any {
	b, err := rec.Marshal()
	if err != nil {
		t.Error(err)
		return nil
	}
	var v struct{ Detail map[string]map[string]any }
	if err := json.Unmarshal(b, &v); err != nil {
		t.Error(err)
	}
	if rec.Action != wire.ActionRejected || rec.Instance != "test" || rec.RequestID == "" || rec.EventID != "" {
		t.Errorf("summary record %+v, want a REJECTED record of its own request id", rec)
	}
	return v.Detail["summary"]
}
