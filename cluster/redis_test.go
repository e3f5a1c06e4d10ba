package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rtmrec/rtmrec/internal/testredis"
	"github.com/rtmrec/rtmrec/rtm"
)

// The tests below run against a real redis-server, with real expiry.
// Their timings leave room for a busy machine: a heartbeat every 200 ms, an
// expiry of 2 s.
const (
	realInterval = 200 * time.Millisecond
	realExpiry   = 2 * time.Second
)

func realConfig(id string) Config {
	return Config{NodeID: id, HeartbeatInterval: realInterval, Expiry: realExpiry}
}

// TestRedisClaimRace: the same id claimed on two nodes at once has exactly
// one winner; the same id in two tenants is two claims.
func TestRedisClaimRace(t *testing.T) {
	rs := testredis.Start(t, testredis.Options{})
	a := startNode(t, rs.Addr, realConfig("a"))
	b := startNode(t, rs.Addr, realConfig("b"))
	ctx := context.Background()
	for i := range 200 {
		for _, tenant := range []string{"acme", "globex"} {
			id := fmt.Sprintf("call-%d", i)
			var wg sync.WaitGroup
			errs := make([]error, 2)
			start := make(chan struct{})
			for j, n := range []*testNode{a, b} {
				wg.Go(func() {
					<-start
					errs[j] = n.Claim(ctx, tenant, id)
				})
			}
			close(start)
			wg.Wait()
			wins := 0
			for _, err := range errs {
				switch {
				case err == nil:
					wins++
				case errors.Is(err, ErrTaken):
					wantCode(t, err, ErrTaken, rtm.CodeSessionExists)
				default:
					t.Fatal(err)
				}
			}
			if wins != 1 {
				t.Fatalf("%s/%s: %d winners", tenant, id, wins)
			}
		}
	}
}

// TestRedisTakeoverAfterNodeDeath: the id of a node killed without a word
// becomes free once its heartbeat expires, not before.
func TestRedisTakeoverAfterNodeDeath(t *testing.T) {
	rs := testredis.Start(t, testredis.Options{})
	a := startNode(t, rs.Addr, realConfig("a"))
	b := startNode(t, rs.Addr, realConfig("b"))
	ctx := context.Background()
	if err := a.Claim(ctx, "acme", "call"); err != nil {
		t.Fatal(err)
	}
	a.crash()
	died := time.Now()
	for {
		err := b.Claim(ctx, "acme", "call")
		if err == nil {
			break
		}
		if !errors.Is(err, ErrTaken) {
			t.Fatal(err)
		}
		if time.Since(died) > realExpiry+5*time.Second {
			t.Fatal("the dead node's claim was never taken over")
		}
		time.Sleep(20 * time.Millisecond)
	}
	free := time.Since(died)
	t.Logf("id free %v after the node's death (expiry %v)", free.Round(time.Millisecond), realExpiry)
	if free < realExpiry-realInterval-100*time.Millisecond {
		t.Fatalf("taken over after %v, before the heartbeat could have expired", free)
	}
}

// TestRedisDeadNodeNotification: a node relaying to a node that dies learns
// it within the expiry (plus the quarter heartbeat between checks).
func TestRedisDeadNodeNotification(t *testing.T) {
	rs := testredis.Start(t, testredis.Options{})
	a := startNode(t, rs.Addr, realConfig("a"))
	b := startNode(t, rs.Addr, realConfig("b"))
	closed := newClosedCh()
	l, err := b.Dial(a.Self(), "acme", LinkOptions{}, &inbox{}, closed.fn)
	if err != nil {
		t.Fatal(err)
	}
	l.Send(candidate(t, "s", 0))
	served := acceptedLink(t, a, 1)
	inOrder(t, "before the death", &served.got, 1)
	a.crash()
	died := time.Now()
	if err := closed.wait(t); !errors.Is(err, ErrNodeDead) {
		t.Fatalf("closed with %v, want ErrNodeDead", err)
	}
	took := time.Since(died)
	t.Logf("told %v after the node's death (expiry %v)", took.Round(time.Millisecond), realExpiry)
	if took > realExpiry+realInterval {
		t.Fatalf("told after %v", took)
	}
}

// TestRedisRelayAcrossRestart: redis-server killed (SIGKILL) and restarted
// while a relay link carries a steady stream of messages both ways:
// nothing is lost, nothing duplicated, order kept. Redis runs as the
// documentation recommends: append-only file, fsync per write.
func TestRedisRelayAcrossRestart(t *testing.T) {
	rs := testredis.Start(t, testredis.Options{Durable: true})
	a := startNode(t, rs.Addr, realConfig("a"))
	b := startNode(t, rs.Addr, realConfig("b"))
	var out inbox
	closed := newClosedCh()
	l, err := b.Dial(a.Self(), "acme", LinkOptions{}, &out, closed.fn)
	if err != nil {
		t.Fatal(err)
	}
	// The sender keeps going: Redis dies a quarter of the way through, and
	// comes back half way; what is sent in between waits in the backlog.
	const n = 400
	kill, restart := make(chan struct{}), make(chan struct{})
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for i := range n {
			switch i {
			case n / 4:
				kill <- struct{}{}
				<-kill
			case n / 2:
				restart <- struct{}{}
				<-restart
			}
			l.Send(candidate(t, "s", i))
			time.Sleep(time.Millisecond)
		}
	}()
	served := acceptedLink(t, a, 1)
	<-kill
	rs.Kill()
	kill <- struct{}{}
	waitUntil(t, "a node to notice", func() bool { return !a.Ready() || !b.Ready() })
	<-restart
	rs.Restart()
	restart <- struct{}{}
	<-sent
	inOrder(t, "at the serving core", &served.got, n)
	inOrder(t, "back at the dialler", &out, n)
	waitUntil(t, "both ready again", func() bool { return a.Ready() && b.Ready() })
	closed.none(t)
}

// TestRedisSentinel: a node reaches Redis through a Sentinel, with the
// redis+sentinel URL form.
func TestRedisSentinel(t *testing.T) {
	rs := testredis.Start(t, testredis.Options{})
	sentinel := rs.StartSentinel("mymaster")
	rdb, err := NewRedisClient("redis+sentinel://" + sentinel + "/0?master_name=mymaster")
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	n, err := New(realConfig("a"), Deps{Redis: rdb, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); n.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitUntil(t, "registered through the sentinel", n.Ready)
	if err := n.Claim(ctx, "acme", "call"); err != nil {
		t.Fatal(err)
	}
	b := startNode(t, rs.Addr, realConfig("b"))
	if got, err := b.Locate(ctx, "acme", "call"); err != nil || got.ID != "a" {
		t.Fatalf("a node on the master directly locates the claim on %q, %v", got.ID, err)
	}
}
