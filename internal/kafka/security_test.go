package kafka

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
)

// writeCert writes a self-signed certificate and its key as PEM files.
func writeCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "hookstream test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestSecurityOptsRejectBadSettingsNamingTheFlag(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cert, key := writeCert(t, dir)
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		s    Security
		want string
	}{
		{"unknown mechanism", Security{SASLMechanism: "gssapi", SASLUser: "u", SASLPassword: "p"},
			`kafka-sasl-mechanism (HOOKSTREAM_KAFKA_SASL_MECHANISM): "gssapi" is not one of plain, scram-sha-256, scram-sha-512`},
		{"credentials without mechanism", Security{SASLUser: "u", SASLPassword: "p"},
			"kafka-sasl-mechanism (HOOKSTREAM_KAFKA_SASL_MECHANISM): required"},
		{"mechanism without user", Security{SASLMechanism: "scram-sha-512", SASLPassword: "p"},
			"kafka-sasl-user (HOOKSTREAM_KAFKA_SASL_USER): required"},
		{"mechanism without password", Security{SASLMechanism: "plain", SASLUser: "u"},
			"kafka-sasl-password (HOOKSTREAM_KAFKA_SASL_PASSWORD): required"},
		{"missing CA file", Security{TLS: true, CAFile: filepath.Join(dir, "missing-ca.pem")},
			"kafka-tls-ca (HOOKSTREAM_KAFKA_TLS_CA): open " + filepath.Join(dir, "missing-ca.pem")},
		{"CA file without a certificate", Security{CAFile: notPEM},
			"kafka-tls-ca (HOOKSTREAM_KAFKA_TLS_CA): " + notPEM + " holds no PEM certificate"},
		{"cert without key", Security{CertFile: cert},
			"kafka-tls-key (HOOKSTREAM_KAFKA_TLS_KEY): required with kafka-tls-cert"},
		{"key without cert", Security{KeyFile: key},
			"kafka-tls-cert (HOOKSTREAM_KAFKA_TLS_CERT): required with kafka-tls-key"},
		{"key that is not a key", Security{CertFile: cert, KeyFile: notPEM},
			"kafka-tls-cert, kafka-tls-key (HOOKSTREAM_KAFKA_TLS_CERT, HOOKSTREAM_KAFKA_TLS_KEY)"},
	}
	for _, c := range cases {
		opts, err := c.s.Opts()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Opts() = %d opts, %v; want an error containing %q", c.name, len(opts), err, c.want)
		}
	}
}

func TestSecurityOptsBuildTLSAndSASL(t *testing.T) {
	t.Parallel()
	cert, key := writeCert(t, t.TempDir())
	cases := []struct {
		name     string
		s        Security
		wantOpts int
		wantTLS  bool
		wantSASL string // mechanism name as franz-go reports it
	}{
		{"zero value: plaintext", Security{}, 0, false, ""},
		{"tls with system roots", Security{TLS: true}, 1, true, ""},
		{"a CA implies tls", Security{CAFile: cert}, 1, true, ""},
		{"mutual tls", Security{CAFile: cert, CertFile: cert, KeyFile: key}, 1, true, ""},
		{"plain", Security{TLS: true, SASLMechanism: "plain", SASLUser: "u", SASLPassword: "p"}, 2, true, "PLAIN"},
		{"scram-sha-256, any case", Security{SASLMechanism: "SCRAM-SHA-256", SASLUser: "u", SASLPassword: "p"}, 1, false, "SCRAM-SHA-256"},
		{"scram-sha-512", Security{SASLMechanism: "scram-sha-512", SASLUser: "u", SASLPassword: "p"}, 1, false, "SCRAM-SHA-512"},
	}
	for _, c := range cases {
		opts, err := c.s.Opts()
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if len(opts) != c.wantOpts {
			t.Errorf("%s: %d options, want %d", c.name, len(opts), c.wantOpts)
		}
		// The options must be accepted by a client, and set what they say.
		cl, err := kgo.NewClient(append(opts, kgo.SeedBrokers("127.0.0.1:1"))...)
		if err != nil {
			t.Errorf("%s: client: %v", c.name, err)
			continue
		}
		if gotTLS := cl.OptValue(kgo.DialTLS).(bool); gotTLS != c.wantTLS {
			t.Errorf("%s: TLS %v, want %v", c.name, gotTLS, c.wantTLS)
		}
		if c.s.CAFile != "" {
			if cfg := cl.OptValue(kgo.DialTLSConfig).(*tls.Config); cfg.RootCAs == nil {
				t.Errorf("%s: the CA file did not become the root CAs", c.name)
			}
		}
		var gotSASL string
		if ms, ok := cl.OptValue(kgo.SASL).([]sasl.Mechanism); ok && len(ms) > 0 {
			gotSASL = ms[0].Name()
		}
		if gotSASL != c.wantSASL {
			t.Errorf("%s: SASL %q, want %q", c.name, gotSASL, c.wantSASL)
		}
		cl.Close()
	}
}
