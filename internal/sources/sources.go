// Package sources loads and validates the sources file (docs/design.md,
// "Sources"): one entry per provider endpoint, saying how its requests are
// verified, where their ids are, how they are limited and where they are
// delivered. Loading fails with a message naming the bad field, so a bad
// config stops the service at start instead of passing events through.
package sources

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/hookstream/hookstream/ingest/signature"
	"github.com/hookstream/hookstream/internal/redact"
	"github.com/hookstream/hookstream/schemas"
)

// Defaults for fields a source leaves out.
const (
	DefaultMaxBodyBytes    = 1 << 20 // 1 MiB
	DefaultTolerance       = 5 * time.Minute
	DefaultDuplicateStatus = 409
	DefaultMaxAttempts     = 8
	DefaultInitialBackoff  = time.Second
	DefaultMaxBackoff      = 5 * time.Minute
	DefaultDestTimeout     = 10 * time.Second
	// MaxIDBytes bounds event_id, customer_id and event_type values.
	MaxIDBytes = 255
	// MaxTolerance bounds tolerance: a captured request of a timestamped
	// scheme can be replayed for as long as its timestamp is within it.
	MaxTolerance = time.Hour
	// MinSecretBytes is the shortest signing key a source may have unless
	// it sets allow_short_secret (see Source.AllowShortSecret).
	MinSecretBytes = 16
)

// GenericName is the name of the built-in source (docs/design.md, "the seed's
// contract").
const GenericName = "generic"

// Locator says where a value is: a request header or a JSON pointer into the
// body. Exactly one is set.
type Locator struct {
	Header  string `yaml:"header"`
	Pointer string `yaml:"pointer"`
}

// IsZero reports whether the locator names nothing.
func (l Locator) IsZero() bool { return l.Header == "" && l.Pointer == "" }

// String renders the locator for messages.
func (l Locator) String() string {
	if l.Header != "" {
		return "header " + l.Header
	}
	return "pointer " + l.Pointer
}

// RateLimit is a token bucket: PerSecond tokens a second, Burst at most.
type RateLimit struct {
	PerSecond float64 `yaml:"per_second"`
	Burst     int     `yaml:"burst"`
}

// Destination is where processing delivers an event.
type Destination struct {
	URL     string        `yaml:"url"`
	Timeout time.Duration `yaml:"timeout"` // default 10s
}

// Retry bounds redelivery of transient failures.
type Retry struct {
	MaxAttempts    int           `yaml:"max_attempts"`    // default 8
	InitialBackoff time.Duration `yaml:"initial_backoff"` // default 1s
	MaxBackoff     time.Duration `yaml:"max_backoff"`     // default 5m
	MaxElapsed     time.Duration `yaml:"max_elapsed"`     // default none: MaxAttempts alone bounds retries
}

// Source is one provider endpoint: POST /webhooks/{Name}.
type Source struct {
	Name    string   `yaml:"name"`
	Scheme  string   `yaml:"scheme"`
	Secrets []string `yaml:"secrets"`
	// AllowShortSecret accepts secrets whose key is shorter than
	// MinSecretBytes, for a provider that issues such secrets. Default
	// false: a short secret is a config error.
	AllowShortSecret bool `yaml:"allow_short_secret"`
	// Tolerance of timestamped schemes, at most MaxTolerance. Default
	// DefaultTolerance.
	Tolerance         time.Duration `yaml:"tolerance"`
	SignatureHeader   string        `yaml:"signature_header"`
	SignatureEncoding string        `yaml:"signature_encoding"`
	EventID           Locator       `yaml:"event_id"`
	CustomerID        Locator       `yaml:"customer_id"`
	EventType         Locator       `yaml:"event_type"`
	// Schema is a path to a JSON Schema file (relative paths are taken from
	// the sources file's directory), or builtin:NAME for a schema embedded
	// from schemas/json. SchemaJSON holds its bytes once loaded.
	Schema          string       `yaml:"schema"`
	SchemaJSON      []byte       `yaml:"-"`
	MaxBodyBytes    int64        `yaml:"max_body_bytes"`
	RateLimit       *RateLimit   `yaml:"rate_limit"`
	DuplicateStatus int          `yaml:"duplicate_status"`
	Destination     *Destination `yaml:"destination"`
	Retry           Retry        `yaml:"retry"`
}

// SignatureConfig is the source's verification config.
func (s *Source) SignatureConfig() signature.Config {
	return signature.Config{
		Scheme:    s.Scheme,
		Secrets:   s.Secrets,
		Tolerance: s.Tolerance,
		Header:    s.SignatureHeader,
		Encoding:  s.SignatureEncoding,
	}
}

// File is the sources file.
type File struct {
	Sources []Source `yaml:"sources"`
}

// Load reads and validates a sources file. Secrets of the form env:VAR are
// read from the environment; schema paths are read relative to the file.
func Load(path string) ([]Source, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sources file: %w", err)
	}
	srcs, err := Parse(data, filepath.Dir(path), os.LookupEnv)
	if err != nil {
		return nil, fmt.Errorf("sources file %s: %w", path, err)
	}
	return srcs, nil
}

