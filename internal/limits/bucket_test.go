package limits

import (
	"testing"
	"time"
)

func TestTokenBucket(t *testing.T) {
	clock := newFakeClock()
	tb := NewTokenBucket(10, 3, clock.Now)
	steps := []struct {
		advance time.Duration
		want    bool
	}{
		{0, true}, {0, true}, {0, true}, // the burst
		{0, false},
		{50 * time.Millisecond, false},
		{50 * time.Millisecond, true}, // 100ms at 10/s
		{0, false},
		{-time.Hour, false}, // a clock stepping back mints nothing...
		{time.Hour + 50*time.Millisecond, false},
		{50 * time.Millisecond, true}, // ...and does not stall the bucket for long
		{time.Minute, true},
		{0, true},
		{0, true},
		{0, false}, // capped at the burst
	}
	for i, s := range steps {
		clock.Advance(s.advance)
		if got := tb.Allow(); got != s.want {
			t.Fatalf("step %d: Allow = %v, want %v", i, got, s.want)
		}
	}
}

func TestTokenBucketUnlimited(t *testing.T) {
	for _, rate := range []float64{0, -1, posInf()} {
		tb := NewTokenBucket(rate, 0, nil)
		for range 1000 {
			if !tb.Allow() {
				t.Fatalf("rate %v: refused", rate)
			}
		}
	}
}

func TestTokenBucketMinBurst(t *testing.T) {
	clock := newFakeClock()
	tb := NewTokenBucket(1, 0, clock.Now)
	if !tb.Allow() {
		t.Fatal("burst 0 should act as 1")
	}
	if tb.Allow() {
		t.Fatal("second event allowed")
	}
}

func TestTokenBucketAllocs(t *testing.T) {
	tb := NewTokenBucket(1e6, 10, nil)
	if n := testing.AllocsPerRun(1000, func() { tb.Allow() }); n != 0 {
		t.Fatalf("Allow allocates %v times", n)
	}
}

func BenchmarkTokenBucketAllow(b *testing.B) {
	tb := NewTokenBucket(1e12, 1, nil)
	b.ReportAllocs()
	for b.Loop() {
		if !tb.Allow() {
			b.Fatal("refused")
		}
	}
}
