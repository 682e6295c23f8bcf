package signature_test

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

	"github.com/hookstream/hookstream/ingest/signature"
)

// Expected values are computed here with crypto/hmac directly, the way each
// provider documents its scheme, never with the code under test.
func hmacSHA256(key []byte, msg ...string) []byte {
	m := hmac.New(sha256.New, key)
	for _, s := range msg {
		m.Write([]byte(s))
	}
	return m.Sum(nil)
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// swKey is the Standard Webhooks key: base64 after the optional whsec_.
func swKey(t testing.TB, secret string) []byte {
	t.Helper()
	k, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Provider documentation of each scheme, as the tests read it:
//
//	standard-webhooks: webhook-signature = "v1," + base64(HMAC(base64dec(secret minus whsec_), id + "." + ts + "." + body))
//	stripe:            Stripe-Signature = "t=" + ts + ",v1=" + hex(HMAC(secret as-is, ts + "." + body))
//	github:            X-Hub-Signature-256 = "sha256=" + hex(HMAC(secret, body))
//	shopify:           X-Shopify-Hmac-Sha256 = base64(HMAC(secret, body))
//	hmac-sha256:       <header> = hex (or base64) of HMAC(secret, body)
func swSig(key []byte, id, ts, body string) string {
	return "v1," + b64(hmacSHA256(key, id, ".", ts, ".", body))
}

func stripeSig(secret, ts, body string) string {
	return hex.EncodeToString(hmacSHA256([]byte(secret), ts, ".", body))
}

func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

func mustVerifier(t testing.TB, c signature.Config) signature.Verifier {
	t.Helper()
	v, err := signature.NewVerifier(c)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func mustSigner(t testing.TB, c signature.Config) signature.Signer {
	t.Helper()
	s, err := signature.NewSigner(c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const (
	specSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	specID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	specTS     = 1614265330
	specBody   = `{"test": 2432232314}`
	specSig    = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

// The vector published with the Standard Webhooks specification (and in
// Svix's manual-verification docs).
func TestStandardWebhooksSpecVector(t *testing.T) {
	t.Parallel()
	ts := strconv.Itoa(specTS)
	if got := swSig(swKey(t, specSecret), specID, ts, specBody); got != specSig {
		t.Fatalf("test helper disagrees with the spec: %s", got)
	}
	h := hdr("webhook-id", specID, "webhook-timestamp", ts, "webhook-signature", specSig)
	signed := time.Unix(specTS, 0)
	cases := []struct {
		name   string
		secret string
		now    time.Time
		want   error
	}{
		{"at signing time", specSecret, signed, nil},
		{"secret without whsec_ prefix", strings.TrimPrefix(specSecret, "whsec_"), signed, nil},
		{"5m later (edge)", specSecret, signed.Add(5 * time.Minute), nil},
		{"5m earlier (edge)", specSecret, signed.Add(-5 * time.Minute), nil},
		{"5m1s later", specSecret, signed.Add(5*time.Minute + time.Second), signature.ErrStale},
		{"5m1s earlier", specSecret, signed.Add(-5*time.Minute - time.Second), signature.ErrStale},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			v := mustVerifier(t, signature.Config{Scheme: signature.SchemeStandardWebhooks, Secrets: []string{c.secret}})
			if err := v.Verify(h, []byte(specBody), c.now); !errors.Is(err, c.want) || (c.want == nil && err != nil) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
	t.Run("signer reproduces it", func(t *testing.T) {
		t.Parallel()
		got := mustSigner(t, signature.Config{Scheme: signature.SchemeStandardWebhooks, Secrets: []string{specSecret}}).
			Sign(specID, []byte(specBody), signed)
		if got.Get("webhook-signature") != specSig || got.Get("webhook-id") != specID || got.Get("webhook-timestamp") != strconv.Itoa(specTS) {
			t.Fatalf("Sign = %v", got)
		}
	})
}

// The values GitHub's "Validating webhook deliveries" page gives for testing
// an implementation.
func TestGitHubDocsVector(t *testing.T) {
	t.Parallel()
	const want = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
	if got := "sha256=" + hex.EncodeToString(hmacSHA256([]byte("It's a Secret to Everybody"), "Hello, World!")); got != want {
		t.Fatalf("test helper disagrees with GitHub's docs: %s", got)
	}
	c := signature.Config{Scheme: signature.SchemeGitHub, Secrets: []string{"It's a Secret to Everybody"}}
	if err := mustVerifier(t, c).Verify(hdr("X-Hub-Signature-256", want), []byte("Hello, World!"), time.Now()); err != nil {
		t.Fatal(err)
	}
	if got := mustSigner(t, c).Sign("", []byte("Hello, World!"), time.Now()).Get("X-Hub-Signature-256"); got != want {
		t.Fatalf("Sign = %s", got)
	}
}

func TestVerify(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	ts := strconv.FormatInt(now.Unix(), 10)
	at := func(d time.Duration) string { return strconv.FormatInt(now.Add(d).Unix(), 10) }
	const body = `{"id":"evt_1","amount":100}`
	const tampered = `{"id":"evt_1","amount":999}`
	zero32 := make([]byte, 32)

	// Rotation: the request is signed with the second secret of each config.
	swOld, swNew := "whsec_"+b64([]byte("old-standard-webhooks-key")), "whsec_"+b64([]byte("new-standard-webhooks-key"))
	newKey := swKey(t, swNew)
	sw := signature.Config{Scheme: signature.SchemeStandardWebhooks, Secrets: []string{swOld, swNew}}
	swH := func(id, ts, sig string) http.Header {
		return hdr("webhook-id", id, "webhook-timestamp", ts, "webhook-signature", sig)
	}
	good := swSig(newKey, "msg_1", ts, body)

	stripe := signature.Config{Scheme: signature.SchemeStripe, Secrets: []string{"whsec_old", "whsec_new"}}
	stH := func(v string) http.Header { return hdr("Stripe-Signature", v) }
	stGood := stripeSig("whsec_new", ts, body)

	gh := signature.Config{Scheme: signature.SchemeGitHub, Secrets: []string{"gh-old", "gh-new"}}
	ghGood := "sha256=" + hex.EncodeToString(hmacSHA256([]byte("gh-new"), body))

	shop := signature.Config{Scheme: signature.SchemeShopify, Secrets: []string{"shop-old", "shop-new"}}
	shopGood := b64(hmacSHA256([]byte("shop-new"), body))

	hm := signature.Config{Scheme: signature.SchemeHMACSHA256, Secrets: []string{"k1", "k2"}}
	hmGood := hex.EncodeToString(hmacSHA256([]byte("k2"), body))
	hm64 := signature.Config{Scheme: signature.SchemeHMACSHA256, Secrets: []string{"k1", "k2"}, Header: "X-Sig", Encoding: "base64"}
	hm64Good := b64(hmacSHA256([]byte("k2"), body))

	cases := []struct {
		name string
		cfg  signature.Config
		h    http.Header
		body string
		want error // nil = valid
	}{
		// standard-webhooks
		{"sw rotated secret", sw, swH("msg_1", ts, good), body, nil},
		{"sw first secret", sw, swH("msg_1", ts, swSig(swKey(t, swOld), "msg_1", ts, body)), body, nil},
		{"sw several entries, v1a ignored, one valid", sw, swH("msg_1", ts, "v1a,bm90LWNoZWNrZWQ= v1,"+b64(zero32)+" "+good), body, nil},
		{"sw extra spaces", sw, swH("msg_1", ts, "  "+good+"   v2,xyz "), body, nil},
		{"sw tampered body", sw, swH("msg_1", ts, good), tampered, signature.ErrMismatch},
		{"sw id swapped", sw, swH("msg_2", ts, good), body, signature.ErrMismatch},
		{"sw timestamp swapped within tolerance", sw, swH("msg_1", at(time.Second), good), body, signature.ErrMismatch},
		{"sw unknown secret", sw, swH("msg_1", ts, swSig([]byte("other"), "msg_1", ts, body)), body, signature.ErrMismatch},
		{"sw stale past", sw, swH("msg_1", at(-6*time.Minute), swSig(newKey, "msg_1", at(-6*time.Minute), body)), body, signature.ErrStale},
		{"sw stale future", sw, swH("msg_1", at(6*time.Minute), swSig(newKey, "msg_1", at(6*time.Minute), body)), body, signature.ErrStale},
		{"sw absurd timestamp", sw, swH("msg_1", "99999999999999999", good), body, signature.ErrStale},
		{"sw timestamp not a number", sw, swH("msg_1", "yesterday", good), body, signature.ErrMalformed},
		{"sw timestamp signed", sw, swH("msg_1", "+"+ts, good), body, signature.ErrMalformed},
		{"sw timestamp in ms overflows", sw, swH("msg_1", "99999999999999999999", good), body, signature.ErrMalformed},
		{"sw signature not base64", sw, swH("msg_1", ts, "v1,not*base64"), body, signature.ErrMalformed},
		{"sw signature hex instead of base64", sw, swH("msg_1", ts, "v1,"+hex.EncodeToString(hmacSHA256(newKey, "msg_1.", ts, ".", body))), body, signature.ErrMalformed},
		{"sw signature short", sw, swH("msg_1", ts, "v1,AAAA"), body, signature.ErrMalformed},
		{"sw entry without version", sw, swH("msg_1", ts, b64(zero32)), body, signature.ErrMalformed},
		{"sw only other versions", sw, swH("msg_1", ts, "v1a,abc v2,def"), body, signature.ErrMalformed},
		{"sw 17 entries", sw, swH("msg_1", ts, strings.Repeat("v2,x ", 16)+good), body, signature.ErrMalformed},
		{"sw 16 entries", sw, swH("msg_1", ts, strings.Repeat("v2,x ", 15)+good), body, nil},
		{"sw header too long", sw, swH("msg_1", ts, good+" v2,"+strings.Repeat("x", 5000)), body, signature.ErrMalformed},
		{"sw control character", sw, swH("msg_1", ts, good+"\x00"), body, signature.ErrMalformed},
		{"sw repeated signature header", sw, func() http.Header { h := swH("msg_1", ts, good); h.Add("webhook-signature", good); return h }(), body, signature.ErrMalformed},
		{"sw missing id", sw, hdr("webhook-timestamp", ts, "webhook-signature", good), body, signature.ErrMissing},
		{"sw missing timestamp", sw, hdr("webhook-id", "msg_1", "webhook-signature", good), body, signature.ErrMissing},
		{"sw missing signature", sw, hdr("webhook-id", "msg_1", "webhook-timestamp", ts), body, signature.ErrMissing},
		{"sw empty signature", sw, swH("msg_1", ts, "  "), body, signature.ErrMissing},
		{"sw custom tolerance", signature.Config{Scheme: signature.SchemeStandardWebhooks, Secrets: []string{swNew}, Tolerance: 10 * time.Minute},
			swH("msg_1", at(-6*time.Minute), swSig(newKey, "msg_1", at(-6*time.Minute), body)), body, nil},

		// stripe
		{"stripe rotated secret, with v0", stripe, stH("t=" + ts + ",v1=" + stGood + ",v0=" + hex.EncodeToString(zero32)), body, nil},
		{"stripe second v1 valid", stripe, stH("t=" + ts + ",v1=" + hex.EncodeToString(zero32) + ",v1=" + stripeSig("whsec_old", ts, body)), body, nil},
		{"stripe signature first", stripe, stH("v1=" + stGood + ",t=" + ts), body, nil},
		{"stripe spaces after commas", stripe, stH("t=" + ts + ", v1=" + stGood), body, nil},
		{"stripe uppercase hex", stripe, stH("t=" + ts + ",v1=" + strings.ToUpper(stGood)), body, nil},
		{"stripe key is the secret with its whsec_ prefix", stripe, stH("t=" + ts + ",v1=" + stripeSig("new", ts, body)), body, signature.ErrMismatch},
		{"stripe tampered body", stripe, stH("t=" + ts + ",v1=" + stGood), tampered, signature.ErrMismatch},
		{"stripe unknown secret", stripe, stH("t=" + ts + ",v1=" + stripeSig("whsec_other", ts, body)), body, signature.ErrMismatch},
		{"stripe v0 only matches", stripe, stH("t=" + ts + ",v1=" + hex.EncodeToString(zero32) + ",v0=" + stGood), body, signature.ErrMismatch},
		{"stripe timestamp swapped within tolerance", stripe, stH("t=" + at(time.Second) + ",v1=" + stGood), body, signature.ErrMismatch},
		{"stripe stale past", stripe, stH("t=" + at(-6*time.Minute) + ",v1=" + stripeSig("whsec_new", at(-6*time.Minute), body)), body, signature.ErrStale},
		{"stripe stale future", stripe, stH("t=" + at(6*time.Minute) + ",v1=" + stripeSig("whsec_new", at(6*time.Minute), body)), body, signature.ErrStale},
		{"stripe no t", stripe, stH("v1=" + stGood), body, signature.ErrMalformed},
		{"stripe two t", stripe, stH("t=" + ts + ",t=" + ts + ",v1=" + stGood), body, signature.ErrMalformed},
		{"stripe t not a number", stripe, stH("t=abc,v1=" + stGood), body, signature.ErrMalformed},
		{"stripe no v1", stripe, stH("t=" + ts + ",v0=" + stGood), body, signature.ErrMalformed},
		{"stripe v1 not hex", stripe, stH("t=" + ts + ",v1=" + b64(zero32)), body, signature.ErrMalformed},
		{"stripe item without =", stripe, stH("t=" + ts + ",v1"), body, signature.ErrMalformed},
		{"stripe garbage", stripe, stH("garbage"), body, signature.ErrMalformed},
		{"stripe 17 items", stripe, stH("t=" + ts + strings.Repeat(",v0=x", 15) + ",v1=" + stGood), body, signature.ErrMalformed},
		{"stripe 16 items", stripe, stH("t=" + ts + strings.Repeat(",v0=x", 14) + ",v1=" + stGood), body, nil},
		{"stripe missing", stripe, hdr(), body, signature.ErrMissing},

		// github
		{"github rotated secret", gh, hdr("X-Hub-Signature-256", ghGood), body, nil},
		{"github tampered body", gh, hdr("X-Hub-Signature-256", ghGood), tampered, signature.ErrMismatch},
		{"github unknown secret", gh, hdr("X-Hub-Signature-256", "sha256="+hex.EncodeToString(hmacSHA256([]byte("x"), body))), body, signature.ErrMismatch},
		{"github without sha256= prefix", gh, hdr("X-Hub-Signature-256", strings.TrimPrefix(ghGood, "sha256=")), body, signature.ErrMalformed},
		{"github base64 instead of hex", gh, hdr("X-Hub-Signature-256", "sha256="+b64(hmacSHA256([]byte("gh-new"), body))), body, signature.ErrMalformed},
		{"github short", gh, hdr("X-Hub-Signature-256", "sha256=abcd"), body, signature.ErrMalformed},
		{"github legacy sha1 only", gh, hdr("X-Hub-Signature", "sha1="+strings.Repeat("0", 40)), body, signature.ErrMissing},

		// shopify
		{"shopify rotated secret", shop, hdr("X-Shopify-Hmac-Sha256", shopGood), body, nil},
		{"shopify tampered body", shop, hdr("X-Shopify-Hmac-Sha256", shopGood), tampered, signature.ErrMismatch},
		{"shopify unknown secret", shop, hdr("X-Shopify-Hmac-Sha256", b64(hmacSHA256([]byte("x"), body))), body, signature.ErrMismatch},
		{"shopify hex instead of base64", shop, hdr("X-Shopify-Hmac-Sha256", hex.EncodeToString(hmacSHA256([]byte("shop-new"), body))), body, signature.ErrMalformed},
		{"shopify unpadded base64", shop, hdr("X-Shopify-Hmac-Sha256", strings.TrimRight(shopGood, "=")), body, signature.ErrMalformed},
		{"shopify missing", shop, hdr(), body, signature.ErrMissing},

		// hmac-sha256
		{"hmac hex rotated secret", hm, hdr("X-Signature", hmGood), body, nil},
		{"hmac hex with sha256= prefix", hm, hdr("X-Signature", "sha256="+hmGood), body, nil},
		{"hmac hex uppercase", hm, hdr("X-Signature", strings.ToUpper(hmGood)), body, nil},
		{"hmac tampered body", hm, hdr("X-Signature", hmGood), tampered, signature.ErrMismatch},
		{"hmac not hex", hm, hdr("X-Signature", "zz-not-hex"), body, signature.ErrMalformed},
		{"hmac hex given base64", hm, hdr("X-Signature", hm64Good), body, signature.ErrMalformed},
		{"hmac too long", hm, hdr("X-Signature", strings.Repeat("ab", 6000)), body, signature.ErrMalformed},
		{"hmac missing", hm, hdr("X-Sig", hmGood), body, signature.ErrMissing},
		{"hmac base64 valid", hm64, hdr("X-Sig", hm64Good), body, nil},
		{"hmac base64 given hex", hm64, hdr("X-Sig", hmGood), body, signature.ErrMalformed},
		{"hmac base64 tampered", hm64, hdr("X-Sig", hm64Good), tampered, signature.ErrMismatch},
		{"hmac base64 wrong header", hm64, hdr("X-Signature", hm64Good), body, signature.ErrMissing},

		// none
		{"none without headers", signature.Config{Scheme: signature.SchemeNone}, hdr(), body, nil},
		{"none ignores secrets and garbage", signature.Config{Scheme: signature.SchemeNone, Secrets: []string{"x"}}, hdr("X-Signature", "zz"), body, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			err := mustVerifier(t, c.cfg).Verify(c.h, []byte(c.body), now)
			if c.want == nil {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			if !strings.HasPrefix(err.Error(), c.cfg.Scheme+": ") {
				t.Errorf("error %q does not name the scheme", err)
			}
		})
	}
}

// A failed verification must not reveal what would have matched, nor a
// secret.
func TestErrorsDoNotHelpForgery(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	ts := strconv.FormatInt(now.Unix(), 10)
	body := `{"a":1}`
	zero := make([]byte, 32)
	cases := []struct {
		name    string
		cfg     signature.Config
		h       http.Header
		secrets []string
		leaks   []string // expected signatures, every spelling
	}{
		{"standard-webhooks", signature.Config{Scheme: signature.SchemeStandardWebhooks, Secrets: []string{specSecret}},
			hdr("webhook-id", "m", "webhook-timestamp", ts, "webhook-signature", "v1,"+b64(zero)), []string{specSecret, strings.TrimPrefix(specSecret, "whsec_")},
			[]string{strings.TrimPrefix(swSig(swKey(t, specSecret), "m", ts, body), "v1,")}},
		{"stripe", signature.Config{Scheme: signature.SchemeStripe, Secrets: []string{"whsec_s"}},
			hdr("Stripe-Signature", "t="+ts+",v1="+hex.EncodeToString(zero)), []string{"whsec_s"}, []string{stripeSig("whsec_s", ts, body)}},
		{"github", signature.Config{Scheme: signature.SchemeGitHub, Secrets: []string{"ghsecret"}},
			hdr("X-Hub-Signature-256", "sha256="+hex.EncodeToString(zero)), []string{"ghsecret"}, []string{hex.EncodeToString(hmacSHA256([]byte("ghsecret"), body))}},
		{"shopify", signature.Config{Scheme: signature.SchemeShopify, Secrets: []string{"shopsecret"}},
			hdr("X-Shopify-Hmac-Sha256", b64(zero)), []string{"shopsecret"}, []string{b64(hmacSHA256([]byte("shopsecret"), body))}},
		{"hmac-sha256", signature.Config{Scheme: signature.SchemeHMACSHA256, Secrets: []string{"hmsecret"}},
			hdr("X-Signature", hex.EncodeToString(zero)), []string{"hmsecret"}, []string{hex.EncodeToString(hmacSHA256([]byte("hmsecret"), body))}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			err := mustVerifier(t, c.cfg).Verify(c.h, []byte(body), now)
			if !errors.Is(err, signature.ErrMismatch) {
				t.Fatalf("got %v", err)
			}
			for _, s := range append(c.secrets, c.leaks...) {
				if strings.Contains(err.Error(), s) {
					t.Fatalf("error %q contains %q", err, s)
				}
			}
		})
	}
}

// Sign produces what the provider documents (checked against independent
// computation), the verifier accepts it, and it is bound to the body, the
// first secret and, for timestamped schemes, the time.
func TestSignerRoundTrip(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	ts := strconv.FormatInt(now.Unix(), 10)
	body := `{"a":1}`
	cases := []struct {
		cfg  signature.Config
		want http.Header // the exact headers a provider would send
	}{
		{signature.Config{Scheme: signature.SchemeStandardWebhooks, Secrets: []string{specSecret, "whsec_" + b64([]byte("second"))}},
			hdr("webhook-id", "msg_1", "webhook-timestamp", ts, "webhook-signature", swSig(swKey(t, specSecret), "msg_1", ts, body))},
		{signature.Config{Scheme: signature.SchemeStripe, Secrets: []string{"whsec_x", "whsec_y"}},
			hdr("Stripe-Signature", "t="+ts+",v1="+stripeSig("whsec_x", ts, body))},
		{signature.Config{Scheme: signature.SchemeGitHub, Secrets: []string{"g", "h"}},
			hdr("X-Hub-Signature-256", "sha256="+hex.EncodeToString(hmacSHA256([]byte("g"), body)), "X-GitHub-Delivery", "msg_1")},
		{signature.Config{Scheme: signature.SchemeShopify, Secrets: []string{"s", "t"}},
			hdr("X-Shopify-Hmac-Sha256", b64(hmacSHA256([]byte("s"), body)), "X-Shopify-Webhook-Id", "msg_1")},
		{signature.Config{Scheme: signature.SchemeHMACSHA256, Secrets: []string{"h", "i"}},
			hdr("X-Signature", hex.EncodeToString(hmacSHA256([]byte("h"), body)))},
		{signature.Config{Scheme: signature.SchemeHMACSHA256, Secrets: []string{"h", "i"}, Header: "X-B", Encoding: "base64"},
			hdr("X-B", b64(hmacSHA256([]byte("h"), body)))},
		{signature.Config{Scheme: signature.SchemeNone}, hdr()},
	}
	for _, c := range cases {
		t.Run(c.cfg.Scheme+"/"+c.cfg.Encoding, func(t *testing.T) {
			t.Parallel()
			got := mustSigner(t, c.cfg).Sign("msg_1", []byte(body), now)
			if len(got) != len(c.want) {
				t.Fatalf("Sign = %v, want %v", got, c.want)
			}
			for k := range c.want {
				if got.Get(k) != c.want.Get(k) {
					t.Fatalf("Sign %s = %q, want %q", k, got.Get(k), c.want.Get(k))
				}
			}
			if err := mustVerifier(t, c.cfg).Verify(got, []byte(body), now); err != nil {
				t.Fatalf("own signature rejected: %v", err)
			}
			if c.cfg.Scheme == signature.SchemeNone {
				return
			}
			if err := mustVerifier(t, c.cfg).Verify(got, []byte(`{"a":2}`), now); !errors.Is(err, signature.ErrMismatch) {
				t.Errorf("tampered body: %v", err)
			}
			// Signed with the first secret: a verifier that only knows the
			// second one must refuse.
			second := c.cfg
			second.Secrets = c.cfg.Secrets[1:]
			if err := mustVerifier(t, second).Verify(got, []byte(body), now); !errors.Is(err, signature.ErrMismatch) {
				t.Errorf("verifier without the first secret: %v", err)
			}
			if c.cfg.Scheme == signature.SchemeStandardWebhooks || c.cfg.Scheme == signature.SchemeStripe {
				if err := mustVerifier(t, c.cfg).Verify(got, []byte(body), now.Add(time.Hour)); !errors.Is(err, signature.ErrStale) {
					t.Errorf("an hour later: %v", err)
				}
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		c    signature.Config
		want string // in the message
	}{
		{"unknown scheme", signature.Config{Scheme: "rot13", Secrets: []string{"x"}}, `unknown scheme "rot13"; want one of standard-webhooks, stripe, github, shopify, hmac-sha256, none`},
		{"no scheme", signature.Config{}, "scheme is required"},
		{"scheme case matters", signature.Config{Scheme: "GitHub", Secrets: []string{"x"}}, `unknown scheme "GitHub"`},
		{"no secrets", signature.Config{Scheme: signature.SchemeGitHub}, "scheme github needs at least one secret"},
		{"empty secret", signature.Config{Scheme: signature.SchemeStripe, Secrets: []string{"whsec_ok", ""}}, "secrets[1]: empty secret"},
		{"blank secret", signature.Config{Scheme: signature.SchemeShopify, Secrets: []string{" \t"}}, "secrets[0]: empty secret"},
		{"whsec not base64", signature.Config{Scheme: signature.SchemeStandardWebhooks, Secrets: []string{"whsec_%%%"}}, "secrets[0]: a standard-webhooks secret is base64"},
		{"whsec empty", signature.Config{Scheme: signature.SchemeStandardWebhooks, Secrets: []string{"whsec_"}}, "secrets[0]: a standard-webhooks secret is base64"},
		{"bad encoding", signature.Config{Scheme: signature.SchemeHMACSHA256, Secrets: []string{"x"}, Encoding: "base32"}, `signature_encoding "base32": want hex or base64`},
		{"bad header", signature.Config{Scheme: signature.SchemeHMACSHA256, Secrets: []string{"x"}, Header: "X Sig"}, `signature_header "X Sig" is not a valid HTTP header name`},
		{"negative tolerance", signature.Config{Scheme: signature.SchemeStripe, Secrets: []string{"x"}, Tolerance: -time.Second}, "tolerance -1s must be positive"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			v, err := signature.NewVerifier(c.c)
			if err == nil || !strings.Contains(err.Error(), c.want) || v != nil {
				t.Fatalf("NewVerifier: %v, want an error containing %q", err, c.want)
			}
			if _, err := signature.NewSigner(c.c); err == nil {
				t.Fatal("NewSigner accepted it")
			}
			for _, s := range c.c.Secrets {
				if s := strings.TrimPrefix(s, "whsec_"); len(s) > 3 && strings.Contains(err.Error(), s) {
					t.Fatalf("error %q repeats a secret", err)
				}
			}
		})
	}
}

func TestSchemesAllConstruct(t *testing.T) {
	t.Parallel()
	for _, s := range signature.Schemes {
		secret := "whsec_" + b64([]byte("a usable key"))
		if _, err := signature.NewVerifier(signature.Config{Scheme: s, Secrets: []string{secret}}); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
}

func TestNaturalEventID(t *testing.T) {
	t.Parallel()
	cases := []struct {
		scheme, header, pointer string
		ok                      bool
	}{
		{signature.SchemeStandardWebhooks, "webhook-id", "", true},
		{signature.SchemeStripe, "", "/id", true},
		{signature.SchemeGitHub, "X-GitHub-Delivery", "", true},
		{signature.SchemeShopify, "X-Shopify-Webhook-Id", "", true},
		{signature.SchemeHMACSHA256, "", "", false},
		{signature.SchemeNone, "", "", false},
		{"unknown", "", "", false},
	}
	for _, c := range cases {
		t.Run(c.scheme, func(t *testing.T) {
			t.Parallel()
			h, p, ok := signature.NaturalEventID(c.scheme)
			if h != c.header || p != c.pointer || ok != c.ok {
				t.Fatalf("= %q, %q, %v", h, p, ok)
			}
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	body := []byte(strings.Repeat("x", 1024))
	now := time.Unix(1_700_000_000, 0)
	for _, c := range []signature.Config{
		{Scheme: signature.SchemeStandardWebhooks, Secrets: []string{specSecret}},
		{Scheme: signature.SchemeStripe, Secrets: []string{"whsec_x"}},
		{Scheme: signature.SchemeGitHub, Secrets: []string{"g"}},
		{Scheme: signature.SchemeShopify, Secrets: []string{"s"}},
		{Scheme: signature.SchemeHMACSHA256, Secrets: []string{"h"}},
		{Scheme: signature.SchemeNone},
	} {
		h := mustSigner(b, c).Sign("msg_1", body, now)
		v := mustVerifier(b, c)
		b.Run(c.Scheme, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if err := v.Verify(h, body, now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestShopifyUnprefixedHeader: Shopify's shopify-hmac-sha256 (without X-)
// is verified like X-Shopify-Hmac-Sha256; a wrong one still fails.
func TestShopifyUnprefixedHeader(t *testing.T) {
	cfg := signature.Config{Scheme: signature.SchemeShopify, Secrets: []string{"shopify-unit-secret"}}
	signer, _ := signature.NewSigner(cfg)
	v, err := signature.NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"id":1}`)
	sig := signer.Sign("", body, time.Now()).Get("X-Shopify-Hmac-Sha256")
	h := http.Header{}
	h.Set("shopify-hmac-sha256", sig)
	if err := v.Verify(h, body, time.Now()); err != nil {
		t.Errorf("unprefixed header: %v", err)
	}
	if err := v.Verify(h, []byte(`{"id":2}`), time.Now()); !errors.Is(err, signature.ErrMismatch) {
		t.Errorf("unprefixed header, other body: %v, want ErrMismatch", err)
	}
}
