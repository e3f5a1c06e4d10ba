package session

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rtmrec/rtmrec/rtm"
)

// Metrics are the session server's Prometheus metrics.
type Metrics struct {
	sessions       *prometheus.GaugeVec
	messages       *prometheus.CounterVec
	errors         *prometheus.CounterVec
	terminations   *prometheus.CounterVec
	connections    prometheus.Gauge
	rtpPackets     *prometheus.CounterVec
	recordings     prometheus.Gauge
	forwardDropped prometheus.Counter
	tokenRefreshes *prometheus.CounterVec
	limits         *prometheus.CounterVec
	setup          *prometheus.HistogramVec
}

// The limits of a session's inputs, as counted by
// rtmrec_session_limit_refusals_total.
const (
	limitMessageRate     = "message_rate"
	limitSessionsPerConn = "sessions_per_connection"
	limitCandidates      = "candidates"
	limitTracks          = "tracks"
	limitPauses          = "pauses"
)

// NewMetrics registers the session metrics with reg (nil: not exported).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		sessions: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rtmrec_sessions", Help: "Sessions by lifecycle state.",
		}, []string{"state"}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rtmrec_messages_received_total", Help: "RTM messages received, by type.",
		}, []string{"type"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rtmrec_errors_sent_total", Help: "RTM error messages sent, by code.",
		}, []string{"code"}),
		terminations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rtmrec_sessions_terminated_total", Help: "Sessions ended, by termination cause.",
		}, []string{"cause"}),
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rtmrec_websocket_connections", Help: "Open /rtm WebSocket connections.",
		}),
		rtpPackets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rtmrec_rtp_packets_received_total", Help: "RTP packets received from clients, by media kind.",
		}, []string{"kind"}),
		recordings: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rtmrec_recordings_active", Help: "Recordings being written.",
		}),
		forwardDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rtmrec_supervisor_packets_dropped_total", Help: "RTP packets not forwarded to a supervisor whose queue was full.",
		}),
		tokenRefreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rtmrec_token_refreshes_total", Help: "token_refresh messages, by outcome (accepted, refused).",
		}, []string{"outcome"}),
		limits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rtmrec_session_limit_refusals_total", Help: "Client inputs refused because a per-connection, per-session or per-recording bound was reached, by limit.",
		}, []string{"limit"}),
		setup: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "rtmrec_session_setup_seconds",
			Help:    "From a session_start or supervisor_join_session to the server's answer (or offer) sent, for sessions that started, by role (client, supervisor).",
			Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5},
		}, []string{"role"}),
	}
	// Every state is exported from the start, so dashboards show zeros
	// rather than missing series.
	for _, st := range []rtm.State{rtm.StateConnecting, rtm.StateConnected, rtm.StateDisconnected} {
		m.sessions.WithLabelValues(string(st))
	}
	m.rtpPackets.WithLabelValues("audio")
	m.rtpPackets.WithLabelValues("video")
	m.setup.WithLabelValues("client")
	m.setup.WithLabelValues("supervisor")
	m.tokenRefreshes.WithLabelValues("accepted")
	m.tokenRefreshes.WithLabelValues("refused")
	for _, l := range []string{limitMessageRate, limitSessionsPerConn, limitCandidates, limitTracks, limitPauses} {
		m.limits.WithLabelValues(l)
	}
	if reg != nil {
		reg.MustRegister(m.sessions, m.messages, m.errors, m.terminations, m.connections, m.rtpPackets, m.recordings, m.forwardDropped, m.tokenRefreshes, m.limits, m.setup)
	}
	return m
}
