package recorder

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the recorder's Prometheus instruments, shared by all recordings of a process.
type Metrics struct {
	PacketsWritten prometheus.Counter // media frames written to files
	PacketsDropped prometheus.Counter // RTP packets dropped because a recording's queue was full
	BytesWritten   prometheus.Counter // bytes written to media files
	Active         prometheus.Gauge   // recordings running
}

// NewMetrics creates the recorder metrics and registers them with reg (nil: not registered).
// Collectors already registered by an earlier call are reused.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		PacketsWritten: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "rtmrec", Subsystem: "recorder", Name: "packets_written_total",
			Help: "Media frames written to recording files.",
		}),
		PacketsDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "rtmrec", Subsystem: "recorder", Name: "packets_dropped_total",
			Help: "RTP packets dropped because a recording's queue was full.",
		}),
		BytesWritten: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "rtmrec", Subsystem: "recorder", Name: "bytes_written_total",
			Help: "Bytes written to recording files.",
		}),
		Active: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "rtmrec", Subsystem: "recorder", Name: "recordings_active",
			Help: "Recordings running.",
		}),
	}
	if reg == nil {
		return m
	}
	m.PacketsWritten = register(reg, m.PacketsWritten)
	m.PacketsDropped = register(reg, m.PacketsDropped)
	m.BytesWritten = register(reg, m.BytesWritten)
	m.Active = register(reg, m.Active)
	return m
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}
