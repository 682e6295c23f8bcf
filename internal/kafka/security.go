package kafka

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// Security is how every client of the binary encrypts its traffic to the
// brokers and authenticates. The zero value is plaintext without SASL, what
// the embedded broker and the compose file's Kafka speak.
type Security struct {
	// TLS dials the brokers over TLS, verifying them against the system's
	// roots (or CAFile). Default false. Setting CAFile, CertFile or KeyFile
	// implies it.
	TLS bool
	// CAFile is a PEM bundle of the CAs that sign the brokers' certificates,
	// used instead of the system's roots. Default: the system's roots.
	CAFile string
	// CertFile and KeyFile are a PEM client certificate and its key, for
	// brokers that authenticate clients by certificate (mutual TLS). Both or
	// neither. Default: none.
	CertFile, KeyFile string
	// SASLMechanism is "plain", "scram-sha-256" or "scram-sha-512"
	// (case-insensitive). Default "": no SASL. PLAIN sends the password
	// as it is; use it over TLS only.
	SASLMechanism string
	// SASLUser and SASLPassword are the SASL credentials; both are required
	// with a mechanism.
	SASLUser, SASLPassword string
}

// SASL mechanism names accepted by Security.SASLMechanism.
const (
	SASLPlain       = "plain"
	SASLScramSHA256 = "scram-sha-256"
	SASLScramSHA512 = "scram-sha-512"
)

// Opts returns the client options that apply s. An error names the flag
// and variable of the setting that is wrong, so a bad setting fails at start
// and not at the first dial.
func (s Security) Opts() ([]kgo.Opt, error) {
	var opts []kgo.Opt
	tlsCfg, err := s.tlsConfig()
	if err != nil {
		return nil, err
	}
	if tlsCfg != nil {
		opts = append(opts, kgo.DialTLSConfig(tlsCfg))
	}
	mech := strings.ToLower(strings.TrimSpace(s.SASLMechanism))
	if mech == "" {
		if s.SASLUser != "" || s.SASLPassword != "" {
			return nil, errors.New("kafka-sasl-mechanism (HOOKSTREAM_KAFKA_SASL_MECHANISM): required when a SASL user or password is set: plain, scram-sha-256 or scram-sha-512")
		}
		return opts, nil
	}
	switch mech {
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
	default:
		return nil, fmt.Errorf("kafka-sasl-mechanism (HOOKSTREAM_KAFKA_SASL_MECHANISM): %q is not one of plain, scram-sha-256, scram-sha-512", s.SASLMechanism)
	}
	if s.SASLUser == "" {
		return nil, fmt.Errorf("kafka-sasl-user (HOOKSTREAM_KAFKA_SASL_USER): required with SASL mechanism %s", mech)
	}
	if s.SASLPassword == "" {
		return nil, fmt.Errorf("kafka-sasl-password (HOOKSTREAM_KAFKA_SASL_PASSWORD): required with SASL mechanism %s", mech)
	}
	switch mech {
	case SASLPlain:
		opts = append(opts, kgo.SASL(plain.Auth{User: s.SASLUser, Pass: s.SASLPassword}.AsMechanism()))
	case SASLScramSHA256:
		opts = append(opts, kgo.SASL(scram.Auth{User: s.SASLUser, Pass: s.SASLPassword}.AsSha256Mechanism()))
	case SASLScramSHA512:
		opts = append(opts, kgo.SASL(scram.Auth{User: s.SASLUser, Pass: s.SASLPassword}.AsSha512Mechanism()))
	}
	return opts, nil
}

// tlsConfig is nil when TLS is off. franz-go sets ServerName per broker
// from the address it dials.
func (s Security) tlsConfig() (*tls.Config, error) {
	if !s.TLS && s.CAFile == "" && s.CertFile == "" && s.KeyFile == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if s.CAFile != "" {
		pem, err := os.ReadFile(s.CAFile)
		if err != nil {
			return nil, fmt.Errorf("kafka-tls-ca (HOOKSTREAM_KAFKA_TLS_CA): %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafka-tls-ca (HOOKSTREAM_KAFKA_TLS_CA): %s holds no PEM certificate", s.CAFile)
		}
		cfg.RootCAs = pool
	}
	switch {
	case s.CertFile == "" && s.KeyFile == "":
	case s.CertFile == "":
		return nil, errors.New("kafka-tls-cert (HOOKSTREAM_KAFKA_TLS_CERT): required with kafka-tls-key")
	case s.KeyFile == "":
		return nil, errors.New("kafka-tls-key (HOOKSTREAM_KAFKA_TLS_KEY): required with kafka-tls-cert")
	default:
		cert, err := tls.LoadX509KeyPair(s.CertFile, s.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("kafka-tls-cert, kafka-tls-key (HOOKSTREAM_KAFKA_TLS_CERT, HOOKSTREAM_KAFKA_TLS_KEY): %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
