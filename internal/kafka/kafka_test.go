package kafka

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestTransactionalProducerRefreshesMetadataSoon: a transactional
// producer's retry of CONCURRENT_TRANSACTIONS waits for a metadata
// refresh, which the client spaces by MetadataMinAge; at franz-go's 5 s
// default the audit relay's rounds on Apache Kafka 4 stalled 3-5 s each
// time (BENCHMARKS.md, "The consumer on a 3-node cluster"). The speed is
// measured there; this holds the setting that gives it.
func TestTransactionalProducerRefreshesMetadataSoon(t *testing.T) {
	cl, err := NewTransactionalProducer(Config{Brokers: []string{"127.0.0.1:1"}}, "t")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	got, _ := cl.OptValue(kgo.MetadataMinAge).(time.Duration)
	if got <= 0 || got > time.Second {
		t.Errorf("MetadataMinAge %v, want at most 1s (franz-go's default is 5s)", got)
	}
}
