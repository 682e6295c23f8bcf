package redact

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
)

func TestURL(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"https://hooks.example.com/in":                          "https://hooks.example.com/in",
		"https://user:s3cret@hooks.example.com/in":              "https://user:REDACTED@hooks.example.com/in",
		"https://ghp_token@hooks.example.com/in":                "https://REDACTED@hooks.example.com/in",
		"https://hooks.example.com/in?token=abc&x=1":            "https://hooks.example.com/in?token=REDACTED&x=REDACTED",
		"https://hooks.example.com/in?flag":                     "https://hooks.example.com/in?flag",
		"https://hooks.example.com/in#frag":                     "https://hooks.example.com/in#REDACTED",
		"postgres://hookstream:pw@db:5432/h?sslmode=disable":    "postgres://hookstream:REDACTED@db:5432/h?sslmode=disable",
		"postgres://db/h?password=pw&sslmode=require":           "postgres://db/h?password=REDACTED&sslmode=require",
		"postgres://db/h?SSLMode=require&sslpassword=pw":        "postgres://db/h?SSLMode=require&sslpassword=REDACTED",
		"host=db user=u password=pw dbname=h":                   "host=db user=u password=REDACTED dbname=h",
		"host=db password='p w\\'x' dbname=h":                   "host=db password=REDACTED dbname=h",
		"http://user:pa ss@host/":                               Mask, // does not parse: all of it
		"127.0.0.1:8080":                                        "127.0.0.1:8080",
		"https://hooks.example.com/in?%zz=1":                    "https://hooks.example.com/in?REDACTED",
		"https://hooks.example.com/p%2Fq?api_key=k%20v":         "https://hooks.example.com/p%2Fq?api_key=REDACTED",
		"https://u:p@hooks.example.com/in?token=t&sslmode=weak": "https://u:REDACTED@hooks.example.com/in?token=REDACTED&sslmode=weak",
		// Tokens in the path: Slack's and Discord's webhook URLs.
		"https://hooks.slack.com/services/T0A1B2C3D/B0E4F5G6H/xoxAbCdEfGh1234567890Ab":             "https://hooks.slack.com/services/T0A1B2C3D/B0E4F5G6H/REDACTED",
		"https://discord.com/api/webhooks/123456789012345678/aBcD-eFgH_1234567890aBcDeFgHiJkLmNoP": "https://discord.com/api/webhooks/123456789012345678/REDACTED",
		"https://hooks.example.com/order-fulfillment-updated/v2":                                   "https://hooks.example.com/order-fulfillment-updated/v2",
		"https://hooks.example.com/x/abcdefghijklmnopqrstuvwxyzabcdefgh":                           "https://hooks.example.com/x/REDACTED",
	}
	for in, want := range cases {
		if got := URL(in); got != want {
			t.Errorf("URL(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestTextHidesDestinationCredentials: the errors a failed delivery
// produces — net/http's own, which names the URL (with its password
// starred but its query intact), and one wrapping it — keep nothing of the
// credentials once passed through Text.
func TestTextHidesDestinationCredentials(t *testing.T) {
	t.Parallel()
	const dest = "http://hookuser:pa55word@127.0.0.1:1/hook/Pa7hT0kenXYZabcd42?token=t0ken&sig=s1g"
	u, _ := url.Parse(dest)
	errs := []error{
		&url.Error{Op: "Post", URL: dest, Err: errors.New("dial tcp 127.0.0.1:1: connect: connection refused")},
		&url.Error{Op: "Post", URL: u.Redacted(), Err: errors.New("context deadline exceeded")},
		fmt.Errorf("deliver to %s: 500 Internal Server Error: oops", dest),
		fmt.Errorf("deliver (%s).", dest),
		errors.New("connect `host=db password=pa55word`: refused"),
	}
	for _, err := range errs {
		got := Text(err.Error())
		for _, secret := range []string{"pa55word", "t0ken", "s1g", "Pa7hT0ken"} {
			if strings.Contains(got, secret) {
				t.Errorf("Text(%q) = %q: %s is still there", err, got, secret)
			}
		}
		if !strings.Contains(got, "127.0.0.1") && !strings.Contains(got, "host=db") {
			t.Errorf("Text(%q) = %q: lost where it went", err, got)
		}
	}
	if got := Text("plain text: password authentication failed"); got != "plain text: password authentication failed" {
		t.Errorf("text without credentials changed: %q", got)
	}
}
