package limits

import (
	"errors"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/rtmrec/rtmrec/internal/wording"
)

// fakeClock is an injectable clock; tests advance it by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newLimiter(t *testing.T, cfg Config) *Limiter {
	t.Helper()
	l, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return l
}

func mustRefuse(t *testing.T, err error, limit string, status int) *RefusedError {
	t.Helper()
	var re *RefusedError
	if !errors.As(err, &re) {
		t.Fatalf("err = %v, want *RefusedError %s", err, limit)
	}
	if re.Limit != limit || re.HTTPStatus != status {
		t.Fatalf("refused by %s (%d), want %s (%d)", re.Limit, re.HTTPStatus, limit, status)
	}
	if msg := re.Error(); !strings.HasSuffix(msg, " ("+limit+")") || strings.HasPrefix(msg, "the server is at capacity") {
		t.Errorf("Error() = %q, want words for limit %s, then its name", msg, limit)
	}
	return re
}

var (
	ipA = netip.MustParseAddr("192.0.2.1")
	ipB = netip.MustParseAddr("192.0.2.2")
)

// TestLimitReachedAndRecovered fills each limit, checks the refusal, then
// frees room (a release, time, disk space) and checks admission again.
func TestLimitReachedAndRecovered(t *testing.T) {
	tests := []struct {
		name       string
		cfg        Config
		acquire    func(*Limiter) (func(), error)
		admitted   int
		wantLimit  string
		wantStatus int
		// recover frees room; by default, releasing the first admission.
		recover func(clock *fakeClock, disk *atomic.Uint64, releases []func())
	}{
		{
			name:       "conns per IP",
			cfg:        Config{MaxConnsPerIP: 2},
			acquire:    func(l *Limiter) (func(), error) { return l.AdmitConn(ipA) },
			admitted:   2,
			wantLimit:  LimitConnsPerIP,
			wantStatus: http.StatusTooManyRequests,
		},
		{
			name:       "conn rate",
			cfg:        Config{ConnRatePerIP: 1, ConnBurstPerIP: 3},
			acquire:    func(l *Limiter) (func(), error) { return l.AdmitConn(ipA) },
			admitted:   3,
			wantLimit:  LimitConnRate,
			wantStatus: http.StatusTooManyRequests,
			recover: func(c *fakeClock, _ *atomic.Uint64, releases []func()) {
				for _, r := range releases {
					r() // closing connections gives back no tokens
				}
				c.Advance(time.Second)
			},
		},
		{
			name:       "sessions",
			cfg:        Config{MaxSessions: 3},
			acquire:    func(l *Limiter) (func(), error) { return l.AcquireSession("") },
			admitted:   3,
			wantLimit:  LimitSessions,
			wantStatus: http.StatusServiceUnavailable,
		},
		{
			name:       "recordings",
			cfg:        Config{MaxRecordings: 1},
			acquire:    func(l *Limiter) (func(), error) { return l.AcquireRecording("") },
			admitted:   1,
			wantLimit:  LimitRecordings,
			wantStatus: http.StatusServiceUnavailable,
		},
		{
			name:       "disk",
			cfg:        Config{DiskDir: "/data", MinFreeDiskBytes: 1000},
			acquire:    func(l *Limiter) (func(), error) { return l.AcquireRecording("") },
			admitted:   0,
			wantLimit:  LimitDisk,
			wantStatus: http.StatusServiceUnavailable,
			recover:    func(_ *fakeClock, disk *atomic.Uint64, _ []func()) { disk.Store(1000) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			tt.cfg.Now = clock.Now
			reg := prometheus.NewRegistry()
			tt.cfg.Metrics = reg
			l := newLimiter(t, tt.cfg)
			var disk atomic.Uint64
			disk.Store(999)
			l.freeDisk = func(string) (uint64, error) { return disk.Load(), nil }

			var releases []func()
			for i := range tt.admitted {
				release, err := tt.acquire(l)
				if err != nil {
					t.Fatalf("admission %d: %v", i+1, err)
				}
				releases = append(releases, release)
			}
			_, err := tt.acquire(l)
			mustRefuse(t, err, tt.wantLimit, tt.wantStatus)
			if got := counterValue(t, l.refused.WithLabelValues(tt.wantLimit)); got != 1 {
				t.Errorf("refusal metric = %v, want 1", got)
			}

			if tt.recover != nil {
				tt.recover(clock, &disk, releases)
			} else {
				releases[0]()
			}
			release, err := tt.acquire(l)
			if err != nil {
				t.Fatalf("after recovery: %v", err)
			}
			release()
		})
	}
}

