package console

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/hookstream/hookstream/internal/admin"
)

// apiClient calls the admin API in-process: every page's data and every
// action go through the admin API's own router, authentication and
// handlers, exactly as a script's request would, only without a socket.
// So the console can do nothing a script cannot, and its calls are the
// operations of schemas/openapi.yaml (a test checks each one against it).
// The token stays on the server; the browser holds only a session.
type apiClient struct {
	h     http.Handler
	token string
}

// apiError is an admin API answer other than the one expected.
type apiError struct {
	Status     int
	Code       string
	Message    string
	RetryAfter string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("admin API: %d %s: %s", e.Status, e.Code, e.Message)
}

// call sends method path?query to the admin API on behalf of the browser's
// request from (its context, its client address: the API's throttle
// counts failures per address), with token as the bearer token, and the
// operator label when not empty. A status other than want is an
// *apiError; otherwise the body is decoded into out (when not nil).
func (a *apiClient) call(from *http.Request, token, operator, method, path string, query url.Values, want int, out any) error {
	target := path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(from.Context(), method, target, nil)
	if err != nil {
		return err
	}
	req.RemoteAddr = from.RemoteAddr
	req.Header.Set("Authorization", "Bearer "+token)
	if operator != "" {
		req.Header.Set(admin.OperatorHeader, operator)
	}
	rec := &recorder{header: http.Header{}}
	a.h.ServeHTTP(rec, req)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	if rec.status != want {
		e := &apiError{Status: rec.status, RetryAfter: rec.header.Get("Retry-After")}
		var body struct {
			Error struct{ Code, Message string }
		}
		if json.Unmarshal(rec.body.Bytes(), &body) == nil {
			e.Code, e.Message = body.Error.Code, body.Error.Message
		}
		return e
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(rec.body.Bytes(), out); err != nil {
		return fmt.Errorf("admin API: %s %s: %w", method, path, err)
	}
	return nil
}

// stream calls the API with the configured token and hands its answer
// to w as it comes, status and headers included: a server-sent events
// stream, flushed event by event (w is the browser's response).
func (a *apiClient) stream(from *http.Request, w http.ResponseWriter, path string, query url.Values, header http.Header) {
	req, err := http.NewRequestWithContext(admin.ForSession(from.Context()), http.MethodGet, path+"?"+query.Encode(), nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	req.Header = header.Clone()
	req.RemoteAddr = from.RemoteAddr
	req.Header.Set("Authorization", "Bearer "+a.token)
	a.h.ServeHTTP(w, req)
}

// as calls the API with the configured token: a page or an action of a
// logged-in operator.
func (a *apiClient) as(from *http.Request, operator, method, path string, query url.Values, want int, out any) error {
	return a.call(from.WithContext(admin.ForSession(from.Context())), a.token, operator, method, path, query, want, out)
}

// segment percent-encodes one path segment: an id holding "/" is sent as
// %2F, as the admin API takes it.
func segment(s string) string { return url.PathEscape(s) }

// recorder is the in-process response.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}

// eventPath is an event's path under base ("/admin/events" or the
// console's "/console/events").
func eventPath(base, source, eventID string) string {
	return strings.TrimSuffix(base, "/") + "/" + segment(source) + "/" + segment(eventID)
}
