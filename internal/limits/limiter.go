// Package limits decides whether the server takes on more work: a new
// WebSocket from a client address, a new session, a new recording (docs/configuration.md,
// Limits). Refusals become HTTP 429/503 before the upgrade, or
// error server_busy on the WebSocket.
//
// Per-source limits are for attempts the server cannot attribute to anyone:
// unauthenticated connections and failed token checks (floods, a client
// retrying a bad token). A connection whose token verifies only counts
// against a much higher per-source cap, because a contact center's agents
// all leave through one NAT address; its work (sessions, recordings) is
// limited per tenant instead.
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
	// LimitAuthConnsPerIP caps the connections with a verified token from
	// one source.
	LimitAuthConnsPerIP = "auth_conns_per_ip"
	// LimitTenantSessions and LimitTenantRecordings are the per-tenant caps.
	LimitTenantSessions   = "tenant_sessions"
	LimitTenantRecordings = "tenant_recordings"
	// LimitTrackedIPs refuses a new source while the per-IP table is full
	// of sources that all hold open connections.
	LimitTrackedIPs = "tracked_ips"
)

// DefaultMaxTrackedIPs bounds the per-IP table when Config leaves it zero.
// An entry is a few hundred bytes, so the default costs tens of MiB at most.
const DefaultMaxTrackedIPs = 100_000

// Config sets the limits. A zero limit means no limit.
type Config struct {
	// MaxConnsPerIP caps concurrent unauthenticated WebSocket connections
	// (AdmitConn) per client source (an IPv4 address or an IPv6 /64).
	// Clients behind one NAT share it.
	MaxConnsPerIP int
	// ConnRatePerIP is the sustained rate per source of unauthenticated
	// connections (AdmitConn) and failed attempts (FailedAttempt), with
	// bursts of up to ConnBurstPerIP (default: the rate rounded up, at
	// least 1). Authenticated connections do not spend it.
	ConnRatePerIP  float64
	ConnBurstPerIP int
	// MaxAuthConnsPerIP caps concurrent connections with a verified token
	// (AdmitAuthenticated) per source.
	MaxAuthConnsPerIP int
	// MaxTrackedIPs caps the per-source table; default DefaultMaxTrackedIPs.
	MaxTrackedIPs int
	// MaxSessions caps the sessions on the whole server.
	MaxSessions int
	// MaxRecordings caps the concurrent recordings on the whole server.
	MaxRecordings int
	// MaxSessionsPerTenant and MaxRecordingsPerTenant cap each tenant's
	// share of those, so that one tenant cannot take every slot.
	MaxSessionsPerTenant   int
	MaxRecordingsPerTenant int
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

// Error says which limit refused, in words a customer can act on, and
// names it for operators; it contains nothing about the client.
func (e *RefusedError) Error() string {
	what, ok := refusalText[e.Limit]
	if !ok {
		what = "the server is at capacity"
	}
	return what + " (" + e.Limit + ")"
}

var refusalText = map[string]string{
	LimitConnsPerIP:       "too many connections from this address",
	LimitConnRate:         "too many connection attempts from this address; retry later",
	LimitSessions:         "the server has all the sessions it takes at once",
	LimitRecordings:       "the server is writing all the recordings it takes at once",
	LimitDisk:             "the server is short of disk space for recordings",
	LimitAuthConnsPerIP:   "too many authenticated connections from this address",
	LimitTenantSessions:   "the tenant has all the sessions it may have at once",
	LimitTenantRecordings: "the tenant has all the recordings it may have at once",
	LimitTrackedIPs:       "too many client addresses are connecting at once; retry later",
}

// Stats is a snapshot of what the limiter is holding, for tests and
// diagnostics.
type Stats struct {
	// Conns counts every admitted connection, authenticated or not.
	Conns, TrackedIPs, Sessions, Recordings int
	// Tenants is how many tenants hold sessions or recordings.
	Tenants int
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
	// tenants holds the tenants with sessions or recordings; an entry goes
	// when both reach zero, so the map is bounded by the work admitted.
	tenants map[string]*tenantLoad
}

// tenantLoad is what one tenant holds.
type tenantLoad struct{ sessions, recordings int }

// New validates cfg and returns a Limiter.
func New(cfg Config) (*Limiter, error) {
	switch {
	case cfg.MaxConnsPerIP < 0, cfg.ConnBurstPerIP < 0, cfg.MaxTrackedIPs < 0, cfg.MaxAuthConnsPerIP < 0,
		cfg.MaxSessions < 0, cfg.MaxRecordings < 0, cfg.MaxSessionsPerTenant < 0, cfg.MaxRecordingsPerTenant < 0:
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
	l := &Limiter{cfg: cfg, freeDisk: freeDiskBytes, tenants: map[string]*tenantLoad{}}

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
	for _, name := range []string{LimitConnsPerIP, LimitConnRate, LimitSessions, LimitRecordings, LimitDisk, LimitTrackedIPs,
		LimitAuthConnsPerIP, LimitTenantSessions, LimitTenantRecordings} {
		cv.WithLabelValues(name)
	}
	return cv, nil
}

func (l *Limiter) refuse(limit string, status int, retryAfter time.Duration) *RefusedError {
	l.refused.WithLabelValues(limit).Inc()
	return &RefusedError{Limit: limit, HTTPStatus: status, RetryAfter: retryAfter}
}

// AdmitConn decides whether a new unauthenticated WebSocket connection
// from ip may be upgraded (a server running without auth): it counts
// against MaxConnsPerIP and spends ConnRatePerIP. On success the caller
// must call release when the connection closes; release may be called more
// than once.
func (l *Limiter) AdmitConn(ip netip.Addr) (release func(), err error) {
	return l.admit(ip, false)
}

// AdmitAuthenticated decides whether a new connection whose token verified
// may be upgraded. It counts only against MaxAuthConnsPerIP and spends no
// rate: a contact center's agents share one address, and their work is
// bounded per tenant. Release as for AdmitConn.
func (l *Limiter) AdmitAuthenticated(ip netip.Addr) (release func(), err error) {
	return l.admit(ip, true)
}

// FailedAttempt charges ip for a connection attempt that presented no
// valid token. It returns a RefusedError (LimitConnRate, 429) when the
// source has already spent its allowance, so the caller can answer 429
// with Retry-After instead of 401.
func (l *Limiter) FailedAttempt(ip netip.Addr) error {
	if l.cfg.ConnRatePerIP == 0 {
		return nil
	}
	now := l.cfg.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.ips.lookup(sourceKey(ip), now, l.burst)
	if e == nil {
		return l.refuse(LimitTrackedIPs, http.StatusServiceUnavailable, 0)
	}
	defer l.ips.settle(e, now)
	if !e.bucket.take(now, l.cfg.ConnRatePerIP, l.burst) {
		return l.refuse(LimitConnRate, http.StatusTooManyRequests, e.bucket.wait(l.cfg.ConnRatePerIP))
	}
	return nil
}

func (l *Limiter) admit(ip netip.Addr, authenticated bool) (func(), error) {
	limit, rate := l.cfg.MaxConnsPerIP, l.cfg.ConnRatePerIP
	if authenticated {
		limit, rate = l.cfg.MaxAuthConnsPerIP, 0
	}
	if limit == 0 && rate == 0 {
		return l.countConn(), nil
	}
	now := l.cfg.Now()

	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.ips.lookup(sourceKey(ip), now, l.burst)
	if e == nil {
		return nil, l.refuse(LimitTrackedIPs, http.StatusServiceUnavailable, 0)
	}
	held := &e.conns
	name := LimitConnsPerIP
	if authenticated {
		held, name = &e.authConns, LimitAuthConnsPerIP
	}
	// The concurrency check comes first so a refused connection does not
	// also spend a token.
	if limit > 0 && *held >= limit {
		l.ips.settle(e, now)
		return nil, l.refuse(name, http.StatusTooManyRequests, 0)
	}
	if rate > 0 && !e.bucket.take(now, rate, l.burst) {
		l.ips.settle(e, now)
		return nil, l.refuse(LimitConnRate, http.StatusTooManyRequests, e.bucket.wait(rate))
	}
	*held++
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
		*held--
		l.conns--
		// Entries with open connections are never evicted, so e is still
		// the table's entry for its source.
		l.ips.settle(e, l.cfg.Now())
	}, nil
}

// countConn admits without per-source state, counting only for Stats.
func (l *Limiter) countConn() func() {
	l.mu.Lock()
	l.conns++
	l.mu.Unlock()
	return l.once(func() { l.conns-- })
}

// once returns an idempotent func that runs give under the lock.
func (l *Limiter) once(give func()) func() {
	done := false
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if !done {
			done = true
			give()
		}
	}
}

