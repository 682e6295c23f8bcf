package signature

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"strconv"
	"strings"
	"sync"
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

// DefaultHeader is the hmac-sha256 scheme's header when none is configured.
const DefaultHeader = "X-Signature"

// Limits on what a request's signature headers may cost to parse. Over a
// limit is ErrMalformed.
const (
	maxHeaderLen  = 4096 // bytes of one header value
	maxSignatures = 16   // entries of a signature list (Standard Webhooks, Stripe)
)

// Verification failures. The caller answers 401 for each; the kind goes to
// the audit trail only. The context they are wrapped in never contains an
// expected signature.
var (
	ErrMissing   = errors.New("missing signature")         // no signature / id / timestamp header
	ErrMalformed = errors.New("malformed signature")       // present but unparsable or over a limit
	ErrStale     = errors.New("stale signature timestamp") // outside the tolerance, either way
	ErrMismatch  = errors.New("signature mismatch")        // no secret produced a matching signature
)

// Config of one source's scheme. Secrets arrive resolved.
type Config struct {
	// Scheme is one of Schemes. Required.
	Scheme string
	// Secrets: one or more; any one may match (rotation). Sign uses the first.
	Secrets []string
	// Tolerance for schemes that sign a timestamp (standard-webhooks,
	// stripe). 0 means DefaultTolerance.
	Tolerance time.Duration
	// Header of hmac-sha256. Default DefaultHeader.
	Header string
	// Encoding of hmac-sha256: "hex" (default) or "base64".
	Encoding string
}

// Verifier checks a request's signature.
type Verifier interface {
	// Verify checks the headers and raw body; now is the receiver's clock.
	// It returns nil or an error wrapping ErrMissing, ErrMalformed,
	// ErrStale or ErrMismatch.
	Verify(h http.Header, body []byte, now time.Time) error
}

// Signer produces the headers a provider would send.
type Signer interface {
	// Sign returns the headers a provider would send for body at now, signed
	// with the first secret. msgID is the webhook-id of standard-webhooks;
	// for github and shopify, when not empty, it is sent as the delivery id
	// header (X-GitHub-Delivery, X-Shopify-Webhook-Id) so the request carries
	// the scheme's natural dedupe key. Stripe's id lives in the body.
	Sign(msgID string, body []byte, now time.Time) http.Header
}

// scheme implements both Verifier and Signer.
type scheme struct {
	name      string
	keys      [][]byte     // one HMAC key per secret, in configured order
	macs      []*sync.Pool // per key: keyed HMAC-SHA256 states to Reset and reuse
	tolerance time.Duration
	header    string // hmac-sha256 only
	base64    bool   // hmac-sha256 only
}