// Parse decodes and validates sources YAML. baseDir resolves relative schema
// paths; lookupEnv resolves env:VAR secrets.
func Parse(data []byte, baseDir string, lookupEnv func(string) (string, bool)) ([]Source, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true) // a misspelt key is an error, not a silent default
	var f File
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if len(f.Sources) == 0 {
		return nil, errors.New("sources: at least one source is required")
	}
	seen := map[string]int{}
	for i := range f.Sources {
		s := &f.Sources[i]
		field := func(name string) string {
			if s.Name != "" {
				return fmt.Sprintf("sources[%d] (%s).%s", i, s.Name, name)
			}
			return fmt.Sprintf("sources[%d].%s", i, name)
		}
		if j, dup := seen[s.Name]; dup && s.Name != "" {
			return nil, fmt.Errorf("%s: duplicate of sources[%d]", field("name"), j)
		}
		seen[s.Name] = i
		if err := s.resolve(baseDir, lookupEnv, field); err != nil {
			return nil, err
		}
		if err := s.Validate(field); err != nil {
			return nil, err
		}
	}
	return f.Sources, nil
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// resolve reads env: secrets and the schema file.
func (s *Source) resolve(baseDir string, lookupEnv func(string) (string, bool), field func(string) string) error {
	for i, sec := range s.Secrets {
		name, ok := strings.CutPrefix(sec, "env:")
		if !ok {
			continue
		}
		v, ok := lookupEnv(name)
		if !ok || v == "" {
			return fmt.Errorf("%s[%d]: environment variable %s is not set", field("secrets"), i, name)
		}
		s.Secrets[i] = v
	}
	if name, ok := strings.CutPrefix(s.Schema, "builtin:"); ok && s.SchemaJSON == nil {
		b, err := fs.ReadFile(schemas.JSON(), name)
		if err != nil {
			return fmt.Errorf("%s: no built-in schema %q", field("schema"), name)
		}
		s.SchemaJSON = b
	}
	if s.Schema != "" && s.SchemaJSON == nil {
		p := s.Schema
		if !filepath.IsAbs(p) {
			p = filepath.Join(baseDir, p)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("%s: %w", field("schema"), err)
		}
		s.SchemaJSON = b
	}
	return nil
}

// Validate fills defaults and checks every field; field names the path of a
// field in messages.
func (s *Source) Validate(field func(string) string) error {
	if !nameRE.MatchString(s.Name) {
		return fmt.Errorf("%s: %q must be 1-63 of a-z, 0-9, '_' or '-', starting with a letter or digit", field("name"), s.Name)
	}
	for _, check := range []func(func(string) string) error{s.validateSignature, s.validateLocators,
		s.validateLimits, s.validateDestination, s.validateRetry} {
		if err := check(field); err != nil {
			return err
		}
	}
	return nil
}

// validateSignature: the scheme, the timestamp tolerance and the secrets.
func (s *Source) validateSignature(field func(string) string) error {
	if s.Scheme == "" {
		return fmt.Errorf("%s: required (one of %s; \"none\" disables verification and must be explicit)", field("scheme"), strings.Join(signature.Schemes, ", "))
	}
	if s.Tolerance == 0 {
		s.Tolerance = DefaultTolerance
	}
	if s.Tolerance < 0 {
		return fmt.Errorf("%s: must be positive", field("tolerance"))
	}
	if s.Tolerance > MaxTolerance {
		return fmt.Errorf("%s: %s is more than %s: a captured request could be replayed for that long", field("tolerance"), s.Tolerance, MaxTolerance)
	}
	if s.Scheme == signature.SchemeNone && len(s.Secrets) > 0 {
		return fmt.Errorf("%s: scheme none verifies nothing, so these secrets would be ignored: remove them, or choose the scheme they are for", field("secrets"))
	}
	if _, err := signature.NewVerifier(s.SignatureConfig()); err != nil {
		return fmt.Errorf("%s: %w", field("scheme"), err)
	}
	return s.checkSecretLengths(field)
}

// validateLocators: where the event id (the scheme's own if not given),
// customer id and event type are.
func (s *Source) validateLocators(field func(string) string) error {
	if s.EventID.IsZero() {
		h, p, ok := signature.NaturalEventID(s.Scheme)
		if !ok {
			return fmt.Errorf("%s: required for scheme %q (it has no natural event id)", field("event_id"), s.Scheme)
		}
		s.EventID = Locator{Header: h, Pointer: p}
	}
	for _, l := range []struct {
		name     string
		loc      Locator
		required bool
	}{{"event_id", s.EventID, true}, {"customer_id", s.CustomerID, true}, {"event_type", s.EventType, false}} {
		if err := l.loc.validate(); err != nil {
			return fmt.Errorf("%s: %w", field(l.name), err)
		}
		if l.required && l.loc.IsZero() {
			return fmt.Errorf("%s: required (a header or a JSON pointer where the customer id is)", field(l.name))
		}
	}
	return nil
}

