package signature

import (
	"crypto/hmac"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

var fuzzNow = time.Unix(1_700_000_000, 0)

// verdict runs Verify and fails the test when it accepts a header that an
// independent check says is not a valid signature.
func fuzzVerify(t *testing.T, c Config, h http.Header, body []byte, valid func() bool) {
	v, err := NewVerifier(c)
	if err != nil {
		t.Fatal(err)
	}
	err = v.Verify(h, body, fuzzNow)
	if err == nil && !valid() {
		t.Fatalf("accepted an invalid signature: %v", h)
	}
	if err != nil && !(errors.Is(err, ErrMissing) || errors.Is(err, ErrMalformed) || errors.Is(err, ErrStale) || errors.Is(err, ErrMismatch)) {
		t.Fatalf("unclassified error %v", err)
	}
}

func FuzzStandardWebhooksHeader(f *testing.F) {
	f.Add("msg_1", "1700000000", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", []byte(`{}`))
	f.Add("", "", "", []byte(``))
	f.Add("m", "-1", "v1, v1,, ,v1", []byte(`x`))
	f.Fuzz(func(t *testing.T, id, ts, sig string, body []byte) {
		c := Config{Scheme: SchemeStandardWebhooks, Secrets: []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}}
		h := http.Header{}
		h.Set("webhook-id", id)
		h.Set("webhook-timestamp", ts)
		h.Set("webhook-signature", sig)
		fuzzVerify(t, c, h, body, func() bool {
			key, _ := base64.StdEncoding.DecodeString("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
			want := mac(key, []byte(h.Get("webhook-id")+"."+h.Get("webhook-timestamp")+"."), body)
			for _, f := range strings.Fields(h.Get("webhook-signature")) {
				if got, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(f, "v1,")); err == nil && strings.HasPrefix(f, "v1,") && hmac.Equal(got, want) {
					return true
				}
			}
			return false
		})
	})
}

func FuzzStripeHeader(f *testing.F) {
	f.Add("t=1700000000,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd", []byte(`{}`))
	f.Add("t=,v1=", []byte(``))
	f.Add("t=1700000000,t=1,v1=zz,v0=", []byte(`x`))
	f.Fuzz(func(t *testing.T, header string, body []byte) {
		c := Config{Scheme: SchemeStripe, Secrets: []string{"whsec_test"}}
		h := http.Header{}
		h.Set("Stripe-Signature", header)
		fuzzVerify(t, c, h, body, func() bool {
			var ts string
			for _, it := range strings.Split(h.Get("Stripe-Signature"), ",") {
				if v, ok := strings.CutPrefix(strings.TrimSpace(it), "t="); ok {
					ts = v
				}
			}
			sec, err := strconv.ParseInt(ts, 10, 64)
			if err != nil || fuzzNow.Sub(time.Unix(sec, 0)).Abs() > DefaultTolerance {
				return false
			}
			want := mac([]byte("whsec_test"), []byte(ts+"."), body)
			for _, it := range strings.Split(h.Get("Stripe-Signature"), ",") {
				if v, ok := strings.CutPrefix(strings.TrimSpace(it), "v1="); ok {
					if got, err := hex.DecodeString(v); err == nil && hmac.Equal(got, want) {
						return true
					}
				}
			}
			return false
		})
	})
}

func fuzzSimple(f *testing.F, c Config, name string, decode func(string) ([]byte, bool)) {
	f.Fuzz(func(t *testing.T, header string, body []byte) {
		h := http.Header{}
		h.Set(name, header)
		fuzzVerify(t, c, h, body, func() bool {
			got, ok := decode(h.Get(name))
			return ok && hmac.Equal(got, mac([]byte(c.Secrets[0]), body))
		})
	})
}

func FuzzGitHubHeader(f *testing.F) {
	f.Add("sha256=0000", []byte(`{}`))
	f.Add("sha1=abc", []byte(``))
	fuzzSimple(f, Config{Scheme: SchemeGitHub, Secrets: []string{"gh"}}, "X-Hub-Signature-256", func(v string) ([]byte, bool) {
		hx, ok := strings.CutPrefix(v, "sha256=")
		b, err := hex.DecodeString(hx)
		return b, ok && err == nil
	})
}

func FuzzShopifyHeader(f *testing.F) {
	f.Add("AAAA", []byte(`{}`))
	f.Add("", []byte(``))
	fuzzSimple(f, Config{Scheme: SchemeShopify, Secrets: []string{"shop"}}, "X-Shopify-Hmac-Sha256", func(v string) ([]byte, bool) {
		b, err := base64.StdEncoding.DecodeString(v)
		return b, err == nil
	})
}

func FuzzHMACHeader(f *testing.F) {
	f.Add("sha256=00", []byte(`{}`))
	f.Add("ZZ", []byte(`x`))
	fuzzSimple(f, Config{Scheme: SchemeHMACSHA256, Secrets: []string{"k"}}, "X-Signature", func(v string) ([]byte, bool) {
		b, err := hex.DecodeString(strings.TrimPrefix(v, "sha256="))
		return b, err == nil
	})
}
