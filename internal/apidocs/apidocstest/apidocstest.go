// Package apidocstest checks real HTTP responses against the OpenAPI
// document that GET /openapi.json serves, with kin-openapi's response
// validation. Tests wrap their HTTP client with Client or Transport, so
// every response they get from the receiver or the admin API must match a
// status, headers and body the document declares.
package apidocstest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/hookstream/hookstream/internal/apidocs"
)

// Validator checks responses against the document.
type Validator struct {
	Doc    *openapi3.T
	router routers.Router
}

var load = sync.OnceValues(func() (*Validator, error) {
	raw, err := apidocs.JSON()
	if err != nil {
		return nil, err
	}
	// Media types whose bodies the document describes as strings; kin-openapi
	// decodes text/plain only.
	for _, mt := range []string{"text/html", "text/javascript"} {
		openapi3filter.RegisterBodyDecoder(mt, openapi3filter.PlainBodyDecoder)
	}
	openapi3filter.RegisterBodyDecoder("text/event-stream", sseDecoder)
	doc, err := openapi3.NewLoader().LoadFromData(raw)
	if err != nil {
		return nil, fmt.Errorf("load the OpenAPI document: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("the OpenAPI document is invalid: %w", err)
	}
	// The document's server is "/", the origin that served it; kin-openapi's
	// router matches servers against the request's absolute URL and cannot
	// resolve a relative one, and tests ask hookstream wherever it listens.
	doc.Servers = nil
	router, err := legacy.NewRouter(doc)
	if err != nil {
		return nil, err
	}
	return &Validator{Doc: doc, router: router}, nil
})

// Load returns the validator of the served document, loaded once.
func Load(t testing.TB) *Validator {
	t.Helper()
	v, err := load()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Check validates one response to req. A status the operation does not
// declare is an error, and so is a request to a path or method the
// document does not have — unless the router answered it 404 or 405 with
// the error body, which is what it does on every such path.
func (v *Validator) Check(req *http.Request, status int, header http.Header, body []byte) error {
	route, params, err := v.router.FindRoute(req)
	if err != nil {
		// The document has no such operation. Only the router's own answers
		// are right then: 405 on a path it has with another method, 404 on
		// a path it does not have.
		known := v.pathKnown(req)
		if !(known && status == http.StatusMethodNotAllowed || !known && status == http.StatusNotFound) {
			return fmt.Errorf("%s %s answered %d is not in the document: %w", req.Method, req.URL.Path, status, err)
		}
		return v.checkErrorBody(header, body)
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 status,
		Header:                 header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	in.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(req.Context(), in); err != nil {
		return fmt.Errorf("%s %s answered %d: %w", req.Method, req.URL.Path, status, err)
	}
	return nil
}

// pathKnown tells whether the document has req's path with any method.
func (v *Validator) pathKnown(req *http.Request) bool {
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodHead, http.MethodOptions} {
		r := req.Clone(req.Context())
		r.Method = m
		if _, _, err := v.router.FindRoute(r); err == nil {
			return true
		}
	}
	return false
}

// checkErrorBody validates the body of a 404 or 405 that no route wrote
// against components/schemas/Error.
func (v *Validator) checkErrorBody(header http.Header, body []byte) error {
	if ct := header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		return fmt.Errorf("error response with Content-Type %q", ct)
	}
	ref := v.Doc.Components.Schemas["Error"]
	if ref == nil || ref.Value == nil {
		return errors.New("the document has no Error schema")
	}
	var doc any
	if err := json.Unmarshal(body, &doc); err != nil {
		return fmt.Errorf("error body %q: %w", body, err)
	}
	if err := ref.Value.VisitJSON(doc, openapi3.EnableJSONSchema2020(), openapi3.VisitAsResponse()); err != nil {
		return fmt.Errorf("error body %s: %w", body, err)
	}
	return nil
}

// Transport returns a RoundTripper that sends through base (nil: the
// default transport) and fails t, without failing the request, for every
// response that does not match the document.
func Transport(t testing.TB, base http.RoundTripper) http.RoundTripper {
	t.Helper()
	if base == nil {
		base = http.DefaultTransport
	}
	return &transport{t: t, v: Load(t), base: base}
}

// Client returns an HTTP client whose responses are checked (Transport).
func Client(t testing.TB) *http.Client {
	t.Helper()
	return &http.Client{Transport: Transport(t, nil)}
}

type transport struct {
	t    testing.TB
	v    *Validator
	base http.RoundTripper
}

func (tr *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := tr.base.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if err := tr.v.Check(req, resp.StatusCode, resp.Header, body); err != nil {
		snippet := body
		if len(snippet) > 512 {
			snippet = snippet[:512]
		}
		tr.t.Errorf("response does not match schemas/openapi.yaml: %v\nbody: %s", err, snippet)
	}
	return resp, nil
}
