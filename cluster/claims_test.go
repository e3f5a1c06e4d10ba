package cluster

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rtmrec/rtmrec/rtm"
)

// wantCode checks that err carries the RTM error a client is answered with.
func wantCode(t testing.TB, err error, sentinel error, code rtm.Code) {
	t.Helper()
	var re *rtm.Error
	if !errors.Is(err, sentinel) || !errors.As(err, &re) || re.Code != code {
		t.Fatalf("err = %v, want %v carrying %s", err, sentinel, code)
	}
}

func TestClaim(t *testing.T) {
	mr := newMiniredis(t)
	a := startNode(t, mr.Addr(), Config{NodeID: "a"})
	b := startNode(t, mr.Addr(), Config{NodeID: "b"})
	ctx := context.Background()

	steps := []struct {
		name         string
		node         *testNode
		tenant, id   string
		taken        bool
		wantLocateOn string
	}{
		{"first claim", a, "t1", "s1", false, "a"},
		{"same id on another node", b, "t1", "s1", true, "a"},
		{"same id again on its owner", a, "t1", "s1", false, "a"},
		{"same id in another tenant", b, "t2", "s1", false, "b"},
		{"default tenant", b, "", "s1", false, "b"},
		// Tenant and id are separated without ambiguity.
		{"tenant with a colon", a, "x:y", "z", false, "a"},
		{"id with a colon", b, "x", "y:z", false, "b"},
	}
	for _, s := range steps {
		err := s.node.Claim(ctx, s.tenant, s.id)
		if s.taken {
			wantCode(t, err, ErrTaken, rtm.CodeSessionExists)
		} else if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		got, err := b.Locate(ctx, s.tenant, s.id)
		if err != nil || got.ID != s.wantLocateOn {
			t.Fatalf("%s: Locate = %s, %v; want %s", s.name, got.ID, err, s.wantLocateOn)
		}
	}
	if _, err := a.Locate(ctx, "t1", "nobody"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Locate of an unclaimed id: %v", err)
	}

	// Release frees the id for every node.
	a.Release("t1", "s1")
	waitUntil(t, "the release to reach Redis", func() bool { return !mr.Exists(a.keys.claim("t1", "s1")) })
	if err := b.Claim(ctx, "t1", "s1"); err != nil {
		t.Fatalf("claim after release: %v", err)
	}
}

// TestClaimRace: the same id claimed by two nodes at once has exactly one
// winner.
func TestClaimRace(t *testing.T) {
	mr := newMiniredis(t)
	nodes := []*testNode{startNode(t, mr.Addr(), Config{NodeID: "a"}), startNode(t, mr.Addr(), Config{NodeID: "b"})}
	for i := range 50 {
		id := "race-" + string(rune('A'+i%26)) + string(rune('a'+i/26))
		errs := make(chan error, len(nodes))
		for _, n := range nodes {
			go func() { errs <- n.Claim(context.Background(), "t", id) }()
		}
		wins := 0
		for range nodes {
			err := <-errs
			if err == nil {
				wins++
			} else if !errors.Is(err, ErrTaken) {
				t.Fatal(err)
			}
		}
		if wins != 1 {
			t.Fatalf("%s: %d winners", id, wins)
		}
	}
}

func TestReleaseOnlyByOwner(t *testing.T) {
	mr := newMiniredis(t)
	a := startNode(t, mr.Addr(), Config{NodeID: "a"})
	b := startNode(t, mr.Addr(), Config{NodeID: "b"})
	ctx := context.Background()
	if err := a.Claim(ctx, "t", "s"); err != nil {
		t.Fatal(err)
	}
	// A node that does not hold the id releases nothing.
	b.Release("t", "s")
	// While a was cut off, b took the id over (what the claim script does
	// for a dead owner); a's late release must not delete b's claim.
	key := a.keys.claim("t", "s")
	mr.Set(key, b.owner)
	a.Release("t", "s")
	waitUntil(t, "a's release to be flushed", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return len(a.releases) == 0
	})
	if v, _ := mr.Get(key); v != b.owner {
		t.Fatalf("claim is %q after a's release, want b's", v)
	}
}

func TestTakeoverAfterDeath(t *testing.T) {
	mr := newMiniredis(t)
	a := startNode(t, mr.Addr(), Config{NodeID: "a"})
	b := startNode(t, mr.Addr(), Config{NodeID: "b"})
	ctx := context.Background()
	if err := a.Claim(ctx, "t", "s"); err != nil {
		t.Fatal(err)
	}
	a.crash()
	wantCode(t, b.Claim(ctx, "t", "s"), ErrTaken, rtm.CodeSessionExists)
	expire(t, mr, b)
	if _, err := b.Locate(ctx, "t", "s"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a dead node's session is located: %v", err)
	}
	if err := b.Claim(ctx, "t", "s"); err != nil {
		t.Fatalf("takeover: %v", err)
	}
	if got, _ := b.Locate(ctx, "t", "s"); got.ID != "b" {
		t.Fatalf("after takeover located on %q", got.ID)
	}
}