// acquire takes one session (or recording) for tenant if neither the
// server-wide nor the tenant's limit is reached (0: no limit).
func (l *Limiter) acquire(tenant string, recording bool) (func(), error) {
	total, limit, name := &l.sessions, l.cfg.MaxSessions, LimitSessions
	tenantLimit, tenantName := l.cfg.MaxSessionsPerTenant, LimitTenantSessions
	if recording {
		total, limit, name = &l.recordings, l.cfg.MaxRecordings, LimitRecordings
		tenantLimit, tenantName = l.cfg.MaxRecordingsPerTenant, LimitTenantRecordings
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if limit > 0 && *total >= limit {
		return nil, l.refuse(name, http.StatusServiceUnavailable, 0)
	}
	t := l.tenants[tenant]
	if t == nil {
		t = &tenantLoad{}
	}
	held := &t.sessions
	if recording {
		held = &t.recordings
	}
	if tenantLimit > 0 && *held >= tenantLimit {
		return nil, l.refuse(tenantName, http.StatusServiceUnavailable, 0)
	}
	l.tenants[tenant] = t
	*total++
	*held++
	return l.once(func() {
		*total--
		*held--
		if *t == (tenantLoad{}) {
			delete(l.tenants, tenant)
		}
	}), nil
}

// AcquireSession reserves room for one more session of tenant ("" is the
// default tenant). On success the caller must call release when the
// session ends; release is idempotent.
func (l *Limiter) AcquireSession(tenant string) (release func(), err error) {
	return l.acquire(tenant, false)
}

// AcquireRecording reserves room for one more recording of tenant,
// refusing also when the data directory is short of free space. On success
// the caller must call release when the recording's file is closed (the
// upload may go on); release is idempotent.
func (l *Limiter) AcquireRecording(tenant string) (release func(), err error) {
	release, err = l.acquire(tenant, true)
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
		Tenants:    len(l.tenants),
	}
}
