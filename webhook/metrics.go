package webhook

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rtmrec/rtmrec/internal/promreg"
)

// metrics are the outbox's Prometheus collectors. Labels never carry URLs.
type metrics struct {
	deliveries *prometheus.CounterVec // result: delivered | retry | dead
	dead       prometheus.Counter
	depth      prometheus.Gauge
	latency    prometheus.Histogram // enqueue to delivery
	// enqueueFailures counts events whose commit failed and was retried.
	enqueueFailures prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rtmrec_webhook_deliveries_total",
			Help: "Webhook delivery attempts, by result (delivered, retry, dead).",
		}, []string{"result"}),
		dead: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rtmrec_webhook_dead_letters_total",
			Help: "Webhook events given up (retry period over, or not queueable) and kept as dead letters in the ledger.",
		}),
		depth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rtmrec_webhook_queue_depth",
			Help: "Webhook events waiting for delivery.",
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "rtmrec_webhook_delivery_latency_seconds",
			Help:    "Time from enqueue to successful delivery, retries included.",
			Buckets: prometheus.ExponentialBuckets(0.005, 4, 12), // 5 ms .. ~6 h
		}),
		enqueueFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rtmrec_webhook_enqueue_failures_total",
			Help: "Webhook events whose write to the ledger failed and was tried again.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	var errs [5]error
	m.deliveries, errs[0] = promreg.Register(reg, m.deliveries)
	m.dead, errs[1] = promreg.Register(reg, m.dead)
	m.depth, errs[2] = promreg.Register(reg, m.depth)
	m.latency, errs[3] = promreg.Register(reg, m.latency)
	m.enqueueFailures, errs[4] = promreg.Register(reg, m.enqueueFailures)
	if err := errors.Join(errs[:]...); err != nil {
		return nil, fmt.Errorf("webhook: register metrics: %w", err)
	}
	return m, nil
}
