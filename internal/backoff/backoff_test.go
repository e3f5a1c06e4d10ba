package backoff

import (
	"net/http"
	"testing"
	"time"
)

// FuzzBackoff checks the properties of the retry delay: always within
// [0, max], and a ceiling that never shrinks as attempts grow.
func FuzzBackoff(f *testing.F) {
	f.Add(1, int64(time.Second), int64(5*time.Minute), int64(0))
	f.Add(64, int64(time.Millisecond), int64(time.Hour), int64(-1))
	f.Add(3, int64(1<<62), int64(1<<62+1), int64(7))
	f.Fuzz(func(t *testing.T, attempt int, base, maxB, seed int64) {
		if attempt > 1e6 {
			attempt = 1e6
		}
		b, m := time.Duration(base), time.Duration(maxB)
		top := func(n int64) int64 { return n - 1 } // worst case draw
		d := Delay(attempt, b, m, top)
		if d < 0 || (m > 0 && d > m) || (m <= 0 && d != 0) {
			t.Fatalf("Delay(%d, %v, %v) = %v out of [0, max]", attempt, b, m, d)
		}
		low := Delay(attempt, b, m, func(int64) int64 { return 0 })
		if low != 0 {
			t.Fatalf("lowest draw gave %v", low)
		}
		if c1, c2 := Ceiling(attempt, b, m), Ceiling(attempt+1, b, m); c2 < c1 {
			t.Fatalf("ceiling shrank: attempt %d %v, next %v", attempt, c1, c2)
		}
		if r := Delay(attempt, b, m, nil); r < 0 || (m > 0 && r > m) {
			t.Fatalf("random draw %v out of range", r)
		}
	})
}

func TestBackoffGrows(t *testing.T) {
	base, maxB := 10*time.Millisecond, time.Second
	want := []time.Duration{10, 20, 40, 80, 160, 320, 640, 1000, 1000}
	for i, w := range want {
		if got := Ceiling(i+1, base, maxB); got != w*time.Millisecond {
			t.Errorf("ceiling(%d) = %v, want %v", i+1, got, w*time.Millisecond)
		}
	}
	// The mean of many draws tracks half the ceiling (full jitter).
	var sum time.Duration
	for range 10000 {
		sum += Delay(3, base, maxB, nil)
	}
	if mean := sum / 10000; mean < 17*time.Millisecond || mean > 23*time.Millisecond {
		t.Errorf("mean of attempt-3 delays = %v, want ~20ms", mean)
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"":                              0,
		"7":                             7 * time.Second,
		"0":                             0,
		"-3":                            0,
		"soon":                          0,
		"Fri, 02 Jan 2026 03:04:15 GMT": 10 * time.Second,
		"Fri, 02 Jan 2026 03:04:00 GMT": 0, // in the past
	} {
		h := http.Header{}
		if v != "" {
			h.Set("Retry-After", v)
		}
		if got := RetryAfter(h, now); got != want {
			t.Errorf("RetryAfter(%q) = %v, want %v", v, got, want)
		}
	}
}
