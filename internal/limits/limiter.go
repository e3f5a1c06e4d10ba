// Package limits decides whether the server takes on more work: a new
// WebSocket from a client address, a new session, a new recording (contract
// §8, "Limits"). Refusals become HTTP 429/503 before the upgrade, or
// error server_busy on the WebSocket.
package limits

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rtmrec/rtmrec/internal/promreg"
)

// The names of the limits, as found in RefusedError.Limit and in the
// "limit" label of the refusal metric.
const (
	LimitConnsPerIP = "conns_per_ip"
	LimitConnRate   = "conn_rate"
	LimitSessions   = "sessions"
	LimitRecordings = "recordings"
	LimitDisk       = "disk"
	// LimitTrackedIPs refuses a new source while the per-IP table is full
	// of sources that all hold open connections.
	LimitTrackedIPs = "tracked_ips"
)

// DefaultMaxTrackedIPs bounds the per-IP table when Config leaves it zero.
// An entry is a few hundred bytes, so the default costs tens of MiB at most.
const DefaultMaxTrackedIPs = 100_000

// Config sets the limits. A zero limit means no limit.
type Config struct {
	// MaxConnsPerIP caps concurrent WebSocket connections per client source
	// (an IPv4 address or an IPv6 /64). Clients behind one NAT share it.
	MaxConnsPerIP int
	// ConnRatePerIP is the sustained rate of new connections per source per
	// second, with bursts of up to ConnBurstPerIP (default: the rate rounded
	// up, at least 1).
	ConnRatePerIP  float64
	ConnBurstPerIP int
	// MaxTrackedIPs caps the per-source table; default DefaultMaxTrackedIPs.
	MaxTrackedIPs int
	// MaxSessions caps the sessions on the whole server.
	MaxSessions int
	// MaxRecordings caps the concurrent recordings on the whole server.
	MaxRecordings int
	// DiskDir is where recordings are spooled; new recordings are refused
	// while it has less than MinFreeDiskBytes free (for unprivileged users).
	DiskDir          string
	MinFreeDiskBytes uint64
	// Now is the clock, injectable for tests; default time.Now.
	Now func() time.Time
	// Metrics, when set, gets the refusal counter
	// rtmrec_limits_refused_total{limit}.
	Metrics prometheus.Registerer
}

// RefusedError says which limit refused an admission. The HTTP layer
// answers HTTPStatus (429 for the per-source limits, which the client can
// cure by slowing down; 503 for server capacity); the session layer answers
// error server_busy.
type RefusedError struct {
	Limit      string
	HTTPStatus int
	// RetryAfter is when the refused request may succeed, if known (the
	// connection rate limit); zero otherwise.
	RetryAfter time.Duration
}

// Error names the limit; it contains nothing about the client.
func (e *RefusedError) Error() string { return "server busy: " + e.Limit }

// Stats is a snapshot of what the limiter is holding, for tests and
// diagnostics.
type Stats struct {
	Conns, TrackedIPs, Sessions, Recordings int
}

// Limiter admits or refuses new work. It is safe for concurrent use and
// starts no goroutines: idle per-source state is pruned as calls come in.
type Limiter struct {
	cfg      Config
	burst    float64
	freeDisk func(dir string) (uint64, error)
	refused  *prometheus.CounterVec

	mu         sync.Mutex
	ips        ipTable
	conns      int
	sessions   int
	recordings int
}

// New validates cfg and returns a Limiter.
func New(cfg Config) (*Limiter, error) {
	switch {
	case cfg.MaxConnsPerIP < 0, cfg.ConnBurstPerIP < 0, cfg.MaxTrackedIPs < 0,
		cfg.MaxSessions < 0, cfg.MaxRecordings < 0:
		return nil, errors.New("limits: negative limit")
	case cfg.ConnRatePerIP < 0, math.IsNaN(cfg.ConnRatePerIP), math.IsInf(cfg.ConnRatePerIP, 0):
		return nil, fmt.Errorf("limits: connection rate %v is not a finite non-negative number", cfg.ConnRatePerIP)
	case cfg.MinFreeDiskBytes > 0 && cfg.DiskDir == "":
		return nil, errors.New("limits: MinFreeDiskBytes needs DiskDir")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxTrackedIPs == 0 {
		cfg.MaxTrackedIPs = DefaultMaxTrackedIPs
	}
	l := &Limiter{cfg: cfg, freeDisk: freeDiskBytes}

	var refill time.Duration
	if cfg.ConnRatePerIP > 0 {
		if cfg.ConnBurstPerIP == 0 {
			cfg.ConnBurstPerIP = max(1, int(math.Ceil(cfg.ConnRatePerIP)))
		}
		l.burst = float64(cfg.ConnBurstPerIP)
		refill = time.Duration(l.burst / cfg.ConnRatePerIP * float64(time.Second))
	}
	l.ips = newIPTable(cfg.MaxTrackedIPs, refill)

	refused, err := refusalCounter(cfg.Metrics)
	if err != nil {
		return nil, err
	}
	l.refused = refused
	return l, nil
}

func refusalCounter(reg prometheus.Registerer) (*prometheus.CounterVec, error) {
	cv := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "rtmrec",
		Subsystem: "limits",
		Name:      "refused_total",
		Help:      "Admissions refused, by the limit that refused them.",
	}, []string{"limit"})
	if reg != nil {
		var err error
		if cv, err = promreg.Register(reg, cv); err != nil {
			return nil, fmt.Errorf("limits: register metrics: %w", err)
		}
	}
	// Export every limit from the start so a dashboard sees zeros, not gaps.
	for _, name := range []string{LimitConnsPerIP, LimitConnRate, LimitSessions, LimitRecordings, LimitDisk, LimitTrackedIPs} {
		cv.WithLabelValues(name)
	}
	return cv, nil
}

