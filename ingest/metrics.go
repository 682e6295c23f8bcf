package ingest

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics of the receiver, registered with the default Prometheus registry
// (served at /metrics).
var (
	requestsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "hookstream_ingest_requests_total",
		Help: "Webhook requests answered, by source and HTTP status.",
	}, []string{"source", "status"})
	requestSeconds = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "hookstream_ingest_request_duration_seconds",
		Help:    "Time from request to answer, by source.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"source"})
	produceSeconds = promauto.NewHistogram(prometheus.HistogramOpts{
		Name:    "hookstream_ingest_produce_duration_seconds",
		Help:    "Time from producing an event to the broker's acknowledgement (acks=all).",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	})
	duplicateCheckSeconds = promauto.NewHistogram(prometheus.HistogramOpts{
		Name:    "hookstream_ingest_duplicate_check_duration_seconds",
		Help:    "Time a request waited for its duplicate check (look-ups of concurrent requests share one query).",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
	})
	auditSeconds = promauto.NewHistogram(prometheus.HistogramOpts{
		Name:    "hookstream_ingest_audit_produce_duration_seconds",
		Help:    "Time from producing a decision's audit record to the audit topic (rejections and duplicates; an accepted event's travels with it) to the broker's acknowledgement.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	})
	rejectionsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "hookstream_ingest_rejections_total",
		Help: "Requests not accepted, by source and reason (the error code).",
	}, []string{"source", "reason"})
	duplicatesTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "hookstream_ingest_duplicates_total",
		Help: "Requests for events already known, by source and what was done (duplicate, in_flight, redrive).",
	}, []string{"source", "kind"})
	rejectionsSummarized = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "hookstream_ingest_rejections_summarized_total",
		Help: "Rejections past their source and reason's rate, recorded only in a summary audit record, by source and reason (also in hookstream_ingest_rejections_total).",
	}, []string{"source", "reason"})
	unverifiedBodyBytes = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "hookstream_ingest_unverified_body_bytes",
		Help: "Bytes of memory held by request bodies whose signature is not verified yet (bounded by the receiver's budget).",
	})
	preAuthEvictions = promauto.NewCounter(prometheus.CounterOpts{
		Name: "hookstream_ingest_preauth_evictions_total",
		Help: "Failing client addresses dropped from a full table of a source's pre-authentication budgets (each starts again with a full budget).",
	})
	auditFailuresTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "hookstream_ingest_audit_publish_failures_total",
		Help: "Audit records the receiver could not publish to the audit topic, by kind: rejected (the rejection was answered all the same) or duplicate (the request was answered 503).",
	}, []string{"kind"})
)

// observe records one answered request.
func observe(req *request, status int) {
	if src := req.src; src != nil {
		if status == http.StatusAccepted {
			src.metrics.accepted.Inc()
		} else {
			requestsTotal.WithLabelValues(src.cfg.Name, strconv.Itoa(status)).Inc()
		}
		src.metrics.seconds.Observe(time.Since(req.receivedAt).Seconds())
		return
	}
	// Bounded label values: never a stranger's path segment.
	requestsTotal.WithLabelValues("unknown", strconv.Itoa(status)).Inc()
	requestSeconds.WithLabelValues("unknown").Observe(time.Since(req.receivedAt).Seconds())
}

// sourceMetrics are a source's series on the request path, looked up once
// (a label lookup hashes the values on every call).
type sourceMetrics struct {
	accepted prometheus.Counter
	seconds  prometheus.Observer
}

func newSourceMetrics(name string) sourceMetrics {
	return sourceMetrics{
		accepted: requestsTotal.WithLabelValues(name, strconv.Itoa(http.StatusAccepted)),
		seconds:  requestSeconds.WithLabelValues(name),
	}
}
