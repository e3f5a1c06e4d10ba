// Package backoff computes retry delays for the durable queues (uploads and
// webhooks): exponential with full jitter, and Retry-After headers.
package backoff

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Delay returns the wait before retry number attempt (1 for the first
// retry) with "full jitter": a uniform draw from [0, min(max, base·2^(attempt-1))].
// Full jitter spreads the retries of many jobs that failed together (one
// target outage) instead of sending them back in waves. rnd draws from
// [0, n); nil means math/rand/v2.
func Delay(attempt int, base, max time.Duration, rnd func(n int64) int64) time.Duration {
	ceil := Ceiling(attempt, base, max)
	if ceil <= 0 {
		return 0
	}
	if rnd == nil {
		rnd = rand.Int64N
	}
	return time.Duration(rnd(int64(ceil) + 1))
}

// Ceiling is min(max, base·2^(attempt-1)) without overflow.
func Ceiling(attempt int, base, max time.Duration) time.Duration {
	if base <= 0 || max <= 0 {
		return 0
	}
	if attempt < 1 {
		attempt = 1
	}
	ceil := base
	for i := 1; i < attempt && ceil < max; i++ {
		if ceil > max/2 {
			return max
		}
		ceil *= 2
	}
	return min(ceil, max)
}

// RetryAfter parses a Retry-After header (RFC 9110 §10.2.3): either
// delay-seconds or an HTTP date. It returns 0 when absent or invalid.
func RetryAfter(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(min(secs, int64(365*24*time.Hour/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