func (l *Limiter) refuse(limit string, status int, retryAfter time.Duration) *RefusedError {
	l.refused.WithLabelValues(limit).Inc()
	return &RefusedError{Limit: limit, HTTPStatus: status, RetryAfter: retryAfter}
}

func (l *Limiter) perIPLimited() bool {
	return l.cfg.MaxConnsPerIP > 0 || l.cfg.ConnRatePerIP > 0
}

// AdmitConn decides whether a new WebSocket connection from ip may be
// upgraded. On success the caller must call release when the connection
// closes; release may be called more than once.
func (l *Limiter) AdmitConn(ip netip.Addr) (release func(), err error) {
	if !l.perIPLimited() {
		return l.countConn(), nil
	}
	key := sourceKey(ip)
	now := l.cfg.Now()

	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.ips.lookup(key, now, l.burst)
	if e == nil {
		return nil, l.refuse(LimitTrackedIPs, http.StatusServiceUnavailable, 0)
	}
	// The concurrency check comes first so a refused connection does not
	// also spend a token.
	if l.cfg.MaxConnsPerIP > 0 && e.conns >= l.cfg.MaxConnsPerIP {
		l.ips.settle(e, now)
		return nil, l.refuse(LimitConnsPerIP, http.StatusTooManyRequests, 0)
	}
	if l.cfg.ConnRatePerIP > 0 && !e.bucket.take(now, l.cfg.ConnRatePerIP, l.burst) {
		l.ips.settle(e, now)
		return nil, l.refuse(LimitConnRate, http.StatusTooManyRequests, e.bucket.wait(l.cfg.ConnRatePerIP))
	}
	e.conns++
	l.conns++
	l.ips.settle(e, now)

	done := false
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if done {
			return
		}
		done = true
		e.conns--
		l.conns--
		// Entries with open connections are never evicted, so e is still
		// the table's entry for key.
		l.ips.settle(e, l.cfg.Now())
	}, nil
}

// countConn admits without per-source state, counting only for Stats.
func (l *Limiter) countConn() func() {
	l.mu.Lock()
	l.conns++
	l.mu.Unlock()
	return l.releaser(&l.conns)
}

// releaser returns an idempotent func that gives back one unit of *n.
func (l *Limiter) releaser(n *int) func() {
	done := false
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if !done {
			done = true
			*n--
		}
	}
}

// acquire takes one unit of *n if it is below limit (0: no limit).
func (l *Limiter) acquire(n *int, limit int, name string) (func(), error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if limit > 0 && *n >= limit {
		return nil, l.refuse(name, http.StatusServiceUnavailable, 0)
	}
	*n++
	return l.releaser(n), nil
}

// AcquireSession reserves room for one more session. On success the caller
// must call release when the session ends; release is idempotent.
func (l *Limiter) AcquireSession() (release func(), err error) {
	return l.acquire(&l.sessions, l.cfg.MaxSessions, LimitSessions)
}

// AcquireRecording reserves room for one more recording, refusing also when
// the data directory is short of free space. On success the caller must
// call release when the recording's file is closed (the upload may go on);
// release is idempotent.
func (l *Limiter) AcquireRecording() (release func(), err error) {
	release, err = l.acquire(&l.recordings, l.cfg.MaxRecordings, LimitRecordings)
	if err != nil {
		return nil, err
	}
	// The disk is checked outside the lock (it is a system call) and after
	// the reservation, so concurrent callers cannot all slip past the count.
	if err := l.checkDisk(); err != nil {
		release()
		return nil, err
	}
	return release, nil
}

// Stats returns what the limiter currently holds.
func (l *Limiter) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Stats{
		Conns:      l.conns,
		TrackedIPs: len(l.ips.entries),
		Sessions:   l.sessions,
		Recordings: l.recordings,
	}
}
