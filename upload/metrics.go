package upload

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rtmrec/rtmrec/internal/promreg"
)

// metrics are the uploader's Prometheus collectors. Labels never carry URLs.
type metrics struct {
	attempts *prometheus.CounterVec // outcome: success | retry | failure
	bytes    prometheus.Counter
	inFlight prometheus.Gauge
	duration *prometheus.HistogramVec // per attempt, by outcome
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rtmrec_upload_attempts_total",
			Help: "Upload attempts, by outcome (success, retry, failure).",
		}, []string{"outcome"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rtmrec_upload_bytes_total",
			Help: "Bytes sent to upload targets, retries included.",
		}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rtmrec_upload_in_flight",
			Help: "Upload attempts in progress.",
		}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "rtmrec_upload_attempt_duration_seconds",
			Help:    "Duration of upload attempts, by outcome.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 16), // 50 ms .. ~27 min
		}, []string{"outcome"}),
	}
	if reg == nil {
		return m, nil
	}
	var errs [4]error
	m.attempts, errs[0] = promreg.Register(reg, m.attempts)
	m.bytes, errs[1] = promreg.Register(reg, m.bytes)
	m.inFlight, errs[2] = promreg.Register(reg, m.inFlight)
	m.duration, errs[3] = promreg.Register(reg, m.duration)
	if err := errors.Join(errs[:]...); err != nil {
		return nil, fmt.Errorf("upload: register metrics: %w", err)
	}
	return m, nil
}
