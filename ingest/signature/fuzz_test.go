package signature_test

import (
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hookstream/hookstream/ingest/signature"
)

// The fuzz targets feed arbitrary header values and bodies to Verify. In a
// header, "$SIG" is replaced by the genuine signature of the body (computed
// here with crypto/hmac) so that the fuzzer also explores headers that are
// close to valid. Properties:
//
//   - no panic;
//   - every error wraps one of the four sentinels and repeats neither the
//     secret nor the expected signature;
//   - nil only when an independent check (the provider's documented
//     format, parsed here) says the signature is genuine and in time;
//   - the exact header a provider sends for the body is accepted.

var fuzzNow = time.Unix(1_700_000_000, 0)

const (
	fuzzSWSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	fuzzSecret   = "fuzz-secret"
)

func ows(s string) string { return strings.Trim(s, " \t") }

// inTime: decimal unix seconds within the default tolerance of fuzzNow.
func inTime(ts string) bool {
	for i := 0; i < len(ts); i++ {
		if ts[i] < '0' || ts[i] > '9' {
			return false
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	return err == nil && fuzzNow.Sub(time.Unix(sec, 0)).Abs() <= signature.DefaultTolerance
}

// check runs Verify and enforces the properties above; genuine is the
// independent verdict, canonical says the header is exactly what the
// provider sends, want is the expected signature and input what the fuzzer
// supplied.
func check(t *testing.T, c signature.Config, h http.Header, body []byte, genuine func() bool, canonical bool, want, input string) {
	t.Helper()
	v, err := signature.NewVerifier(c)
	if err != nil {
		t.Fatal(err)
	}
	err = v.Verify(h, body, fuzzNow)
	if err == nil && !genuine() {
		t.Fatalf("accepted a signature that is not genuine: %q", h)
	}
	if err != nil && canonical {
		t.Fatalf("rejected the provider's own signature %q: %v", h, err)
	}
	if err == nil {
		return
	}
	if !(errors.Is(err, signature.ErrMissing) || errors.Is(err, signature.ErrMalformed) ||
		errors.Is(err, signature.ErrStale) || errors.Is(err, signature.ErrMismatch)) {
		t.Fatalf("unclassified error %v", err)
	}
	if strings.Contains(err.Error(), c.Secrets[0]) || (!strings.Contains(input, want) && strings.Contains(err.Error(), want)) {
		t.Fatalf("error %q leaks the secret or the expected signature", err)
	}
}

func FuzzStandardWebhooksHeader(f *testing.F) {
	f.Add("msg_1", "1700000000", "v1,$SIG", []byte(`{}`))
	f.Add(specID, strconv.Itoa(specTS), specSig, []byte(specBody))
	f.Add("msg_1", "1700000000", "v1a,abc v1,AAAA v1,$SIG", []byte(`x`))
	f.Add("", "", "", []byte(``))
	f.Add("m", "-1", "v1, v1,, ,v1", []byte(`x`))
	f.Add("m", "1700000301", "v1,$SIG", []byte(`x`))
	key := swKey(f, fuzzSWSecret)
	f.Fuzz(func(t *testing.T, id, ts, sig string, body []byte) {
		want := b64(hmacSHA256(key, ows(id), ".", ows(ts), ".", string(body)))
		h := http.Header{}
		h.Set("webhook-id", id)
		h.Set("webhook-timestamp", ts)
		h.Set("webhook-signature", strings.ReplaceAll(sig, "$SIG", want))
		genuine := func() bool {
			if ows(id) == "" || !inTime(ows(ts)) {
				return false
			}
			for _, e := range strings.Fields(h.Get("webhook-signature")) {
				if e == "v1,"+want {
					return true
				}
			}
			return false
		}
		canonical := sig == "v1,$SIG" && id != "" && id == ows(id) && len(id) < 100 && !strings.ContainsFunc(id, isCtl) && inTime(ts)
		check(t, signature.Config{Scheme: signature.SchemeStandardWebhooks, Secrets: []string{fuzzSWSecret}}, h, body, genuine, canonical, want, id+ts+sig)
	})
}

func FuzzStripeHeader(f *testing.F) {
	f.Add("1700000000", "t=$T,v1=$SIG", []byte(`{}`))
	f.Add("1700000000", "t=$T,v1=00,v1=$SIG,v0=$SIG", []byte(`{}`))
	f.Add("1700000000", "v1=$SIG, t=$T", []byte(`{"id":"evt_1"}`))
	f.Add("", "t=,v1=", []byte(``))
	f.Add("1", "t=$T,t=1700000000,v1=zz,v0=", []byte(`x`))
	f.Add("1699999000", "t=$T,v1=$SIG", []byte(`x`))
	f.Fuzz(func(t *testing.T, ts, header string, body []byte) {
		want := stripeSig(fuzzSecret, ts, string(body))
		v := strings.ReplaceAll(strings.ReplaceAll(header, "$T", ts), "$SIG", want)
		h := http.Header{}
		h.Set("Stripe-Signature", v)
		genuine := func() bool {
			// Stripe's documented format: comma-separated key=value items,
			// one t, any number of v1; the signed payload is "t.body".
			var tvals, v1s []string
			for _, it := range strings.Split(ows(h.Get("Stripe-Signature")), ",") {
				k, val, _ := strings.Cut(ows(it), "=")
				switch k {
				case "t":
					tvals = append(tvals, val)
				case "v1":
					v1s = append(v1s, val)
				}
			}
			if len(tvals) != 1 || !inTime(tvals[0]) {
				return false
			}
			want := stripeSig(fuzzSecret, tvals[0], string(body))
			for _, s := range v1s {
				if strings.EqualFold(s, want) {
					return true
				}
			}
			return false
		}
		canonical := header == "t=$T,v1=$SIG" && inTime(ts)
		check(t, signature.Config{Scheme: signature.SchemeStripe, Secrets: []string{fuzzSecret}}, h, body, genuine, canonical, want, ts+header)
	})
}

// fuzzBody is the shape of the schemes that sign the body alone.
func fuzzBody(f *testing.F, c signature.Config, name string, encode func([]byte) string, genuine func(v, want string) bool, canonical string) {
	f.Fuzz(func(t *testing.T, header string, body []byte) {
		want := encode(hmacSHA256([]byte(fuzzSecret), string(body)))
		h := http.Header{}
		h.Set(name, strings.ReplaceAll(header, "$SIG", want))
		check(t, c, h, body, func() bool { return genuine(ows(h.Get(name)), want) }, header == canonical, want, header)
	})
}

func FuzzGitHubHeader(f *testing.F) {
	f.Add("sha256=$SIG", []byte(`{"zen":"Keep it logically awesome."}`))
	f.Add("sha256=$SIG", []byte(``))
	f.Add(" sha256=$SIG\t", []byte(`x`))
	f.Add("sha256=0000", []byte(`{}`))
	f.Add("sha1=$SIG", []byte(``))
	f.Add("$SIG", []byte(`x`))
	fuzzBody(f, signature.Config{Scheme: signature.SchemeGitHub, Secrets: []string{fuzzSecret}}, "X-Hub-Signature-256",
		hex.EncodeToString,
		func(v, want string) bool {
			s, ok := strings.CutPrefix(v, "sha256=")
			return ok && strings.EqualFold(s, want)
		}, "sha256=$SIG")
}

func FuzzShopifyHeader(f *testing.F) {
	f.Add("$SIG", []byte(`{"id":1}`))
	f.Add("$SIG=", []byte(`{}`))
	f.Add("AAAA", []byte(`{}`))
	f.Add("", []byte(``))
	fuzzBody(f, signature.Config{Scheme: signature.SchemeShopify, Secrets: []string{fuzzSecret}}, "X-Shopify-Hmac-Sha256",
		b64, func(v, want string) bool { return v == want }, "$SIG")
}

func FuzzHMACHeader(f *testing.F) {
	f.Add("$SIG", []byte(`{"event_id":"e1"}`), false)
	f.Add("sha256=$SIG", []byte(`{}`), false)
	f.Add("$SIG", []byte(`{}`), true)
	f.Add("sha256=$SIG", []byte(`{}`), true)
	f.Add("ZZ", []byte(`x`), false)
	f.Fuzz(func(t *testing.T, header string, body []byte, base64 bool) {
		c := signature.Config{Scheme: signature.SchemeHMACSHA256, Secrets: []string{fuzzSecret}, Encoding: "hex"}
		mac := hmacSHA256([]byte(fuzzSecret), string(body))
		want := hex.EncodeToString(mac)
		genuine := func(v string) bool { return strings.EqualFold(strings.TrimPrefix(v, "sha256="), want) }
		if base64 {
			c.Encoding = "base64"
			want = b64(mac)
			genuine = func(v string) bool { return v == want }
		}
		h := http.Header{}
		h.Set(signature.DefaultHeader, strings.ReplaceAll(header, "$SIG", want))
		check(t, c, h, body, func() bool { return genuine(ows(h.Get(signature.DefaultHeader))) }, header == "$SIG", want, header)
	})
}

func isCtl(r rune) bool { return r < ' ' || r == 0x7f }