// TestTakeoverAfterRestart: a node restarted under the same id is a new
// incarnation; the sessions of the old one are gone, and so are its claims.
func TestTakeoverAfterRestart(t *testing.T) {
	mr := newMiniredis(t)
	a := startNode(t, mr.Addr(), Config{NodeID: "a"})
	b := startNode(t, mr.Addr(), Config{NodeID: "b"})
	ctx := context.Background()
	for _, id := range []string{"s1", "s2"} {
		if err := a.Claim(ctx, "t", id); err != nil {
			t.Fatal(err)
		}
	}
	a.crash()
	expire(t, mr, b)
	a2 := startNode(t, mr.Addr(), Config{NodeID: "a"})
	waitUntil(t, "b registered again after the fast-forward", b.Ready)
	if err := a2.Claim(ctx, "t", "s1"); err != nil {
		t.Fatalf("the restarted node claims an id of its old self: %v", err)
	}
	if err := b.Claim(ctx, "t", "s2"); err != nil {
		t.Fatalf("another node claims an id of the old self: %v", err)
	}
}

func TestClaimWithoutRedis(t *testing.T) {
	mr := newMiniredis(t)
	px := newProxy(t, mr.Addr())
	a := startNode(t, px.addr(), Config{NodeID: "a"})
	if err := a.Claim(context.Background(), "t", "s"); err != nil {
		t.Fatal(err)
	}
	px.setCut(true)
	wantCode(t, a.Claim(context.Background(), "t", "other"), ErrUnavailable, rtm.CodeServerBusy)
	if _, err := a.Locate(context.Background(), "t", "s"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Locate without Redis: %v", err)
	}
	// A release while Redis is away is kept and done when it is back.
	waitUntil(t, "not ready without Redis", func() bool { return !a.Ready() })
	a.Release("t", "s")
	time.Sleep(2 * testInterval) // its first attempt fails
	px.setCut(false)
	waitUntil(t, "the postponed release", func() bool { return !mr.Exists(a.keys.claim("t", "s")) })
}

// TestReclaimAfterDataLoss: Redis came back empty (restarted without
// persistence); every node registers again and claims its running
// sessions again.
func TestReclaimAfterDataLoss(t *testing.T) {
	mr := newMiniredis(t)
	a := startNode(t, mr.Addr(), Config{NodeID: "a"})
	b := startNode(t, mr.Addr(), Config{NodeID: "b"})
	ctx := context.Background()
	for _, id := range []string{"s1", "s2"} {
		if err := a.Claim(ctx, "t", id); err != nil {
			t.Fatal(err)
		}
	}
	mr.FlushAll()
	waitUntil(t, "a's sessions claimed again", func() bool {
		n1, err1 := b.Locate(ctx, "t", "s1")
		n2, err2 := b.Locate(ctx, "t", "s2")
		return err1 == nil && err2 == nil && n1.ID == "a" && n2.ID == "a"
	})
	waitUntil(t, "b registered again", func() bool { return mr.Exists(b.keys.node("b")) })
	wantCode(t, b.Claim(ctx, "t", "s1"), ErrTaken, rtm.CodeSessionExists)
}

// TestReclaimConflict: while a was cut off from Redis for longer than the
// expiry, b took over one of a's ids. When a is back, the other ids are
// a's again, the lost one stays b's, and a's later release leaves it alone.
func TestReclaimConflict(t *testing.T) {
	mr := newMiniredis(t)
	pa := newProxy(t, mr.Addr())
	a := startNode(t, pa.addr(), Config{NodeID: "a"})
	b := startNode(t, mr.Addr(), Config{NodeID: "b"})
	ctx := context.Background()
	for _, id := range []string{"kept", "lost"} {
		if err := a.Claim(ctx, "t", id); err != nil {
			t.Fatal(err)
		}
	}
	pa.setCut(true)
	waitUntil(t, "a not ready while cut off", func() bool { return !a.Ready() })
	expire(t, mr, b)
	if err := b.Claim(ctx, "t", "lost"); err != nil {
		t.Fatalf("b takes over: %v", err)
	}
	pa.setCut(false)
	waitUntil(t, "a back", a.Ready)
	if got, err := b.Locate(ctx, "t", "kept"); err != nil || got.ID != "a" {
		t.Fatalf("kept is on %q, %v", got.ID, err)
	}
	if got, err := b.Locate(ctx, "t", "lost"); err != nil || got.ID != "b" {
		t.Fatalf("lost is on %q, %v", got.ID, err)
	}
	a.Release("t", "lost")
	a.Release("t", "kept")
	waitUntil(t, "a's release of kept", func() bool { return !mr.Exists(a.keys.claim("t", "kept")) })
	if got, err := b.Locate(ctx, "t", "lost"); err != nil || got.ID != "b" {
		t.Fatalf("after a's releases lost is on %q, %v", got.ID, err)
	}
}
