package recorder

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rtmrec/rtmrec/internal/promreg"
)

// Metrics are the recorder's Prometheus instruments, shared by all recordings of a process.
type Metrics struct {
	PacketsWritten prometheus.Counter // media frames written to files
	PacketsDropped prometheus.Counter // RTP packets dropped because a recording's queue was full
	BytesWritten   prometheus.Counter // bytes written to media files
	Active         prometheus.Gauge   // recordings running
	// Reanchors counts tracks whose timeline re-anchored, by cause: "ssrc" (a new
	// stream), "timestamp" (a confirmed timestamp jump) or "sender_report" (the sender's
	// clock stalled or stepped). A browser call has none.
	Reanchors *prometheus.CounterVec
	// MuxForced counts frames written early because a recording's mux queue was full.
	MuxForced prometheus.Counter
	// SyncSeconds is how long a durable-sync round of a Writers took: the recordings'
	// flushes and the file system sync. Rounds near the sync interval mean the disk is
	// what limits the recordings a node can take.
	SyncSeconds prometheus.Histogram
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
		Reanchors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "rtmrec", Subsystem: "recorder", Name: "timeline_reanchors_total",
			Help: "Tracks whose timeline re-anchored, by cause: ssrc (a new stream) or timestamp (a confirmed timestamp jump).",
		}, []string{"cause"}),
		MuxForced: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "rtmrec", Subsystem: "recorder", Name: "mux_forced_total",
			Help: "Frames written before their interleaving delay because a recording's mux queue held its maximum of frames or bytes.",
		}),
		SyncSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "rtmrec", Subsystem: "recorder", Name: "sync_seconds",
			Help:    "Duration of a durable-sync round of the recordings: their flushes and one file system sync.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
	}
	if reg == nil {
		return m
	}
	// A collector that cannot be registered still counts, just unexported.
	m.PacketsWritten, _ = promreg.Register(reg, m.PacketsWritten)
	m.PacketsDropped, _ = promreg.Register(reg, m.PacketsDropped)
	m.BytesWritten, _ = promreg.Register(reg, m.BytesWritten)
	m.Active, _ = promreg.Register(reg, m.Active)
	m.Reanchors, _ = promreg.Register(reg, m.Reanchors)
	m.MuxForced, _ = promreg.Register(reg, m.MuxForced)
	m.SyncSeconds, _ = promreg.Register(reg, m.SyncSeconds)
	return m
}
