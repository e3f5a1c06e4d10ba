package cluster

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rtmrec/rtmrec/internal/testredis"
	"github.com/rtmrec/rtmrec/rtm"
)

// BenchmarkClaim measures claims per second against a real redis-server
// (no persistence): each claim is one Lua script run, from 8 goroutines per
// CPU of one node (sessions starting at once).
func BenchmarkClaim(b *testing.B) {
	rs := testredis.Start(b, testredis.Options{})
	n := startNode(b, rs.Addr, realConfig("bench"))
	ctx := context.Background()
	var next atomic.Int64
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := n.Claim(ctx, "acme", fmt.Sprint("call-", next.Add(1))); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "claims/s")
}

// chanOutlet hands what it is sent to a channel.
type chanOutlet chan rtm.Message

func (c chanOutlet) Send(m rtm.Message) { c <- m }

// BenchmarkRelayRoundTrip measures one message's round trip over a relay
// link (node b → Redis → node a's core → Redis → b) against a real
// redis-server, and reports its percentiles.
func BenchmarkRelayRoundTrip(b *testing.B) {
	rs := testredis.Start(b, testredis.Options{})
	a := startNode(b, rs.Addr, realConfig("a"))
	d := startNode(b, rs.Addr, realConfig("b"))
	out := make(chanOutlet, 1)
	l, err := d.Dial(a.Self(), "acme", LinkOptions{}, out, func(err error) { b.Error("link closed:", err) })
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	var lat []time.Duration
	i := 0
	for b.Loop() {
		start := time.Now()
		l.Send(candidate(b, "s", i))
		if got := <-out; candidateNo(got) != i {
			b.Fatalf("echo %d for %d", candidateNo(got), i)
		}
		lat = append(lat, time.Since(start))
		i++
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
