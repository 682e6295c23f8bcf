package signature

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Scheme names.
const (
	SchemeStandardWebhooks = "standard-webhooks"
	SchemeStripe           = "stripe"
	SchemeGitHub           = "github"
	SchemeShopify          = "shopify"
	SchemeHMACSHA256       = "hmac-sha256"
	SchemeNone             = "none"
)

// Schemes lists the known scheme names.
var Schemes = []string{SchemeStandardWebhooks, SchemeStripe, SchemeGitHub, SchemeShopify, SchemeHMACSHA256, SchemeNone}

// DefaultTolerance is how far a signed timestamp may be from now, either way.
const DefaultTolerance = 5 * time.Minute

// Limits on what a request's signature header may cost to parse.
const (
	maxHeaderLen  = 4096
	maxSignatures = 16
)

// Verification failures. The caller answers 401 for each; the kind goes to
// the audit trail only.
var (
	ErrMissing   = errors.New("signature: missing")
	ErrMalformed = errors.New("signature: malformed")
	ErrStale     = errors.New("signature: timestamp outside tolerance")
	ErrMismatch  = errors.New("signature: no match")
)

// Config of one source's scheme. Secrets arrive resolved.
type Config struct {
	// Scheme is one of Schemes. Required.
	Scheme string
	// Secrets: one or more; any one may match (rotation).
	Secrets []string
	// Tolerance for schemes that sign a timestamp. Default 5m.
	Tolerance time.Duration
	// Header of hmac-sha256. Default "X-Signature".
	Header string
	// Encoding of hmac-sha256: "hex" (default) or "base64".
	Encoding string
}

// Verifier checks a request's signature.
type Verifier interface {
	// Verify checks the headers and raw body; now is the receiver's clock.
	Verify(h http.Header, body []byte, now time.Time) error
}

// Signer produces the headers a provider would send.
type Signer interface {
	// Sign returns the signature headers for body at now with the first
	// secret. msgID is used by standard-webhooks (webhook-id) only.
	Sign(msgID string, body []byte, now time.Time) http.Header
}

// scheme implements both Verifier and Signer.
type scheme struct {
	name      string
	keys      [][]byte
	tolerance time.Duration
	header    string
	base64    bool
}

// NewVerifier returns the verifier of c, or an error naming what is wrong.
func NewVerifier(c Config) (Verifier, error) { return newScheme(c) }

// NewSigner returns the signer of c, or an error naming what is wrong.
func NewSigner(c Config) (Signer, error) { return newScheme(c) }

func newScheme(c Config) (*scheme, error) {
	s := &scheme{name: c.Scheme, tolerance: c.Tolerance}
	if s.tolerance == 0 {
		s.tolerance = DefaultTolerance
	}
	if s.tolerance < 0 {
		return nil, errors.New("tolerance must be positive")
	}
	switch c.Scheme {
	case SchemeNone:
		return s, nil
	case SchemeStandardWebhooks, SchemeStripe, SchemeGitHub, SchemeShopify:
	case SchemeHMACSHA256:
		s.header = c.Header
		if s.header == "" {
			s.header = "X-Signature"
		}
		switch c.Encoding {
		case "", "hex":
		case "base64":
			s.base64 = true
		default:
			return nil, fmt.Errorf("signature_encoding %q: want hex or base64", c.Encoding)
		}
	case "":
		return nil, fmt.Errorf("scheme is required; want one of %s", strings.Join(Schemes, ", "))
	default:
		return nil, fmt.Errorf("unknown scheme %q; want one of %s", c.Scheme, strings.Join(Schemes, ", "))
	}
	if len(c.Secrets) == 0 {
		return nil, fmt.Errorf("scheme %s needs at least one secret", c.Scheme)
	}
	for i, sec := range c.Secrets {
		key, err := s.key(sec)
		if err != nil {
			return nil, fmt.Errorf("secrets[%d]: %w", i, err)
		}
		s.keys = append(s.keys, key)
	}
	return s, nil
}

// key turns a configured secret into HMAC key bytes.
func (s *scheme) key(secret string) ([]byte, error) {
	if strings.TrimSpace(secret) == "" {
		return nil, errors.New("empty secret")
	}
	if s.name != SchemeStandardWebhooks {
		// Stripe, GitHub, Shopify and plain HMAC use the secret string
		// itself as the key (Stripe's whsec_ prefix included).
		return []byte(secret), nil
	}
	raw := strings.TrimPrefix(secret, "whsec_")
	key, err := base64.StdEncoding.DecodeString(raw)
	if err != nil || len(key) == 0 {
		return nil, errors.New("a standard-webhooks secret is whsec_ followed by base64")
	}
	return key, nil
}