// NewVerifier returns the verifier of c, or an error naming what is wrong
// (and a nil Verifier).
func NewVerifier(c Config) (Verifier, error) {
	s, err := newScheme(c)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// NewSigner returns the signer of c, or an error naming what is wrong (and
// a nil Signer).
func NewSigner(c Config) (Signer, error) {
	s, err := newScheme(c)
	if err != nil {
		return nil, err
	}
	return s, nil
}

func newScheme(c Config) (*scheme, error) {
	s := &scheme{name: c.Scheme, tolerance: c.Tolerance}
	if s.tolerance == 0 {
		s.tolerance = DefaultTolerance
	}
	if s.tolerance < 0 {
		return nil, fmt.Errorf("tolerance %v must be positive", c.Tolerance)
	}
	switch c.Scheme {
	case SchemeNone:
		return s, nil // secrets, if any, are ignored
	case SchemeStandardWebhooks, SchemeStripe, SchemeGitHub, SchemeShopify:
	case SchemeHMACSHA256:
		s.header = c.Header
		if s.header == "" {
			s.header = DefaultHeader
		}
		if !isToken(s.header) {
			return nil, fmt.Errorf("signature_header %q is not a valid HTTP header name", c.Header)
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
			return nil, fmt.Errorf("secrets[%d]: %w", i, err) // never the secret itself
		}
		s.keys = append(s.keys, key)
		s.macs = append(s.macs, &sync.Pool{New: func() any { return hmac.New(sha256.New, key) }})
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
	// Standard Webhooks: the key is the base64 after the optional whsec_.
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil || len(key) == 0 {
		return nil, errors.New("a standard-webhooks secret is base64 after the optional whsec_ prefix")
	}
	return key, nil
}

// isToken reports whether s is an RFC 9110 token (a valid header name).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// sigBase64 decodes signatures: canonical standard base64 only, so one MAC
// has one accepted spelling.
var sigBase64 = base64.StdEncoding.Strict()

// mac is HMAC-SHA256 of the concatenated parts.
func mac(key []byte, parts ...[]byte) []byte {
	m := hmac.New(sha256.New, key)
	for _, p := range parts {
		m.Write(p)
	}
	return m.Sum(nil)
}

// anyKey reports whether some key's MAC over parts equals one of sigs.
// Every pair is compared in constant time; the loop does not stop at the
// first match, so its timing says nothing about which secret matched.
func (s *scheme) anyKey(sigs [][]byte, parts ...[]byte) bool {
	ok := false
	var sum [sha256.Size]byte
	for i := range s.keys {
		m := s.macs[i].Get().(hash.Hash)
		m.Reset()
		for _, p := range parts {
			m.Write(p)
		}
		want := m.Sum(sum[:0])
		s.macs[i].Put(m)
		for _, sig := range sigs {
			if hmac.Equal(want, sig) {
				ok = true
			}
		}
	}
	return ok
}

func (s *scheme) Verify(h http.Header, body []byte, now time.Time) error {
	var err error
	switch s.name {
	case SchemeNone:
		return nil
	case SchemeStandardWebhooks:
		err = s.verifyStandard(h, body, now)
	case SchemeStripe:
		err = s.verifyStripe(h, body, now)
	case SchemeGitHub:
		err = s.verifyBody(h, "X-Hub-Signature-256", "sha256=", true, false, body)
	case SchemeShopify:
		err = s.verifyBody(h, ShopifyHeader(h, "X-Shopify-Hmac-Sha256"), "", false, true, body)
	case SchemeHMACSHA256:
		if s.base64 {
			err = s.verifyBody(h, s.header, "", false, true, body)
		} else {
			err = s.verifyBody(h, s.header, "sha256=", false, false, body)
		}
	default: // unreachable: newScheme refuses unknown schemes; fail closed anyway
		err = ErrMismatch
	}
	if err != nil {
		return fmt.Errorf("%s: %w", s.name, err)
	}
	return nil
}

// header returns the one value of header name, trimmed of surrounding
// spaces and tabs. Absent or empty is ErrMissing; repeated, over
// maxHeaderLen or holding control characters is ErrMalformed.
func header(h http.Header, name string) (string, error) {
	vs := h.Values(name)
	if len(vs) > 1 {
		return "", fmt.Errorf("header %s repeated: %w", name, ErrMalformed)
	}
	v := ""
	if len(vs) == 1 {
		v = strings.Trim(vs[0], " \t")
	}
	if v == "" {
		return "", fmt.Errorf("no header %s: %w", name, ErrMissing)
	}
	if len(v) > maxHeaderLen {
		return "", fmt.Errorf("header %s longer than %d bytes: %w", name, maxHeaderLen, ErrMalformed)
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return "", fmt.Errorf("header %s has a control character: %w", name, ErrMalformed)
		}
	}
	return v, nil
}

// decodeMAC decodes one hex or base64 SHA-256 HMAC.
func decodeMAC(v string, b64 bool) ([]byte, bool) {
	var sig []byte
	var err error
	if b64 {
		sig, err = sigBase64.DecodeString(v)
	} else {
		sig, err = hex.DecodeString(v)
	}
	return sig, err == nil && len(sig) == sha256.Size
}

// verifyBody: the header value is [prefix]enc(HMAC(body)); the prefix is
// mandatory when required, optional otherwise.
func (s *scheme) verifyBody(h http.Header, name, prefix string, required, b64 bool, body []byte) error {
	v, err := header(h, name)
	if err != nil {
		return err
	}
	enc := v
	if prefix != "" {
		var had bool
		enc, had = strings.CutPrefix(v, prefix)
		if required && !had {
			return fmt.Errorf("%s lacks the %q prefix: %w", name, prefix, ErrMalformed)
		}
	}
	sig, ok := decodeMAC(enc, b64)
	if !ok {
		kind := "hex"
		if b64 {
			kind = "base64"
		}
		return fmt.Errorf("%s is not a %s SHA-256 HMAC: %w", name, kind, ErrMalformed)
	}
	if !s.anyKey([][]byte{sig}, body) {
		return ErrMismatch
	}
	return nil
}

// checkTime parses a unix-seconds timestamp (decimal digits only) and
// checks it is within the tolerance of now, in the past or the future.
func (s *scheme) checkTime(ts string, now time.Time) error {
	for i := 0; i < len(ts); i++ {
		if ts[i] < '0' || ts[i] > '9' {
			return fmt.Errorf("timestamp is not unix seconds: %w", ErrMalformed)
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("timestamp is not unix seconds: %w", ErrMalformed)
	}
	// now.Sub saturates, so an absurd timestamp is merely stale.
	if d := now.Sub(time.Unix(sec, 0)); d > s.tolerance || d < -s.tolerance {
		return fmt.Errorf("timestamp %s is %v from now, beyond the %v tolerance: %w", ts, d.Truncate(time.Second), s.tolerance, ErrStale)
	}
	return nil
}

// verifyStandard follows the Standard Webhooks spec: the signed content is
// "id.timestamp.body"; webhook-signature is a space-separated list of
// "<version>,<signature>" where only v1 (base64 HMAC-SHA256) is ours to
// check and other versions (v1a, …) are ignored.
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
	sigs := make([][]byte, 0, 4)
	n := 0
	for f := range strings.FieldsSeq(v) {
		if n++; n > maxSignatures {
			return fmt.Errorf("webhook-signature has more than %d entries: %w", maxSignatures, ErrMalformed)
		}
		ver, enc, ok := strings.Cut(f, ",")
		if !ok {
			return fmt.Errorf("webhook-signature entry without a version: %w", ErrMalformed)
		}
		if ver != "v1" {
			continue
		}
		sig, ok := decodeMAC(enc, true)
		if !ok {
			return fmt.Errorf("webhook-signature v1 entry is not a base64 SHA-256 HMAC: %w", ErrMalformed)
		}
		sigs = append(sigs, sig)
	}
	if len(sigs) == 0 {
		return fmt.Errorf("webhook-signature has no v1 entry: %w", ErrMalformed)
	}
	if !s.anyKey(sigs, []byte(id), []byte("."), []byte(ts), []byte("."), body) {
		return ErrMismatch
	}
	return nil
}

// verifyStripe follows Stripe's documentation: Stripe-Signature is
// "t=<unix>,v1=<hex>[,v1=<hex>…][,v0=<hex>]"; the signed payload is
// "t.body"; only v1 counts, any v1 may match, other keys are ignored.
func (s *scheme) verifyStripe(h http.Header, body []byte, now time.Time) error {
	v, err := header(h, "Stripe-Signature")
	if err != nil {
		return err
	}
	var ts string
	sigs := make([][]byte, 0, 4)
	n := 0
	for it := range strings.SplitSeq(v, ",") {
		if n++; n > maxSignatures {
			return fmt.Errorf("Stripe-Signature has more than %d items: %w", maxSignatures, ErrMalformed)
		}
		k, val, ok := strings.Cut(strings.Trim(it, " \t"), "=")
		if !ok {
			return fmt.Errorf("Stripe-Signature item without '=': %w", ErrMalformed)
		}
		switch k {
		case "t":
			if ts != "" {
				return fmt.Errorf("Stripe-Signature has two timestamps: %w", ErrMalformed)
			}
			if val == "" {
				return fmt.Errorf("Stripe-Signature has an empty timestamp: %w", ErrMalformed)
			}
			ts = val
		case "v1":
			sig, ok := decodeMAC(val, false)
			if !ok {
				return fmt.Errorf("Stripe-Signature v1 is not a hex SHA-256 HMAC: %w", ErrMalformed)
			}
			sigs = append(sigs, sig)
		}
	}
	if ts == "" {
		return fmt.Errorf("Stripe-Signature has no t=: %w", ErrMalformed)
	}
	if len(sigs) == 0 {
		return fmt.Errorf("Stripe-Signature has no v1=: %w", ErrMalformed)
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
		if msgID != "" {
			h.Set("X-GitHub-Delivery", msgID)
		}
	case SchemeShopify:
		h.Set("X-Shopify-Hmac-Sha256", base64.StdEncoding.EncodeToString(mac(key, body)))
		if msgID != "" {
			h.Set("X-Shopify-Webhook-Id", msgID)
		}
	case SchemeHMACSHA256:
		if s.base64 {
			h.Set(s.header, base64.StdEncoding.EncodeToString(mac(key, body)))
		} else {
			h.Set(s.header, hex.EncodeToString(mac(key, body)))
		}
	}
	return h
}

// ShopifyHeader returns the name under which h carries the Shopify header
// name (an X-Shopify-… name): Shopify also sends its headers without the
// X- prefix (shopify-hmac-sha256, shopify-webhook-id, …), which its own
// library accepts. The X- name wins when both are present (the receiver
// refuses ids that differ between the two).
func ShopifyHeader(h http.Header, name string) string {
	if len(h.Values(name)) > 0 {
		return name
	}
	if short, ok := strings.CutPrefix(name, "X-"); ok && len(h.Values(short)) > 0 {
		return short
	}
	return name
}

// NaturalEventID says where a scheme's provider puts its unique delivery or
// event id: a header name (non-empty header) or a JSON pointer into the body
// (non-empty pointer). Schemes without one (hmac-sha256, none, unknown)
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
