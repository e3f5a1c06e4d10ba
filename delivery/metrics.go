package delivery

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rtmrec/rtmrec/internal/promreg"
)

// metrics are the journeys' Prometheus collectors.
type metrics struct {
	outcomes *prometheus.CounterVec // outcome: stopped | failed
	pending  prometheus.Gauge
	repairs  *prometheus.CounterVec // result: repaired | unrepairable
	corrupt  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rtmrec_recordings_decided_total",
			Help: "Recordings whose journey ended, by outcome (stopped: uploaded and reported; failed: reported with a reason, file kept).",
		}, []string{"outcome"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rtmrec_upload_pending",
			Help: "Finished recordings waiting for an upload attempt or a retry.",
		}),
		repairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rtmrec_recordings_repaired_total",
			Help: "Recordings a crash cut off, by repair result (repaired, unrepairable).",
		}, []string{"result"}),
		corrupt: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rtmrec_recordings_unreadable_total",
			Help: "Recording journeys found unreadable in the ledger at start (kept for the operator).",
		}),
	}
	m.outcomes.WithLabelValues("stopped")
	m.outcomes.WithLabelValues("failed")
	if reg == nil {
		return m, nil
	}
	var errs [4]error
	m.outcomes, errs[0] = promreg.Register(reg, m.outcomes)
	m.pending, errs[1] = promreg.Register(reg, m.pending)
	m.repairs, errs[2] = promreg.Register(reg, m.repairs)
	m.corrupt, errs[3] = promreg.Register(reg, m.corrupt)
	if err := errors.Join(errs[:]...); err != nil {
		return nil, fmt.Errorf("delivery: register metrics: %w", err)
	}
	return m, nil
}
