package ingest

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/time/rate"

	"github.com/hookstream/hookstream/ingest/signature"
	"github.com/hookstream/hookstream/internal/sources"
)

// source is a sources.Source compiled for the request path.
type source struct {
	cfg        sources.Source
	verifier   signature.Verifier
	schema     *jsonschema.Schema // nil = no schema
	limiter    *rate.Limiter      // nil = unlimited
	eventID    locator
	customerID locator
	eventType  locator // may be zero
	// needsDoc: the body must be decoded (a schema or a pointer locator).
	needsDoc bool
	metrics  sourceMetrics
	// signed: the scheme verifies something (not none), so a request that
	// passes it makes its address a verified one.
	signed bool
	// addresses are the source's per-client-address budgets (preauth.go).
	addresses *addressTable
	// caseChecked: the paths along which keys may not differ from the
	// expected ones only in case (ambiguous.go).
	caseChecked []pointer
	// challenge: the WWW-Authenticate of its 401s, e.g.
	// `github realm="github"` (names are [a-z0-9_-], nothing to escape).
	challenge string
	// replayGuard: the signature does not cover the event id, so accepted
	// events carry the signed digest and look-ups look for it (replay.go).
	replayGuard bool
}

func compileSource(s sources.Source) (*source, error) {
	field := func(name string) string { return fmt.Sprintf("source %s: %s", s.Name, name) }
	if err := s.Validate(field); err != nil {
		return nil, err
	}
	v, err := signature.NewVerifier(s.SignatureConfig())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field("scheme"), err)
	}
	cs := &source{cfg: s, verifier: v, metrics: newSourceMetrics(s.Name), signed: s.Scheme != signature.SchemeNone}
	if cs.eventID, err = compileLocator("event_id", s.EventID); err != nil {
		return nil, fmt.Errorf("%s: %w", field("event_id"), err)
	}
	if cs.customerID, err = compileLocator("customer_id", s.CustomerID); err != nil {
		return nil, fmt.Errorf("%s: %w", field("customer_id"), err)
	}
	if cs.eventType, err = compileLocator("event_type", s.EventType); err != nil {
		return nil, fmt.Errorf("%s: %w", field("event_type"), err)
	}
	if len(s.SchemaJSON) > 0 {
		if cs.schema, err = compileSchema(s.Name, s.SchemaJSON); err != nil {
			return nil, fmt.Errorf("%s: %w", field("schema"), err)
		}
	}
	if rl := s.RateLimit; rl != nil {
		cs.limiter = rate.NewLimiter(rate.Limit(rl.PerSecond), rl.Burst)
	}
	if s.Scheme == signature.SchemeShopify {
		for _, l := range []*locator{&cs.eventID, &cs.customerID, &cs.eventType} {
			if short, ok := strings.CutPrefix(l.header, "X-Shopify-"); ok {
				l.alt = "Shopify-" + short
			}
		}
	}
	cs.caseChecked = caseCheckedPointers(cs.eventID, cs.customerID, cs.eventType)
	cs.challenge = s.Scheme + ` realm="` + s.Name + `"`
	cs.replayGuard = guardsReplays(s.Scheme, cs.eventID)
	cs.needsDoc = cs.schema != nil || cs.eventID.ptr != nil || cs.customerID.ptr != nil || cs.eventType.ptr != nil
	return cs, nil
}

func compileSchema(name string, doc []byte) (*jsonschema.Schema, error) {
	parsed, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	url := "hookstream:sources/" + name + ".schema.json"
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource(url, parsed); err != nil {
		return nil, err
	}
	return c.Compile(url)
}

// schemaDetails flattens a validation error into "location: message" lines.
func schemaDetails(err error) []string {
	ve, ok := err.(*jsonschema.ValidationError)
	if !ok {
		return []string{err.Error()}
	}
	var out []string
	var walk func(u *jsonschema.OutputUnit)
	walk = func(u *jsonschema.OutputUnit) {
		if u.Error != nil && len(u.Errors) == 0 {
			loc := u.InstanceLocation
			if loc == "" {
				loc = "/"
			}
			out = append(out, loc+": "+u.Error.String())
		}
		for i := range u.Errors {
			walk(&u.Errors[i])
		}
	}
	walk(ve.BasicOutput())
	if len(out) > 20 {
		out = append(out[:20], fmt.Sprintf("… and %d more", len(out)-20))
	}
	if len(out) == 0 {
		out = []string{ve.Error()}
	}
	return out
}