func TestConnRateRefill(t *testing.T) {
	clock := newFakeClock()
	l := newLimiter(t, Config{ConnRatePerIP: 2, ConnBurstPerIP: 2, Now: clock.Now})
	admit := func(ip netip.Addr) error {
		release, err := l.AdmitConn(ip)
		if err == nil {
			release()
		}
		return err
	}
	steps := []struct {
		advance time.Duration
		ip      netip.Addr
		want    bool
	}{
		{0, ipA, true},
		{0, ipA, true},
		{0, ipA, false}, // burst spent
		{0, ipB, true},  // another source has its own bucket
		{250 * time.Millisecond, ipA, false},
		{250 * time.Millisecond, ipA, true}, // 0.5s at 2/s: one token
		{0, ipA, false},
		{10 * time.Second, ipA, true}, // refilled, but only up to the burst
		{0, ipA, true},
		{0, ipA, false},
	}
	for i, s := range steps {
		clock.Advance(s.advance)
		err := admit(s.ip)
		if got := err == nil; got != s.want {
			t.Fatalf("step %d: admitted = %v (%v), want %v", i, got, err, s.want)
		}
		if err != nil {
			re := mustRefuse(t, err, LimitConnRate, http.StatusTooManyRequests)
			if re.RetryAfter <= 0 || re.RetryAfter > 500*time.Millisecond {
				t.Errorf("step %d: RetryAfter = %v, want (0, 500ms]", i, re.RetryAfter)
			}
		}
	}
}

func TestConnRateDefaultBurst(t *testing.T) {
	clock := newFakeClock()
	l := newLimiter(t, Config{ConnRatePerIP: 0.5, Now: clock.Now})
	if _, err := l.AdmitConn(ipA); err != nil {
		t.Fatalf("first: %v", err)
	}
	if _, err := l.AdmitConn(ipA); err == nil {
		t.Fatal("second within 2s admitted; want default burst 1")
	}
}

func TestSourceGrouping(t *testing.T) {
	l := newLimiter(t, Config{MaxConnsPerIP: 1, Now: newFakeClock().Now})
	tests := []struct {
		name         string
		first, other string
		sameSource   bool
	}{
		{"IPv4", "192.0.2.10", "192.0.2.11", false},
		{"IPv4-mapped", "192.0.2.20", "::ffff:192.0.2.20", true},
		{"same IPv6 /64", "2001:db8:1:2::1", "2001:db8:1:2:ffff::9", true},
		{"other IPv6 /64", "2001:db8:1:3::1", "2001:db8:1:4::1", false},
		{"zone ignored", "fe80::1%eth0", "fe80::2%eth1", true},
		{"invalid addresses share", "", "", true},
	}
	parse := func(s string) netip.Addr {
		if s == "" {
			return netip.Addr{}
		}
		return netip.MustParseAddr(s)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			release, err := l.AdmitConn(parse(tt.first))
			if err != nil {
				t.Fatalf("first: %v", err)
			}
			defer release()
			r2, err := l.AdmitConn(parse(tt.other))
			if tt.sameSource {
				mustRefuse(t, err, LimitConnsPerIP, http.StatusTooManyRequests)
				return
			}
			if err != nil {
				t.Fatalf("other source refused: %v", err)
			}
			r2()
		})
	}
}

func addrN(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}

// TestTrackedIPsBound floods from many sources and checks the table never
// outgrows its cap, evicting idle sources and refusing only when every
// tracked source holds a connection.
func TestTrackedIPsBound(t *testing.T) {
	const maxIPs = 100
	clock := newFakeClock()
	l := newLimiter(t, Config{MaxConnsPerIP: 1, ConnRatePerIP: 0.1, ConnBurstPerIP: 1, MaxTrackedIPs: maxIPs, Now: clock.Now})

	// Short-lived connections from 10× the cap: idle sources are evicted.
	for i := range 10 * maxIPs {
		release, err := l.AdmitConn(addrN(i))
		if err != nil {
			t.Fatalf("source %d: %v", i, err)
		}
		release()
		if n := l.Stats().TrackedIPs; n > maxIPs {
			t.Fatalf("after %d sources: %d tracked, cap %d", i+1, n, maxIPs)
		}
	}

	// Sources that all keep a connection open fill the table.
	clock.Advance(time.Hour) // everything idle so far is forgotten
	var releases []func()
	for i := range maxIPs {
		release, err := l.AdmitConn(addrN(100_000 + i))
		if err != nil {
			t.Fatalf("holding source %d: %v", i, err)
		}
		releases = append(releases, release)
	}
	_, err := l.AdmitConn(addrN(200_000))
	mustRefuse(t, err, LimitTrackedIPs, http.StatusServiceUnavailable)
	if n := l.Stats().TrackedIPs; n != maxIPs {
		t.Fatalf("tracked = %d, want %d", n, maxIPs)
	}

	releases[0]()
	release, err := l.AdmitConn(addrN(200_000))
	if err != nil {
		t.Fatalf("after one source closed: %v", err)
	}
	release()
	for _, r := range releases {
		r()
	}
	if s := l.Stats(); s.Conns != 0 {
		t.Fatalf("conns = %d after all released", s.Conns)
	}
}

