package ingest_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/hookstream/hookstream/ingest"
)

// signedLimited returns the headers of a request to the limitedsig source
// (burst 2) signed with its secret.
func signedLimited(t *testing.T, eventID string, body []byte) http.Header {
	return merge(jsonHeaders("X-Event-Id", eventID, "X-Customer-Id", "cus_l"),
		sign(t, "hmac-sha256", limitedSecret, "", body, time.Now(), "X-Signature", "hex"))
}

// TestUnsignedRequestsDoNotSpendTheRateLimit: a source's rate limit is
// spent by verified requests only. Two unsigned POSTs to a source with
// burst 2 once made the provider's next signed delivery a 429 (GitHub
// does not retry: it was lost); now both signed deliveries after them are
// accepted, and the limit still holds for verified ones.
func TestUnsignedRequestsDoNotSpendTheRateLimit(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	body := []byte(`{"n":1}`)
	for range 2 {
		if status, _, out := tb.post("/webhooks/limitedsig", jsonHeaders("X-Event-Id", "junk", "X-Customer-Id", "c"), body); status != http.StatusUnauthorized {
			t.Fatalf("unsigned: status %d %s, want 401", status, out)
		}
	}
	for _, id := range []string{"evt_l1", "evt_l2"} {
		// A body of its own: the same signed body under another id is a
		// replay (replay.go).
		body := []byte(`{"n":"` + id + `"}`)
		if status, _, out := tb.post("/webhooks/limitedsig", signedLimited(t, id, body), body); status != http.StatusAccepted {
			t.Errorf("signed %s after two unsigned requests: status %d %s, want 202", id, status, out)
		}
	}
	status, h, out := tb.post("/webhooks/limitedsig", signedLimited(t, "evt_l3", body), body)
	if status != http.StatusTooManyRequests || decodeError(t, out).Error.Code != ingest.CodeRateLimited || h.Get("Retry-After") == "" {
		t.Errorf("third signed request: status %d %s (Retry-After %q), want 429 rate_limited: the burst of 2 is spent", status, out, h.Get("Retry-After"))
	}
	if n := len(tb.events()); n != 2 {
		t.Errorf("%d events stored, want the 2 accepted", n)
	}
}

// slowBody opens a connection to the test server and sends a request to
// path claiming contentLength bytes of body, and only the first byte of
// it, so that the handler sits reading the rest. Closing the connection
// ends the request.
func (tb *testBundle) slowBody(path string, contentLength int, header http.Header) net.Conn {
	tb.t.Helper()
	u, err := url.Parse(tb.url)
	if err != nil {
		tb.t.Fatal(err)
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		tb.t.Fatal(err)
	}
	tb.t.Cleanup(func() { _ = conn.Close() }) // closed already, when the test ended the request
	w := bufio.NewWriter(conn)
	fmt.Fprintf(w, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n", path, u.Host, contentLength)
	if err := header.Write(w); err != nil {
		tb.t.Fatal(err)
	}
	if _, err := w.WriteString("\r\n{"); err != nil {
		tb.t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		tb.t.Fatal(err)
	}
	return conn
}

// waitBodies waits until the receiver holds unverified bodies of exactly
// n requests and returns the bytes they hold.
func (tb *testBundle) waitBodies(n int64) int64 {
	tb.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, bytes := tb.rcv.UnverifiedBodies()
		if got == n {
			return bytes
		}
		if time.Now().After(deadline) {
			tb.t.Fatalf("%d requests hold unverified bodies (%d bytes), want %d", got, bytes, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSlowBodiesReserveWhatArrives: 100 connections that claim 1 MiB and
// send one byte hold at most the claim cap each (16 KiB), not the 100 MiB
// they claim, measured by the receiver's own count of the bytes it holds
// for unverified bodies; and all of it is given back when they go. (The
// receiver used to allocate the claimed length before reading a byte:
// 100 such connections raised the heap from 25 to 112 MiB.)
func TestSlowBodiesReserveWhatArrives(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	const conns, claim = 100, 1 << 20
	for range conns {
		tb.slowBody("/webhooks/generic", claim, nil)
	}
	held := tb.waitBodies(conns)
	if max := int64(conns * 16 << 10); held > max {
		t.Errorf("%d connections claiming %d bytes and sending 1 hold %d bytes, want at most %d", conns, claim, held, max)
	}
	t.Logf("%d slow connections claiming %d MiB each hold %d KiB", conns, claim>>20, held>>10)
}

// TestUnverifiedBodyBudget: the bodies not verified yet share a bounded
// budget. A request that would pass it is answered 503 overloaded with
// Retry-After at once; the part held back for addresses that delivered a
// verified request lately still takes a provider's delivery; and once the
// slow requests are gone, requests are read again.
func TestUnverifiedBodyBudget(t *testing.T) {
	t.Parallel()
	tb := setup(t, func(o *setupOpts) {
		o.configure = func(c *ingest.Config) {
			c.PreAuth = ingest.PreAuthConfig{
				ClaimBytes:             16 << 10,
				MaxUnverifiedBodyBytes: 64 << 10,
				VerifiedReserveBytes:   16 << 10,
				TrustedProxies:         []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
			}
		}
	})
	from := func(h http.Header, addr string) http.Header {
		h.Set("X-Forwarded-For", addr)
		return h
	}
	const provider = "203.0.113.7"
	first := genericBody("evt_p1", "cus_p")
	if status, _, out := tb.post("/webhooks/generic", from(signedGeneric(first), provider), first); status != http.StatusAccepted {
		t.Fatalf("provider: status %d %s", status, out)
	}
	var slow []net.Conn
	for i := range 3 { // 3 x 16 KiB: the 48 KiB anyone may use
		slow = append(slow, tb.slowBody("/webhooks/generic", 1<<20, from(http.Header{}, "198.51.100."+strconv.Itoa(i+1))))
	}
	tb.waitBodies(3)

	junk := genericBody("evt_junk", "cus_j")
	status, h, out := tb.post("/webhooks/generic", from(jsonHeaders(), "198.51.100.99"), junk)
	if status != http.StatusServiceUnavailable || decodeError(t, out).Error.Code != ingest.CodeOverloaded || h.Get("Retry-After") != "3" {
		t.Errorf("anonymous request with the budget full: status %d %s (Retry-After %q), want 503 overloaded, Retry-After 3", status, out, h.Get("Retry-After"))
	}
	second := genericBody("evt_p2", "cus_p")
	if status, _, out := tb.post("/webhooks/generic", from(signedGeneric(second), provider), second); status != http.StatusAccepted {
		t.Errorf("provider with the open budget full: status %d %s, want 202 (the verified reserve)", status, out)
	}

	for _, c := range slow {
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if held := tb.waitBodies(0); held != 0 {
		t.Errorf("no request reads a body, yet %d bytes are held", held)
	}
	if status, _, out := tb.post("/webhooks/generic", from(jsonHeaders(), "198.51.100.99"), junk); status != http.StatusUnauthorized {
		t.Errorf("anonymous request after the slow ones left: status %d %s, want 401", status, out)
	}
	if n := len(tb.events()); n != 2 {
		t.Errorf("%d events stored, want the provider's 2", n)
	}
}
