package consumer

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/hookstream/hookstream/internal/sources"
)

func TestDestinationsClassifyResponses(t *testing.T) {
	t.Parallel()
	var got *http.Request
	var gotBody []byte
	status, retryAfter := 0, ""
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		buf := make([]byte, 64)
		n, _ := r.Body.Read(buf)
		gotBody = buf[:n]
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		w.WriteHeader(status)
	}))
	defer srv.Close()
	d := NewDestinations([]sources.Source{{Name: "s", Destination: &sources.Destination{URL: srv.URL, Timeout: time.Second}}}, srv.Client(), 0)
	ev := &Event{Source: "s", EventID: "evt_1", Body: []byte(`{"a":1}`), Attempt: 2,
		Headers: map[string]string{"event-id": "evt_1", "customer-id": "c", "content-type": "application/json"}}

	cases := []struct {
		status     int
		retryAfter string
		wantErr    bool
		permanent  bool
		after      time.Duration
	}{
		{200, "", false, false, 0},
		{204, "", false, false, 0},
		{400, "", true, true, 0},
		{410, "", true, true, 0},
		{408, "", true, false, 0},
		{429, "7", true, false, 7 * time.Second},
		{500, "", true, false, 0},
		{503, "2", true, false, 2 * time.Second},
	}
	for _, c := range cases {
		status, retryAfter = c.status, c.retryAfter
		err := d.Deliver(context.Background(), ev)
		if (err != nil) != c.wantErr || (err != nil && Retryable(err) == c.permanent) || retryAfterOf(err) != c.after {
			t.Errorf("status %d: err %v (retryable %v, after %s)", c.status, err, Retryable(err), retryAfterOf(err))
		}
	}
	if got.Header.Get("Idempotency-Key") != "evt_1" || got.Header.Get("X-Hookstream-Customer-Id") != "c" || got.Header.Get("X-Hookstream-Attempt") != "2" || string(gotBody) != `{"a":1}` {
		t.Errorf("request headers %v body %q", got.Header, gotBody)
	}
	// A source without a destination is processed by doing nothing.
	if err := d.Deliver(context.Background(), &Event{Source: "other"}); err != nil {
		t.Error(err)
	}
	// An unreachable destination is transient.
	srv.Close()
	status = 200
	if err := d.Deliver(context.Background(), ev); err == nil || !Retryable(err) {
		t.Errorf("closed server: %v", err)
	}
}

func retryAfterOf(err error) time.Duration {
	if err == nil {
		return 0
	}
	return retryAfter(err)
}
