package consumer

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics of the consumer, registered with the default Prometheus registry.
var (
	outcomesTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "hookstream_consumer_events_total",
		Help: "Event outcomes, by source: processed, duplicate, failed (a retry follows), dead, parked.",
	}, []string{"source", "outcome"})
	processingSeconds = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "hookstream_consumer_processing_duration_seconds",
		Help:    "Time of one processing attempt (claim, handler, mark, commit), by source.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"source"})
	endToEndSeconds = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "hookstream_consumer_end_to_end_seconds",
		Help:    "Time from the receiver's acceptance (received-at) to PROCESSED, by source.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
	}, []string{"source"})
	lagRecords = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "hookstream_consumer_lag_records",
		Help: "Records of an owned partition not yet processed: the high watermark of the last fetch minus the stored position.",
	}, []string{"topic", "partition"})
	blockedCustomers = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "hookstream_consumer_blocked_customers",
		Help: "Customers with unfinished older events (customer_blocks), by state: BLOCKED (blocker in backoff), PARKED (blocker DEAD), DRAINING; counted every 10 seconds by each consumer.",
	}, []string{"state"})
	claimSeconds = promauto.NewHistogram(prometheus.HistogramOpts{
		Name:    "hookstream_consumer_claim_seconds",
		Help:    "Time of a batch transaction's claim: begin, fence, bucket lock and the locked look-up of its customers and events in every bucket.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	})
	batchEvents = promauto.NewHistogram(prometheus.HistogramOpts{
		Name:    "hookstream_consumer_batch_events",
		Help:    "Events whose outcome one batch transaction committed: its count is the PostgreSQL commits of the batch path, its sum the events.",
		Buckets: []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000},
	})
	badDecisions = promauto.NewCounter(prometheus.CounterOpts{
		Name: "hookstream_consumer_unreadable_decisions_total",
		Help: "Events whose travelling receiver decision (audit-record header) could not be read or named another event; their ACCEPTED record is missing.",
	})
	redatedDecisions = promauto.NewCounter(prometheus.CounterOpts{
		Name: "hookstream_consumer_redated_decisions_total",
		Help: "Receivers' decisions dated where audit_log has no partition (a receiver's clock far off, or older than the audit retention), written at the consumer's time with the receiver's in detail.receiver_at.",
	})
	malformedTotal = promauto.NewCounter(prometheus.CounterOpts{
		Name: "hookstream_consumer_malformed_records_total",
		Help: "Records of the events topic without hookstream metadata, sent to the dead-letter topic.",
	})
	pausesTotal = promauto.NewCounter(prometheus.CounterOpts{
		Name: "hookstream_consumer_pauses_total",
		Help: "Attempts that could not run because PostgreSQL or the broker failed (retried without counting an attempt).",
	})
)
