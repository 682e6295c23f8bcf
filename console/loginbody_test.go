package console_test

import (
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hookstream/hookstream/internal/admin"
)

// countingReader is a request body of n filler bytes between head and
// tail, made as it is read (never held whole), counting what the server
// read of it.
type countingReader struct {
	r    io.Reader
	read atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.read.Add(int64(n))
	return n, err
}

type filler struct{ left int64 }

func (f *filler) Read(p []byte) (int, error) {
	if f.left <= 0 {
		return 0, io.EOF
	}
	n := min(int64(len(p)), f.left)
	for i := range p[:n] {
		p[i] = 'a'
	}
	f.left -= n
	return int(n), nil
}

// TestLoginReadsABoundedBody: the login is the one console route an
// anonymous client reaches (on the public listener when the admin API
// has no listener of its own), and a POST without a token is not even
// counted by the throttle (only wrong tokens are). So its form must be
// read from a bounded body: net/http alone keeps up to 10 MB of an
// urlencoded form in memory, and a multipart form's file parts past
// gin's 32 MiB go to temporary files, however large. A login form is a
// token: a body of megabytes is refused (413) after reading a little of
// it, and it does not log in, even with the right token at its end.
func TestLoginReadsABoundedBody(t *testing.T) {
	t.Parallel()
	tb := setup(t, admin.Config{})
	const big = 12 << 20
	for _, c := range []struct {
		name        string
		contentType string
		body        func() io.Reader
	}{
		{"urlencoded", "application/x-www-form-urlencoded", func() io.Reader {
			return io.MultiReader(strings.NewReader("pad="), &filler{left: 9 << 20}, strings.NewReader("&token="+url.QueryEscape(token)))
		}},
		{"multipart", "multipart/form-data; boundary=XyZ", func() io.Reader {
			return io.MultiReader(strings.NewReader("--XyZ\r\nContent-Disposition: form-data; name=\"pad\"; filename=\"pad\"\r\n\r\n"),
				&filler{left: big}, strings.NewReader("\r\n--XyZ\r\nContent-Disposition: form-data; name=\"token\"\r\n\r\n"+token+"\r\n--XyZ--\r\n"))
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			body := &countingReader{r: c.body()}
			req := httptest.NewRequest(http.MethodPost, "/console/login", body)
			req.RemoteAddr = "192.0.2.90:1"
			req.Header.Set("Content-Type", c.contentType)
			req.Header.Set("Origin", "http://example.com")
			rec := httptest.NewRecorder()
			tb.h.ServeHTTP(rec, req)
			if rec.Code != http.StatusRequestEntityTooLarge || len(rec.Result().Cookies()) != 0 {
				t.Errorf("a login of megabytes: %d, cookies %v", rec.Code, rec.Result().Cookies())
			}
			if n := body.read.Load(); n > 1<<20 {
				t.Errorf("the login read %d bytes of its body", n)
			}
		})
	}
	// A multipart login of normal size still works (a form may be sent so).
	var sb strings.Builder
	mw := multipart.NewWriter(&sb)
	_ = mw.WriteField("token", token)
	_ = mw.Close()
	req := httptest.NewRequest(http.MethodPost, "/console/login", strings.NewReader(sb.String()))
	req.RemoteAddr = "192.0.2.90:1"
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Origin", "http://example.com")
	rec := httptest.NewRecorder()
	tb.h.ServeHTTP(rec, req)
	if rec.Code != http.StatusSeeOther || len(rec.Result().Cookies()) != 1 {
		t.Errorf("a multipart login: %d %s", rec.Code, rec.Body)
	}
}