func TestIdleSourcesPruned(t *testing.T) {
	clock := newFakeClock()
	l := newLimiter(t, Config{ConnRatePerIP: 1, ConnBurstPerIP: 5, Now: clock.Now})
	for i := range 50 {
		release, err := l.AdmitConn(addrN(i))
		if err != nil {
			t.Fatal(err)
		}
		release()
	}
	if n := l.Stats().TrackedIPs; n != 50 {
		t.Fatalf("tracked = %d, want 50 (buckets not yet refilled)", n)
	}
	clock.Advance(5 * time.Second) // burst/rate: every bucket is full again
	release, err := l.AdmitConn(ipA)
	if err != nil {
		t.Fatal(err)
	}
	if n := l.Stats().TrackedIPs; n != 1 {
		t.Fatalf("tracked = %d, want 1 after idle sources refilled", n)
	}
	release()

	// Without a rate limit an idle source carries no state at all.
	l = newLimiter(t, Config{MaxConnsPerIP: 3, Now: clock.Now})
	release, err = l.AdmitConn(ipA)
	if err != nil {
		t.Fatal(err)
	}
	release()
	if n := l.Stats().TrackedIPs; n != 0 {
		t.Fatalf("tracked = %d, want 0", n)
	}
}

func TestReleaseIdempotent(t *testing.T) {
	l := newLimiter(t, Config{MaxConnsPerIP: 1, MaxAuthConnsPerIP: 1, MaxSessions: 1, MaxRecordings: 1})
	acquires := map[string]func() (func(), error){
		"conn":      func() (func(), error) { return l.AdmitConn(ipA) },
		"auth conn": func() (func(), error) { return l.AdmitAuthenticated(ipA) },
		"session":   func() (func(), error) { return l.AcquireSession("acme") },
		"recording": func() (func(), error) { return l.AcquireRecording("acme") },
	}
	for name, acquire := range acquires {
		t.Run(name, func(t *testing.T) {
			r1, err := acquire()
			if err != nil {
				t.Fatal(err)
			}
			r1()
			r1() // must not free a slot it does not hold
			r2, err := acquire()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := acquire(); err == nil {
				t.Fatal("double release freed an extra slot")
			}
			r2()
		})
	}
	if s := l.Stats(); s != (Stats{}) {
		t.Fatalf("stats after all released = %+v", s)
	}
}

func TestUnlimited(t *testing.T) {
	l := newLimiter(t, Config{})
	var releases []func()
	for range 1000 {
		for _, acquire := range []func() (func(), error){
			func() (func(), error) { return l.AdmitConn(ipA) },
			func() (func(), error) { return l.AdmitAuthenticated(ipA) },
			func() (func(), error) { return l.AcquireSession("t") },
			func() (func(), error) { return l.AcquireRecording("t") },
		} {
			r, err := acquire()
			if err != nil {
				t.Fatal(err)
			}
			releases = append(releases, r)
		}
	}
	if s := l.Stats(); s.Conns != 2000 || s.Sessions != 1000 || s.Recordings != 1000 || s.TrackedIPs != 0 || s.Tenants != 1 {
		t.Fatalf("stats = %+v", s)
	}
	for _, r := range releases {
		r()
	}
	if s := l.Stats(); s != (Stats{}) {
		t.Fatalf("stats after release = %+v", s)
	}
}

// TestConcurrent hammers every limit from several goroutines (run with
// -race) and checks no limit is ever exceeded and everything is returned.
func TestConcurrent(t *testing.T) {
	const (
		maxPerIP   = 3
		maxSess    = 5
		goroutines = 8
		iterations = 2000
	)
	l := newLimiter(t, Config{MaxConnsPerIP: maxPerIP, ConnRatePerIP: 1e9, ConnBurstPerIP: 1000, MaxSessions: maxSess, MaxRecordings: 2,
		MaxSessionsPerTenant: 3, MaxRecordingsPerTenant: 1, MaxTrackedIPs: 3})
	tenants := []string{"", "acme", "globex"}
	ips := []netip.Addr{ipA, ipB, netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8:0:1::1")}
	var perIP [4]atomic.Int32
	var sessions atomic.Int32
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range iterations {
				k := (g + i) % len(ips)
				if release, err := l.AdmitConn(ips[k]); err == nil {
					if n := perIP[k].Add(1); n > maxPerIP {
						t.Errorf("%d concurrent conns from %v, max %d", n, ips[k], maxPerIP)
					}
					perIP[k].Add(-1)
					release()
					release()
				} else if re := (*RefusedError)(nil); !errors.As(err, &re) {
					t.Errorf("AdmitConn: %v", err)
				}
				if release, err := l.AdmitAuthenticated(ips[k]); err == nil {
					release()
				}
				if err := l.FailedAttempt(ips[k]); err != nil && !errors.As(err, new(*RefusedError)) {
					t.Errorf("FailedAttempt: %v", err)
				}
				if release, err := l.AcquireSession(tenants[i%len(tenants)]); err == nil {
					if n := sessions.Add(1); n > maxSess {
						t.Errorf("%d sessions, max %d", n, maxSess)
					}
					if rec, err := l.AcquireRecording(tenants[g%len(tenants)]); err == nil {
						rec()
					}
					sessions.Add(-1)
					release()
				}
			}
		})
	}
	wg.Wait()
	if s := l.Stats(); s.Conns != 0 || s.Sessions != 0 || s.Recordings != 0 || s.Tenants != 0 || s.TrackedIPs > 3 {
		t.Fatalf("stats after all released = %+v", s)
	}
}