func mac(key []byte, parts ...[]byte) []byte {
	m := hmac.New(sha256.New, key)
	for _, p := range parts {
		m.Write(p)
	}
	return m.Sum(nil)
}

// anyKey reports whether some key's MAC over parts equals one of sigs.
func (s *scheme) anyKey(sigs [][]byte, parts ...[]byte) bool {
	ok := false
	for _, k := range s.keys {
		want := mac(k, parts...)
		for _, sig := range sigs {
			// Evaluate every pair: no early exit that would time the match.
			if hmac.Equal(want, sig) {
				ok = true
			}
		}
	}
	return ok
}

func (s *scheme) Verify(h http.Header, body []byte, now time.Time) error {
	switch s.name {
	case SchemeNone:
		return nil
	case SchemeStandardWebhooks:
		return s.verifyStandard(h, body, now)
	case SchemeStripe:
		return s.verifyStripe(h, body, now)
	case SchemeGitHub:
		return s.verifyPrefixedHex(h, "X-Hub-Signature-256", "sha256=", body, true)
	case SchemeShopify:
		return s.verifyEncoded(h, "X-Shopify-Hmac-Sha256", body)
	case SchemeHMACSHA256:
		if s.base64 {
			return s.verifyEncoded(h, s.header, body)
		}
		return s.verifyPrefixedHex(h, s.header, "sha256=", body, false)
	}
	return fmt.Errorf("%w: unknown scheme", ErrMismatch)
}

func header(h http.Header, name string) (string, error) {
	v := h.Get(name)
	if v == "" {
		return "", fmt.Errorf("%w: header %s", ErrMissing, name)
	}
	if len(v) > maxHeaderLen {
		return "", fmt.Errorf("%w: header %s too long", ErrMalformed, name)
	}
	return v, nil
}

// verifyPrefixedHex: value is [prefix]hex(HMAC(body)); the prefix is
// mandatory when required.
func (s *scheme) verifyPrefixedHex(h http.Header, name, prefix string, body []byte, required bool) error {
	v, err := header(h, name)
	if err != nil {
		return err
	}
	hexSig, had := strings.CutPrefix(v, prefix)
	if required && !had {
		return fmt.Errorf("%w: %s lacks %q", ErrMalformed, name, prefix)
	}
	sig, err := hex.DecodeString(hexSig)
	if err != nil || len(sig) != sha256.Size {
		return fmt.Errorf("%w: %s is not a hex SHA-256 HMAC", ErrMalformed, name)
	}
	if !s.anyKey([][]byte{sig}, body) {
		return ErrMismatch
	}
	return nil
}

// verifyEncoded: value is base64(HMAC(body)).
func (s *scheme) verifyEncoded(h http.Header, name string, body []byte) error {
	v, err := header(h, name)
	if err != nil {
		return err
	}
	sig, err := base64.StdEncoding.DecodeString(v)
	if err != nil || len(sig) != sha256.Size {
		return fmt.Errorf("%w: %s is not a base64 SHA-256 HMAC", ErrMalformed, name)
	}
	if !s.anyKey([][]byte{sig}, body) {
		return ErrMismatch
	}
	return nil
}

func (s *scheme) checkTime(ts string, now time.Time) error {
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: timestamp %q", ErrMalformed, truncate(ts))
	}
	d := now.Sub(time.Unix(sec, 0))
	if d > s.tolerance || d < -s.tolerance {
		return ErrStale
	}
	return nil
}

// verifyStandard follows the Standard Webhooks spec: the signed content is
// "id.timestamp.body"; webhook-signature is a space-separated list of
// "v1,<base64>" (other versions are ignored).
func (s *scheme) verifyStandard(h http.Header, body []byte, now time.Time) error {
	id, err := header(h, "webhook-id")
	if err != nil {
		return err
	}
	ts, err := header(h, "webhook-timestamp")
	if err != nil {
		return err
	}
	v, err := header(h, "webhook-signature")
	if err != nil {
		return err
	}
	if err := s.checkTime(ts, now); err != nil {
		return err
	}
	fields := strings.Fields(v)
	if len(fields) > maxSignatures {
		return fmt.Errorf("%w: too many signatures", ErrMalformed)
	}
	var sigs [][]byte
	for _, f := range fields {
		ver, enc, ok := strings.Cut(f, ",")
		if !ok {
			return fmt.Errorf("%w: webhook-signature entry without version", ErrMalformed)
		}
		if ver != "v1" {
			continue
		}
		sig, err := base64.StdEncoding.DecodeString(enc)
		if err != nil || len(sig) != sha256.Size {
			return fmt.Errorf("%w: webhook-signature v1 is not a base64 SHA-256 HMAC", ErrMalformed)
		}
		sigs = append(sigs, sig)
	}
	if len(sigs) == 0 {
		return fmt.Errorf("%w: no v1 signature", ErrMissing)
	}
	if !s.anyKey(sigs, []byte(id), []byte("."), []byte(ts), []byte("."), body) {
		return ErrMismatch
	}
	return nil
}

