package audit

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics of the relay and the sink, registered with the default
// Prometheus registry.
var (
	relayPublishedTotal = promauto.NewCounter(prometheus.CounterOpts{
		Name: "hookstream_audit_relay_published_total",
		Help: "Audit records the relay published from audit_log to the audit topic.",
	})
	relayRoundRecords = promauto.NewHistogram(prometheus.HistogramOpts{
		Name:    "hookstream_audit_relay_round_records",
		Help:    "Records per round of the relay (one Kafka transaction and one position write each); rounds per second is this histogram's count rate.",
		Buckets: prometheus.ExponentialBuckets(1, 4, 8), // 1 to 16384, past the default Batch
	})
	relayLagSeconds = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "hookstream_audit_relay_lag_seconds",
		Help: "Age of the last record the relay published when it published it (0 when nothing was left): how far the audit topic trails the table.",
	})
	sinkQuarantinedTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "hookstream_audit_sink_quarantined_total",
		Help: "Records of the audit topic the sink could not copy into audit_log and kept in audit_quarantine, by reason (decode, or the SQLSTATE of the table's refusal).",
	}, []string{"reason"})
)