// validateLimits: the body size, the rate limit and the duplicate status.
func (s *Source) validateLimits(field func(string) string) error {
	if s.MaxBodyBytes == 0 {
		s.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if s.MaxBodyBytes < 0 || s.MaxBodyBytes > 64<<20 {
		return fmt.Errorf("%s: must be between 1 and 67108864", field("max_body_bytes"))
	}
	if rl := s.RateLimit; rl != nil {
		if rl.PerSecond <= 0 {
			return fmt.Errorf("%s: must be greater than 0", field("rate_limit.per_second"))
		}
		if rl.Burst == 0 {
			rl.Burst = max(1, int(rl.PerSecond))
		}
		if rl.Burst < 0 {
			return fmt.Errorf("%s: must be positive", field("rate_limit.burst"))
		}
	}
	if s.DuplicateStatus == 0 {
		s.DuplicateStatus = DefaultDuplicateStatus
	}
	if s.DuplicateStatus != 409 && s.DuplicateStatus != 200 {
		return fmt.Errorf("%s: must be 409 or 200, got %d", field("duplicate_status"), s.DuplicateStatus)
	}
	return nil
}

// validateDestination: its URL and timeout.
func (s *Source) validateDestination(field func(string) string) error {
	if d := s.Destination; d != nil {
		u, err := url.Parse(d.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%s: %q is not an http(s) URL", field("destination.url"), redact.URL(d.URL))
		}
		if d.Timeout == 0 {
			d.Timeout = DefaultDestTimeout
		}
		if d.Timeout < 0 {
			return fmt.Errorf("%s: must be positive", field("destination.timeout"))
		}
	}
	return nil
}

// validateRetry: the retry policy.
func (s *Source) validateRetry(field func(string) string) error {
	r := &s.Retry
	if r.MaxAttempts == 0 {
		r.MaxAttempts = DefaultMaxAttempts
	}
	if r.InitialBackoff == 0 {
		r.InitialBackoff = DefaultInitialBackoff
	}
	if r.MaxBackoff == 0 {
		r.MaxBackoff = DefaultMaxBackoff
	}
	switch {
	case r.MaxAttempts < 1:
		return fmt.Errorf("%s: must be at least 1", field("retry.max_attempts"))
	case r.InitialBackoff < 0:
		return fmt.Errorf("%s: must be positive", field("retry.initial_backoff"))
	case r.MaxBackoff < r.InitialBackoff:
		return fmt.Errorf("%s: must be at least retry.initial_backoff", field("retry.max_backoff"))
	case r.MaxElapsed < 0:
		return fmt.Errorf("%s: must be positive", field("retry.max_elapsed"))
	}
	return nil
}

// checkSecretLengths refuses a key shorter than MinSecretBytes unless the
// source allows it. The key is what the HMAC uses, less what is public: a
// standard-webhooks secret's base64-decoded bytes, a Stripe secret without
// its whsec_ prefix, any other secret as written. The message never shows
// the secret.
func (s *Source) checkSecretLengths(field func(string) string) error {
	if s.AllowShortSecret {
		return nil
	}
	for i, sec := range s.Secrets {
		n := len(sec)
		switch s.Scheme {
		case signature.SchemeStandardWebhooks:
			key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(sec, "whsec_"))
			if err != nil {
				return fmt.Errorf("%s[%d]: not base64 after the optional whsec_ prefix", field("secrets"), i)
			}
			n = len(key)
		case signature.SchemeStripe:
			n = len(strings.TrimPrefix(sec, "whsec_"))
		}
		if n < MinSecretBytes {
			return fmt.Errorf("%s[%d]: a key of %d bytes is shorter than %d and could be guessed: use a longer secret, or set allow_short_secret: true if the provider issued this one", field("secrets"), i, n, MinSecretBytes)
		}
	}
	return nil
}

func (l Locator) validate() error {
	if l.Header != "" && l.Pointer != "" {
		return errors.New("set header or pointer, not both")
	}
	if l.Pointer != "" && !strings.HasPrefix(l.Pointer, "/") {
		return fmt.Errorf("pointer %q must start with '/' (RFC 6901)", l.Pointer)
	}
	return nil
}

// Generic returns the built-in source of the seed's contract: body
// {event_id, customer_id, event_type, payload}, signed with hmac-sha256 in
// X-Signature (hex), validated by schemas/json/generic.schema.json.
func Generic(secrets []string, schemaJSON []byte) Source {
	s := Source{
		Name:              GenericName,
		Scheme:            "hmac-sha256",
		Secrets:           secrets,
		SignatureHeader:   "X-Signature",
		SignatureEncoding: "hex",
		EventID:           Locator{Pointer: "/event_id"},
		CustomerID:        Locator{Pointer: "/customer_id"},
		EventType:         Locator{Pointer: "/event_type"},
		Schema:            "builtin:generic.schema.json",
		SchemaJSON:        schemaJSON,
	}
	return s
}
