package signature

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Vectors are computed here with crypto/hmac directly, the way each
// provider's documentation specifies, never with the code under test.
func hmacSHA256(key, msg string) []byte {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(msg))
	return m.Sum(nil)
}

func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

func mustVerifier(t *testing.T, c Config) Verifier {
	t.Helper()
	v, err := NewVerifier(c)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// The test vector published with the Standard Webhooks specification.
func TestStandardWebhooksSpecVector(t *testing.T) {
	t.Parallel()
	v := mustVerifier(t, Config{Scheme: SchemeStandardWebhooks, Secrets: []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}})
	h := hdr("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek", "webhook-timestamp", "1614265330",
		"webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
	if err := v.Verify(h, []byte(`{"test": 2432232314}`), time.Unix(1614265330, 0)); err != nil {
		t.Fatal(err)
	}
}

func TestSchemes(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	ts := strconv.FormatInt(now.Unix(), 10)
	staleTS := strconv.FormatInt(now.Add(-6*time.Minute).Unix(), 10)
	futureTS := strconv.FormatInt(now.Add(6*time.Minute).Unix(), 10)
	body := `{"id":"evt_1","amount":100}`
	tampered := `{"id":"evt_1","amount":999}`

	swKey, _ := base64.StdEncoding.DecodeString("c2VjcmV0LWtleS1ieXRlcw==")
	swSecret := "whsec_c2VjcmV0LWtleS1ieXRlcw=="
	swSig := func(id, ts, b string) string {
		return "v1," + base64.StdEncoding.EncodeToString(hmacSHA256(string(swKey), id+"."+ts+"."+b))
	}
	stripeSig := func(secret, ts, b string) string { return hex.EncodeToString(hmacSHA256(secret, ts+"."+b)) }

	type tc struct {
		name string
		cfg  Config
		h    http.Header
		body string
		want error // nil = valid
	}
	sw := Config{Scheme: SchemeStandardWebhooks, Secrets: []string{"whsec_b2xkLXJvdGF0ZWQ=", swSecret}}
	stripe := Config{Scheme: SchemeStripe, Secrets: []string{"whsec_old", "whsec_new"}}
	gh := Config{Scheme: SchemeGitHub, Secrets: []string{"gh-old", "gh-new"}}
	shop := Config{Scheme: SchemeShopify, Secrets: []string{"shop-old", "shop-new"}}
	hm := Config{Scheme: SchemeHMACSHA256, Secrets: []string{"k1", "k2"}}
	hm64 := Config{Scheme: SchemeHMACSHA256, Secrets: []string{"k1"}, Header: "X-Sig", Encoding: "base64"}
	cases := []tc{
		{"sw valid (rotated: second secret)", sw, hdr("webhook-id", "msg_1", "webhook-timestamp", ts, "webhook-signature", swSig("msg_1", ts, body)), body, nil},
		{"sw several signatures, one valid", sw, hdr("webhook-id", "msg_1", "webhook-timestamp", ts, "webhook-signature", "v1a,xyz v1,"+base64.StdEncoding.EncodeToString(make([]byte, 32))+" "+swSig("msg_1", ts, body)), body, nil},
		{"sw tampered body", sw, hdr("webhook-id", "msg_1", "webhook-timestamp", ts, "webhook-signature", swSig("msg_1", ts, body)), tampered, ErrMismatch},
		{"sw id swapped", sw, hdr("webhook-id", "msg_2", "webhook-timestamp", ts, "webhook-signature", swSig("msg_1", ts, body)), body, ErrMismatch},
		{"sw stale", sw, hdr("webhook-id", "msg_1", "webhook-timestamp", staleTS, "webhook-signature", swSig("msg_1", staleTS, body)), body, ErrStale},
		{"sw future", sw, hdr("webhook-id", "msg_1", "webhook-timestamp", futureTS, "webhook-signature", swSig("msg_1", futureTS, body)), body, ErrStale},
		{"sw malformed timestamp", sw, hdr("webhook-id", "msg_1", "webhook-timestamp", "yesterday", "webhook-signature", swSig("msg_1", ts, body)), body, ErrMalformed},
		{"sw malformed signature", sw, hdr("webhook-id", "msg_1", "webhook-timestamp", ts, "webhook-signature", "v1,not*base64"), body, ErrMalformed},
		{"sw entry without version", sw, hdr("webhook-id", "msg_1", "webhook-timestamp", ts, "webhook-signature", "abc"), body, ErrMalformed},
		{"sw only unknown versions", sw, hdr("webhook-id", "msg_1", "webhook-timestamp", ts, "webhook-signature", "v2,abc"), body, ErrMissing},
		{"sw missing id", sw, hdr("webhook-timestamp", ts, "webhook-signature", swSig("msg_1", ts, body)), body, ErrMissing},
		{"sw too many signatures", sw, hdr("webhook-id", "msg_1", "webhook-timestamp", ts, "webhook-signature", strings.Repeat("v1,AAAA ", 17)), body, ErrMalformed},

		{"stripe valid (rotated)", stripe, hdr("Stripe-Signature", "t="+ts+",v1="+stripeSig("whsec_new", ts, body)+",v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39"), body, nil},
		{"stripe second v1 valid", stripe, hdr("Stripe-Signature", "t="+ts+",v1="+strings.Repeat("00", 32)+",v1="+stripeSig("whsec_old", ts, body)), body, nil},
		{"stripe tampered", stripe, hdr("Stripe-Signature", "t="+ts+",v1="+stripeSig("whsec_new", ts, body)), tampered, ErrMismatch},
		{"stripe unknown secret", stripe, hdr("Stripe-Signature", "t="+ts+",v1="+stripeSig("whsec_other", ts, body)), body, ErrMismatch},
		{"stripe stale", stripe, hdr("Stripe-Signature", "t="+staleTS+",v1="+stripeSig("whsec_new", staleTS, body)), body, ErrStale},
		{"stripe timestamp swapped", stripe, hdr("Stripe-Signature", "t="+futureTS+",v1="+stripeSig("whsec_new", ts, body)), body, ErrStale},
		{"stripe no t", stripe, hdr("Stripe-Signature", "v1="+stripeSig("whsec_new", ts, body)), body, ErrMalformed},
		{"stripe no v1", stripe, hdr("Stripe-Signature", "t="+ts+",v0=abc"), body, ErrMissing},
		{"stripe garbage", stripe, hdr("Stripe-Signature", "garbage"), body, ErrMalformed},
		{"stripe missing", stripe, hdr(), body, ErrMissing},

		{"github valid (rotated)", gh, hdr("X-Hub-Signature-256", "sha256="+hex.EncodeToString(hmacSHA256("gh-new", body))), body, nil},
		{"github tampered", gh, hdr("X-Hub-Signature-256", "sha256="+hex.EncodeToString(hmacSHA256("gh-new", body))), tampered, ErrMismatch},
		{"github no prefix", gh, hdr("X-Hub-Signature-256", hex.EncodeToString(hmacSHA256("gh-new", body))), body, ErrMalformed},
		{"github sha1 only", gh, hdr("X-Hub-Signature", "sha1=abc"), body, ErrMissing},
		{"github short", gh, hdr("X-Hub-Signature-256", "sha256=abcd"), body, ErrMalformed},

		{"shopify valid (rotated)", shop, hdr("X-Shopify-Hmac-Sha256", base64.StdEncoding.EncodeToString(hmacSHA256("shop-new", body))), body, nil},
		{"shopify tampered", shop, hdr("X-Shopify-Hmac-Sha256", base64.StdEncoding.EncodeToString(hmacSHA256("shop-new", body))), tampered, ErrMismatch},
		{"shopify hex instead of base64", shop, hdr("X-Shopify-Hmac-Sha256", hex.EncodeToString(hmacSHA256("shop-new", body))), body, ErrMalformed},

		{"hmac hex valid", hm, hdr("X-Signature", hex.EncodeToString(hmacSHA256("k2", body))), body, nil},
		{"hmac hex with sha256= prefix", hm, hdr("X-Signature", "sha256="+hex.EncodeToString(hmacSHA256("k1", body))), body, nil},
		{"hmac hex uppercase", hm, hdr("X-Signature", strings.ToUpper(hex.EncodeToString(hmacSHA256("k1", body)))), body, nil},
		{"hmac tampered", hm, hdr("X-Signature", hex.EncodeToString(hmacSHA256("k1", body))), tampered, ErrMismatch},
		{"hmac not hex", hm, hdr("X-Signature", "zz"), body, ErrMalformed},
		{"hmac too long", hm, hdr("X-Signature", strings.Repeat("a", 5000)), body, ErrMalformed},
		{"hmac base64 valid", hm64, hdr("X-Sig", base64.StdEncoding.EncodeToString(hmacSHA256("k1", body))), body, nil},
		{"hmac base64 given hex", hm64, hdr("X-Sig", hex.EncodeToString(hmacSHA256("k1", body))), body, ErrMalformed},
		{"hmac base64 wrong header", hm64, hdr("X-Signature", base64.StdEncoding.EncodeToString(hmacSHA256("k1", body))), body, ErrMissing},

		{"none", Config{Scheme: SchemeNone}, hdr(), body, nil},
	}
	for _, c := range cases {
		err := mustVerifier(t, c.cfg).Verify(c.h, []byte(c.body), now)
		switch {
		case c.want == nil && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != nil && !errors.Is(err, c.want):
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
}

func TestSignerRoundTrip(t *testing.T) {
	t.Parallel()
	now := time.Now()
	body := []byte(`{"a":1}`)
	for _, c := range []Config{
		{Scheme: SchemeStandardWebhooks, Secrets: []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}},
		{Scheme: SchemeStripe, Secrets: []string{"whsec_x"}},
		{Scheme: SchemeGitHub, Secrets: []string{"g"}},
		{Scheme: SchemeShopify, Secrets: []string{"s"}},
		{Scheme: SchemeHMACSHA256, Secrets: []string{"h"}},
		{Scheme: SchemeHMACSHA256, Secrets: []string{"h"}, Header: "X-B", Encoding: "base64"},
		{Scheme: SchemeNone},
	} {
		s, err := NewSigner(c)
		if err != nil {
			t.Fatal(err)
		}
		h := s.Sign("msg_1", body, now)
		if err := mustVerifier(t, c).Verify(h, body, now); err != nil {
			t.Errorf("%s: %v", c.Scheme, err)
		}
		if c.Scheme != SchemeNone {
			if err := mustVerifier(t, c).Verify(h, []byte(`{"a":2}`), now); !errors.Is(err, ErrMismatch) {
				t.Errorf("%s: tampered body: %v", c.Scheme, err)
			}
		}
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		c    Config
		want string
	}{
		{Config{Scheme: "rot13", Secrets: []string{"x"}}, `unknown scheme "rot13"`},
		{Config{}, "scheme is required"},
		{Config{Scheme: SchemeGitHub}, "at least one secret"},
		{Config{Scheme: SchemeStripe, Secrets: []string{" "}}, "empty secret"},
		{Config{Scheme: SchemeStandardWebhooks, Secrets: []string{"whsec_%%%"}}, "whsec_ followed by base64"},
		{Config{Scheme: SchemeStandardWebhooks, Secrets: []string{"whsec_"}}, "whsec_ followed by base64"},
		{Config{Scheme: SchemeHMACSHA256, Secrets: []string{"x"}, Encoding: "base32"}, "signature_encoding"},
		{Config{Scheme: SchemeStripe, Secrets: []string{"x"}, Tolerance: -time.Second}, "tolerance"},
	}
	for _, c := range cases {
		_, err := NewVerifier(c.c)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want %q", c.c, err, c.want)
		}
	}
}

func TestNaturalEventID(t *testing.T) {
	t.Parallel()
	for scheme, want := range map[string][2]string{
		SchemeStandardWebhooks: {"webhook-id", ""}, SchemeStripe: {"", "/id"},
		SchemeGitHub: {"X-GitHub-Delivery", ""}, SchemeShopify: {"X-Shopify-Webhook-Id", ""},
	} {
		h, p, ok := NaturalEventID(scheme)
		if !ok || h != want[0] || p != want[1] {
			t.Errorf("%s: %q %q %v", scheme, h, p, ok)
		}
	}
	for _, s := range []string{SchemeHMACSHA256, SchemeNone} {
		if _, _, ok := NaturalEventID(s); ok {
			t.Errorf("%s has a natural id", s)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	body := []byte(strings.Repeat("x", 1024))
	now := time.Now()
	for _, c := range []Config{
		{Scheme: SchemeStandardWebhooks, Secrets: []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}},
		{Scheme: SchemeStripe, Secrets: []string{"whsec_x"}},
		{Scheme: SchemeGitHub, Secrets: []string{"g"}},
		{Scheme: SchemeShopify, Secrets: []string{"s"}},
		{Scheme: SchemeHMACSHA256, Secrets: []string{"h"}},
	} {
		s, _ := NewSigner(c)
		v, _ := NewVerifier(c)
		h := s.Sign("msg_1", body, now)
		b.Run(c.Scheme, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := v.Verify(h, body, now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