func TestNewRejects(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"negative conns", Config{MaxConnsPerIP: -1}},
		{"negative rate", Config{ConnRatePerIP: -1}},
		{"infinite rate", Config{ConnRatePerIP: posInf()}},
		{"negative burst", Config{ConnRatePerIP: 1, ConnBurstPerIP: -1}},
		{"negative sessions", Config{MaxSessions: -1}},
		{"negative recordings", Config{MaxRecordings: -1}},
		{"negative table", Config{MaxTrackedIPs: -1}},
		{"negative auth conns", Config{MaxAuthConnsPerIP: -1}},
		{"negative tenant sessions", Config{MaxSessionsPerTenant: -1}},
		{"negative tenant recordings", Config{MaxRecordingsPerTenant: -1}},
		{"watermark without dir", Config{MinFreeDiskBytes: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.cfg); err == nil {
				t.Fatal("New succeeded, want error")
			}
		})
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func posInf() float64 {
	zero := 0.0
	return 1 / zero
}

func TestMetricsSharedRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	l1 := newLimiter(t, Config{MaxSessions: 1, Metrics: reg})
	l2 := newLimiter(t, Config{MaxSessions: 1, Metrics: reg})
	for _, l := range []*Limiter{l1, l2} {
		if _, err := l.AcquireSession(""); err != nil {
			t.Fatal(err)
		}
		if _, err := l.AcquireSession(""); err == nil {
			t.Fatal("second session admitted")
		}
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range families {
		if f.GetName() == "rtmrec_limits_refused_total" {
			n += len(f.GetMetric())
		}
	}
	if n != 9 {
		t.Errorf("%d series, want one per limit (9)", n)
	}
	if got := counterValue(t, l1.refused.WithLabelValues(LimitSessions)); got != 2 {
		t.Errorf("sessions refusals = %v, want 2 (shared counter)", got)
	}
}

func TestDiskReal(t *testing.T) {
	dir := t.TempDir()
	free, err := freeDiskBytes(dir)
	if err != nil {
		t.Fatalf("freeDiskBytes: %v", err)
	}
	if free == 0 {
		t.Skip("temp dir reports no free space")
	}

	l := newLimiter(t, Config{DiskDir: dir, MinFreeDiskBytes: 1})
	release, err := l.AcquireRecording("")
	if err != nil {
		t.Fatalf("1 byte watermark: %v", err)
	}
	release()

	l = newLimiter(t, Config{DiskDir: dir, MinFreeDiskBytes: 1 << 62})
	_, err = l.AcquireRecording("")
	mustRefuse(t, err, LimitDisk, http.StatusServiceUnavailable)
	if s := l.Stats(); s.Recordings != 0 {
		t.Fatalf("refused recording still counted: %+v", s)
	}

	missing := filepath.Join(dir, "missing")
	l = newLimiter(t, Config{DiskDir: missing, MinFreeDiskBytes: 1})
	_, err = l.AcquireRecording("")
	var re *RefusedError
	if err == nil || errors.As(err, &re) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing dir: err = %v, want a not-exist error", err)
	}
}

// TestRefusalsAreWordedForCustomers: every limit's refusal has its own words
// (the session layer shows them as server_busy) and they pass the wording
// rule.
func TestRefusalsAreWordedForCustomers(t *testing.T) {
	for _, limit := range []string{LimitConnsPerIP, LimitConnRate, LimitSessions, LimitRecordings, LimitDisk,
		LimitAuthConnsPerIP, LimitTenantSessions, LimitTenantRecordings, LimitTrackedIPs} {
		if _, ok := refusalText[limit]; !ok {
			t.Errorf("limit %s has no words", limit)
		}
		if err := wording.Check((&RefusedError{Limit: limit}).Error()); err != nil {
			t.Error(err)
		}
	}
}
