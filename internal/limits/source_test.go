package limits

import (
	"net/http"
	"testing"
	"time"
)

// TestOneAddressManyAgents is the contact-center case: a thousand agents
// with valid tokens behind one NAT address are admitted at once, while
// failed attempts from that same address are refused past their burst, and
// neither spends the other's allowance.
func TestOneAddressManyAgents(t *testing.T) {
	clock := newFakeClock()
	l := newLimiter(t, Config{MaxConnsPerIP: 50, ConnRatePerIP: 10, ConnBurstPerIP: 20, MaxAuthConnsPerIP: 2000, Now: clock.Now})

	for i := range 10 {
		if err := l.FailedAttempt(ipA); err != nil {
			t.Fatalf("failed attempt %d refused within the burst: %v", i+1, err)
		}
	}
	var releases []func()
	for i := range 1000 {
		release, err := l.AdmitAuthenticated(ipA)
		if err != nil {
			t.Fatalf("agent %d refused: %v", i+1, err)
		}
		releases = append(releases, release)
	}
	// The agents spent nothing: ten more failures still fit the burst.
	for i := range 10 {
		if err := l.FailedAttempt(ipA); err != nil {
			t.Fatalf("failed attempt %d: %v", 11+i, err)
		}
	}
	re := mustRefuse(t, l.FailedAttempt(ipA), LimitConnRate, http.StatusTooManyRequests)
	if re.RetryAfter <= 0 || re.RetryAfter > 100*time.Millisecond {
		t.Errorf("RetryAfter = %v, want (0, 100ms] at 10/s", re.RetryAfter)
	}
	// An exhausted failure allowance refuses unauthenticated connections...
	_, err := l.AdmitConn(ipA)
	mustRefuse(t, err, LimitConnRate, http.StatusTooManyRequests)
	// ...but not agents with a token, nor another address.
	release, err := l.AdmitAuthenticated(ipA)
	if err != nil {
		t.Fatalf("agent refused while the address is throttled: %v", err)
	}
	releases = append(releases, release)
	if err := l.FailedAttempt(ipB); err != nil {
		t.Fatalf("another address: %v", err)
	}

	clock.Advance(100 * time.Millisecond)
	if err := l.FailedAttempt(ipA); err != nil {
		t.Fatalf("after refill: %v", err)
	}
	for _, r := range releases {
		r()
	}
	if s := l.Stats(); s.Conns != 0 {
		t.Fatalf("conns = %d after release", s.Conns)
	}
}

func TestAuthConnsPerIP(t *testing.T) {
	l := newLimiter(t, Config{MaxConnsPerIP: 1, MaxAuthConnsPerIP: 2, Now: newFakeClock().Now})
	unauth, err := l.AdmitConn(ipA)
	if err != nil {
		t.Fatal(err)
	}
	defer unauth()
	r1, err := l.AdmitAuthenticated(ipA)
	if err != nil {
		t.Fatalf("the unauthenticated connection took the authenticated slot: %v", err)
	}
	r2, err := l.AdmitAuthenticated(ipA)
	if err != nil {
		t.Fatal(err)
	}
	_, err = l.AdmitAuthenticated(ipA)
	mustRefuse(t, err, LimitAuthConnsPerIP, http.StatusTooManyRequests)
	r1()
	r3, err := l.AdmitAuthenticated(ipA)
	if err != nil {
		t.Fatalf("after a release: %v", err)
	}
	r2()
	r3()
}

func TestFailedAttemptsUnlimited(t *testing.T) {
	l := newLimiter(t, Config{MaxConnsPerIP: 5})
	for range 1000 {
		if err := l.FailedAttempt(ipA); err != nil {
			t.Fatal(err)
		}
	}
	if n := l.Stats().TrackedIPs; n != 0 {
		t.Fatalf("tracked = %d without a rate limit, want 0", n)
	}
}

func TestTenantLimits(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		acquire func(*Limiter, string) (func(), error)
		limit   string
	}{
		{"sessions", Config{MaxSessions: 5, MaxSessionsPerTenant: 2}, (*Limiter).AcquireSession, LimitTenantSessions},
		{"recordings", Config{MaxRecordings: 5, MaxRecordingsPerTenant: 2}, (*Limiter).AcquireRecording, LimitTenantRecordings},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLimiter(t, tt.cfg)
			var releases []func()
			take := func(tenant string) error {
				r, err := tt.acquire(l, tenant)
				if err == nil {
					releases = append(releases, r)
				}
				return err
			}
			for _, tenant := range []string{"acme", "acme", "globex", ""} {
				if err := take(tenant); err != nil {
					t.Fatalf("%q: %v", tenant, err)
				}
			}
			mustRefuse(t, take("acme"), tt.limit, http.StatusServiceUnavailable)
			if err := take("globex"); err != nil {
				t.Fatalf("globex's second: %v", err)
			}
			// The server-wide limit still holds for a tenant with room.
			serverWide := LimitSessions
			if tt.limit == LimitTenantRecordings {
				serverWide = LimitRecordings
			}
			mustRefuse(t, take("initech"), serverWide, http.StatusServiceUnavailable)
			releases[0]() // one of acme's
			if err := take("acme"); err != nil {
				t.Fatalf("after acme released one: %v", err)
			}
			if s := l.Stats(); s.Tenants != 3 {
				t.Fatalf("tenants = %d, want 3", s.Tenants)
			}
			for _, r := range releases {
				r()
			}
			if s := l.Stats(); s.Sessions != 0 || s.Recordings != 0 || s.Tenants != 0 {
				t.Fatalf("after release: %+v", s)
			}
		})
	}
}
