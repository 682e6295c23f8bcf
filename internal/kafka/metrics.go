package kafka

import (
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"
)

// MetricsNamespace prefixes the client metrics: hookstream_produce_records_total,
// hookstream_produce_bytes_total, hookstream_fetch_records_total,
// hookstream_connects_total, hookstream_buffered_produce_records_total, …
// (see kprom).
const MetricsNamespace = "hookstream"

// Metrics returns a client option that exports the client's metrics
// (franz-go's kprom) on the default Prometheus registry, the one /metrics
// serves, labelled with the client's id (client_id). Pass a fresh one to
// every client: kprom keeps one client's collectors per value, and
// unregisters them when that client closes.
func Metrics() kgo.Opt {
	return kgo.WithHooks(kprom.NewMetrics(MetricsNamespace,
		kprom.Registerer(defaultRegistry),
		kprom.Gatherer(prometheus.DefaultGatherer),
		kprom.WithClientLabel(),
		// kprom's default counts bytes only; records and batches per topic
		// are what an operator compares with the HTTP and consumer counts.
		kprom.FetchAndProduceDetail(kprom.ByNode, kprom.ByTopic, kprom.Records, kprom.Batches, kprom.UncompressedBytes),
	))
}

var defaultRegistry = &tolerantRegistry{reg: prometheus.DefaultRegisterer, mine: map[prometheus.Collector]bool{}}

// tolerantRegistry lets two open clients share a client id in one process
// (a test, or a role started twice): the first one's metrics are exported
// and the second's are not, where the default registry would panic. It
// unregisters only what it registered, so the second client's close leaves
// the first's metrics in place.
type tolerantRegistry struct {
	reg  prometheus.Registerer
	mu   sync.Mutex
	mine map[prometheus.Collector]bool
}

func (r *tolerantRegistry) Register(c prometheus.Collector) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.reg.Register(c); err != nil {
		return err
	}
	r.mine[c] = true
	return nil
}

func (r *tolerantRegistry) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		var dup prometheus.AlreadyRegisteredError
		if err := r.Register(c); err != nil && !errors.As(err, &dup) {
			panic(err)
		}
	}
}

func (r *tolerantRegistry) Unregister(c prometheus.Collector) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.mine[c] {
		return false
	}
	delete(r.mine, c)
	return r.reg.Unregister(c)
}
