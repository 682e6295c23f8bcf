package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// scheduleRequest is one request of the load and what came of it.
type scheduleRequest struct {
	clientID string // X-Request-Id, recorded as detail.client_request_id
	kind     string // new, duplicate, bad_signature, malformed
	eventID  string
	status   int // 0: no answer (the receiver died, or was down)
	err      string
	at       time.Time // when the answer came
}

// scheduleLoad sends each customer's events in sequence, as a provider
// does: the next only once the last was answered 2xx (or 409 to a retry,
// which means an earlier attempt was stored). A 503 or a request cut off
// is sent again after a pause, for as long as it takes. Between them go
// duplicates of events already accepted, requests with a bad signature,
// and signed requests that are not JSON.
type scheduleLoad struct {
	r       *scheduleRun
	client  *http.Client
	limiter *rate.Limiter
	queue   chan int // customers no worker holds
	next    []int    // per customer, its next sequence number; touched only by the worker holding the customer
	stopCh  chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
	ids     atomic.Int64

	mu   sync.Mutex
	reqs []scheduleRequest
}

const scheduleWorkers = 16

func (r *scheduleRun) startLoad() *scheduleLoad {
	l := &scheduleLoad{r: r, limiter: rate.NewLimiter(rate.Limit(r.cfg.rate), scheduleWorkers),
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: scheduleWorkers}},
		queue:  make(chan int, r.cfg.customers), next: make([]int, r.cfg.customers), stopCh: make(chan struct{})}
	for c := range r.cfg.customers {
		l.queue <- c
	}
	for w := range scheduleWorkers {
		l.wg.Add(1)
		go l.worker(w)
	}
	return l
}

func (l *scheduleLoad) worker(w int) {
	defer l.wg.Done()
	rng := rand.New(rand.NewPCG(l.r.cfg.seed, uint64(w)+1))
	for {
		select {
		case <-l.stopCh:
			return
		case c := <-l.queue:
			l.act(rng, c)
			l.queue <- c
		}
	}
}

func (l *scheduleLoad) act(rng *rand.Rand, c int) {
	cust := scheduleCustomer(c)
	switch n := rng.IntN(100); {
	case n < 5 && l.next[c] > 0:
		seq := rng.IntN(l.next[c])
		l.post("duplicate", faultEvent(cust, seq), scheduleBody(cust, seq), true)
	case n < 7:
		id := fmt.Sprintf("bad-%d", l.ids.Load())
		l.post("bad_signature", id, fmt.Appendf(nil, `{"event_id":%q,"customer_id":%q,"type":"order.updated","seq":0}`, id, cust), false)
	case n < 8:
		id := fmt.Sprintf("bad-%d", l.ids.Load())
		l.post("malformed", id, fmt.Appendf(nil, `{"event_id":%q,"customer_id":%q`, id, cust), true)
	default:
		l.sendNew(c)
	}
}

// sendNew sends the customer's next event until it is stored.
func (l *scheduleLoad) sendNew(c int) {
	cust, seq := scheduleCustomer(c), l.next[c]
	id, body := faultEvent(cust, seq), scheduleBody(cust, seq)
	for attempt := 0; l.r.ctx.Err() == nil; attempt++ {
		status := l.post("new", id, body, true)
		switch {
		case status == http.StatusAccepted || status == http.StatusConflict && attempt > 0:
			l.next[c]++
			return
		case status == 0 || status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests:
			time.Sleep(250 * time.Millisecond) // a provider's pause before it sends again
		default:
			l.r.violation("new event %s, attempt %d: answered %d", id, attempt+1, status)
			l.next[c]++ // counted as sent: the verifier reports what became of it
			return
		}
	}
}

func scheduleBody(cust string, seq int) []byte {
	return fmt.Appendf(nil, `{"event_id":%q,"customer_id":%q,"type":"order.updated","seq":%d}`, faultEvent(cust, seq), cust, seq)
}

// post sends one request and records it; it returns the status, 0 when
// no answer came.
func (l *scheduleLoad) post(kind, eventID string, body []byte, signed bool) int {
	return l.postWith(l.client, kind, eventID, body, signed)
}

func (l *scheduleLoad) postWith(client *http.Client, kind, eventID string, body []byte, signed bool) int {
	q := scheduleRequest{clientID: fmt.Sprintf("q%d", l.ids.Add(1)), kind: kind, eventID: eventID}
	if err := l.limiter.Wait(l.r.ctx); err != nil {
		return 0
	}
	m := hmac.New(sha256.New, []byte(scheduleSecret))
	m.Write(body)
	sig := hex.EncodeToString(m.Sum(nil))
	if !signed {
		sig = strings.Repeat("0", len(sig))
	}
	req, err := http.NewRequestWithContext(l.r.ctx, http.MethodPost, "http://"+l.r.recvAddr+"/webhooks/"+scheduleSource, bytes.NewReader(body))
	if err != nil {
		l.r.t.Error(err)
		return 0
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Signature", sig)
	req.Header.Set("X-Request-Id", q.clientID)
	resp, err := client.Do(req)
	if err != nil {
		q.err = err.Error()
	} else {
		q.status = resp.StatusCode
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	q.at = time.Now()
	l.mu.Lock()
	l.reqs = append(l.reqs, q)
	l.mu.Unlock()
	return q.status
}

// stop ends the load once every worker has finished its customer: the
// event it was sending is stored. The last requests are a burst of
// unsigned ones (rejectionTail), so that the receiver holds a summary of
// rejections when the load stops.
func (l *scheduleLoad) stop() {
	l.once.Do(func() { close(l.stopCh) })
	l.wg.Wait()
	l.rejectionTail()
}

// rejectionTail sends unsigned requests, each from an address of its own
// (127.0.0.2 and on), more than the receiver records one by one
// (ingest.RejectionAuditConfig's burst of 20 per source and reason) and
// without spending any address's pre-authentication budget: those past
// the burst are in a summary the receiver has not written yet. The
// verifier must count them all the same (scheduleRun.verify).
func (l *scheduleLoad) rejectionTail() {
	const n = 30
	for i := range n {
		local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i))}
		client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			DialContext: (&net.Dialer{LocalAddr: local}).DialContext, DisableKeepAlives: true}}
		id := fmt.Sprintf("bad-tail-%d", i)
		l.postWith(client, "bad_signature", id, fmt.Appendf(nil, `{"event_id":%q,"customer_id":"tail","type":"order.updated","seq":0}`, id), false)
	}
}

func (l *scheduleLoad) requests() []scheduleRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.reqs
}

// events is how many events were stored, after stop.
func (l *scheduleLoad) events() int {
	n := 0
	for _, s := range l.next {
		n += s
	}
	return n
}

func (l *scheduleLoad) summary() string {
	byKind := map[string]map[int]int{}
	for _, q := range l.requests() {
		if byKind[q.kind] == nil {
			byKind[q.kind] = map[int]int{}
		}
		byKind[q.kind][q.status]++
	}
	return fmt.Sprintf("%d events stored; answers by kind (0: none) %v", l.events(), byKind)
}
