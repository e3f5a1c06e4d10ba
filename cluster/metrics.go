package cluster

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rtmrec/rtmrec/internal/promreg"
)

// metrics are the node's Prometheus collectors. Labels never carry session
// ids or tenants.
type metrics struct {
	ready     prometheus.Gauge
	nodes     prometheus.Gauge
	claims    *prometheus.CounterVec // result: granted | taken_over | taken | unavailable
	frames    *prometheus.CounterVec // direction: sent | received
	links     prometheus.Gauge
	backlog   prometheus.Gauge
	linksLost *prometheus.CounterVec // reason: node_dead | broken | refused
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rtmrec_cluster_ready",
			Help: "1 while the node is registered in the cluster's Redis and may take new sessions.",
		}),
		nodes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rtmrec_cluster_nodes",
			Help: "Live nodes of the cluster, this one included, as of the node's last heartbeat.",
		}),
		claims: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rtmrec_cluster_claims_total",
			Help: "Session id claims, by result (granted, taken_over from a dead node, taken by a live one, unavailable).",
		}, []string{"result"}),
		frames: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rtmrec_cluster_relay_frames_total",
			Help: "Relay frames written to and read from Redis, by direction.",
		}, []string{"direction"}),
		links: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rtmrec_cluster_relay_links",
			Help: "Open relay links, both those this node dialled and those it serves.",
		}),
		backlog: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rtmrec_cluster_relay_backlog_bytes",
			Help: "Relay frames waiting to be written to Redis.",
		}),
		linksLost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rtmrec_cluster_relay_links_failed_total",
			Help: "Relay links ended by a failure, by reason (node_dead, broken, refused).",
		}, []string{"reason"}),
	}
	for _, r := range []string{"granted", "taken_over", "taken", "unavailable"} {
		m.claims.WithLabelValues(r)
	}
	for _, r := range []string{"node_dead", "broken", "refused"} {
		m.linksLost.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	var errs [7]error
	m.ready, errs[0] = promreg.Register(reg, m.ready)
	m.nodes, errs[6] = promreg.Register(reg, m.nodes)
	m.claims, errs[1] = promreg.Register(reg, m.claims)
	m.frames, errs[2] = promreg.Register(reg, m.frames)
	m.links, errs[3] = promreg.Register(reg, m.links)
	m.backlog, errs[4] = promreg.Register(reg, m.backlog)
	m.linksLost, errs[5] = promreg.Register(reg, m.linksLost)
	if err := errors.Join(errs[:]...); err != nil {
		return nil, fmt.Errorf("cluster: register metrics: %w", err)
	}
	return m, nil
}
