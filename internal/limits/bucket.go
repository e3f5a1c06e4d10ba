package limits

import (
	"math"
	"time"
)

// bucket is token-bucket state without its parameters, so that the per-IP
// table can share one rate and burst across many entries.
type bucket struct {
	tokens float64
	last   time.Time
}

func fullBucket(burst float64, now time.Time) bucket {
	return bucket{tokens: burst, last: now}
}

// take refills for the time since the last call and spends one token if
// there is one.
func (b *bucket) take(now time.Time, rate, burst float64) bool {
	// A clock that steps back (an injected one, or a wall clock without a
	// monotonic reading) must not mint tokens later, so only move forward.
	if elapsed := now.Sub(b.last); elapsed > 0 {
		b.tokens = min(burst, b.tokens+elapsed.Seconds()*rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true
	}
	return false
}

// wait is how long until take can succeed, for a Retry-After header.
func (b *bucket) wait(rate float64) time.Duration {
	if b.tokens >= 1 {
		return 0
	}
	return time.Duration(math.Ceil((1 - b.tokens) / rate * float64(time.Second)))
}

// TokenBucket limits the rate of events on one connection, for example
// messages read from a WebSocket (docs/configuration.md: every network input is
// bounded). It allows bursts of up to burst events and rate events per
// second on average. It is not safe for concurrent use: the goroutine that
// reads the connection owns it, so Allow needs no lock and never allocates.
type TokenBucket struct {
	b     bucket
	rate  float64
	burst float64
	now   func() time.Time
}

// NewTokenBucket returns a full bucket. A rate of zero or less (or +Inf)
// means no limit, matching the zero value of Config; a burst below 1 is
// raised to 1 so the bucket can ever allow anything. now is the clock,
// time.Now when nil.
func NewTokenBucket(rate float64, burst int, now func() time.Time) *TokenBucket {
	if now == nil {
		now = time.Now
	}
	tb := &TokenBucket{rate: rate, burst: float64(max(burst, 1)), now: now}
	if tb.limited() {
		tb.b = fullBucket(tb.burst, now())
	}
	return tb
}

func (tb *TokenBucket) limited() bool {
	return tb.rate > 0 && !math.IsInf(tb.rate, 1) && !math.IsNaN(tb.rate)
}

// Allow reports whether one more event may happen now, and if so counts it.
func (tb *TokenBucket) Allow() bool {
	if !tb.limited() {
		return true
	}
	return tb.b.take(tb.now(), tb.rate, tb.burst)
}