// verifyStripe follows Stripe's documentation: Stripe-Signature is
// "t=<unix>,v1=<hex>[,v1=<hex>…][,v0=…]"; the signed payload is "t.body";
// only v1 counts.
func (s *scheme) verifyStripe(h http.Header, body []byte, now time.Time) error {
	v, err := header(h, "Stripe-Signature")
	if err != nil {
		return err
	}
	items := strings.Split(v, ",")
	if len(items) > maxSignatures+2 {
		return fmt.Errorf("%w: too many items", ErrMalformed)
	}
	var ts string
	var sigs [][]byte
	for _, it := range items {
		k, val, ok := strings.Cut(strings.TrimSpace(it), "=")
		if !ok {
			return fmt.Errorf("%w: Stripe-Signature item without '='", ErrMalformed)
		}
		switch k {
		case "t":
			if ts != "" {
				return fmt.Errorf("%w: two timestamps", ErrMalformed)
			}
			ts = val
		case "v1":
			sig, err := hex.DecodeString(val)
			if err != nil || len(sig) != sha256.Size {
				return fmt.Errorf("%w: v1 is not a hex SHA-256 HMAC", ErrMalformed)
			}
			sigs = append(sigs, sig)
		}
	}
	if ts == "" {
		return fmt.Errorf("%w: Stripe-Signature has no timestamp", ErrMalformed)
	}
	if len(sigs) == 0 {
		return fmt.Errorf("%w: Stripe-Signature has no v1 signature", ErrMissing)
	}
	if err := s.checkTime(ts, now); err != nil {
		return err
	}
	if !s.anyKey(sigs, []byte(ts), []byte("."), body) {
		return ErrMismatch
	}
	return nil
}

func (s *scheme) Sign(msgID string, body []byte, now time.Time) http.Header {
	h := http.Header{}
	if s.name == SchemeNone {
		return h
	}
	key := s.keys[0]
	ts := strconv.FormatInt(now.Unix(), 10)
	switch s.name {
	case SchemeStandardWebhooks:
		sig := mac(key, []byte(msgID), []byte("."), []byte(ts), []byte("."), body)
		h.Set("webhook-id", msgID)
		h.Set("webhook-timestamp", ts)
		h.Set("webhook-signature", "v1,"+base64.StdEncoding.EncodeToString(sig))
	case SchemeStripe:
		h.Set("Stripe-Signature", "t="+ts+",v1="+hex.EncodeToString(mac(key, []byte(ts), []byte("."), body)))
	case SchemeGitHub:
		h.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac(key, body)))
	case SchemeShopify:
		h.Set("X-Shopify-Hmac-Sha256", base64.StdEncoding.EncodeToString(mac(key, body)))
	case SchemeHMACSHA256:
		if s.base64 {
			h.Set(s.header, base64.StdEncoding.EncodeToString(mac(key, body)))
		} else {
			h.Set(s.header, hex.EncodeToString(mac(key, body)))
		}
	}
	return h
}

// NaturalEventID says where a scheme's provider puts its unique delivery or
// event id: a header, or a JSON pointer into the body. Schemes without one
// return ok=false and a source must configure event_id.
func NaturalEventID(scheme string) (header, pointer string, ok bool) {
	switch scheme {
	case SchemeStandardWebhooks:
		return "webhook-id", "", true
	case SchemeStripe:
		return "", "/id", true
	case SchemeGitHub:
		return "X-GitHub-Delivery", "", true
	case SchemeShopify:
		return "X-Shopify-Webhook-Id", "", true
	}
	return "", "", false
}

func truncate(s string) string {
	if len(s) > 32 {
		return s[:32] + "…"
	}
	return s
}
