package cluster

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rtmrec/rtmrec/rtm"
)

func TestConfigValidation(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no id", Config{}, "node id is required"},
		{"space in id", Config{NodeID: "a b"}, "may contain only"},
		{"colon in id", Config{NodeID: "a:b"}, "may contain only"},
		{"long id", Config{NodeID: strings.Repeat("a", MaxNodeIDLen+1)}, "longer than"},
		{"expiry too short", Config{NodeID: "a", HeartbeatInterval: time.Second, Expiry: time.Second}, "at least twice"},
		{"negative capacity", Config{NodeID: "a", SoftCapacity: -1}, "negative"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := New(c.cfg, Deps{Redis: nil})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
	if _, err := New(Config{NodeID: "rtmrec-0.example_1"}, Deps{}); err == nil || !strings.Contains(err.Error(), "Redis client is required") {
		t.Fatalf("a valid config without Redis: %v", err)
	}
}

func TestNodesListsLiveNodes(t *testing.T) {
	mr := newMiniredis(t)
	a := startNode(t, mr.Addr(), Config{NodeID: "a", PublicAddrs: []string{"203.0.113.7"}, ICEUDPPort: 50000, SoftCapacity: 10})
	b := startNode(t, mr.Addr(), Config{NodeID: "b"})
	a.load.set(3)

	waitUntil(t, "a's load in its heartbeat", func() bool {
		nodes, err := b.Nodes(context.Background())
		return err == nil && len(nodes) == 2 && nodes[0].Load == 3
	})
	nodes, _ := b.Nodes(context.Background())
	got := nodes[0]
	if got.ID != "a" || got.State != StateServing || got.SoftCapacity != 10 || got.ICEUDPPort != 50000 ||
		!slices.Equal(got.PublicAddrs, []string{"203.0.113.7"}) || got.RelayStream != "rtmrec:relay:a" || got.Incarnation != a.inc {
		t.Fatalf("a advertises %+v", got)
	}

	// A crashed node is listed until its heartbeat expires, then never.
	a.crash()
	if nodes, _ := b.Nodes(context.Background()); len(nodes) != 2 {
		t.Fatalf("a crashed node vanished before its heartbeat expired: %+v", nodes)
	}
	expire(t, mr, b)
	nodes, err := b.Nodes(context.Background())
	if err != nil || len(nodes) != 1 || nodes[0].ID != "b" {
		t.Fatalf("after a's expiry: %+v, %v", nodes, err)
	}
	if mr.Exists("rtmrec:node:a") || slices.Contains(must(mr.Members("rtmrec:nodes")), "a") {
		t.Fatal("a dead node stayed in Redis")
	}

	// A node that stops leaves at once.
	c := startNode(t, mr.Addr(), Config{NodeID: "c"})
	c.stop()
	if nodes, _ := b.Nodes(context.Background()); len(nodes) != 1 {
		t.Fatalf("a node that left is still listed: %+v", nodes)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestPlace(t *testing.T) {
	mr := newMiniredis(t)
	self := startNode(t, mr.Addr(), Config{NodeID: "self", SoftCapacity: 2})
	heavy := startNode(t, mr.Addr(), Config{NodeID: "heavy", SoftCapacity: 10})
	light := startNode(t, mr.Addr(), Config{NodeID: "light", SoftCapacity: 10})
	full := startNode(t, mr.Addr(), Config{NodeID: "full", SoftCapacity: 1})
	unlimited := startNode(t, mr.Addr(), Config{NodeID: "unlimited"})
	heavy.load.set(8)
	light.load.set(2)
	full.load.set(1)
	unlimited.load.set(50)

	const noRoom = "(server_busy)"
	place := func() string {
		t.Helper()
		n, local, err := self.Place()
		if err != nil {
			var re *rtm.Error
			if !errors.As(err, &re) || re.Code != rtm.CodeServerBusy || !errors.Is(err, ErrNoRoom) {
				t.Fatalf("Place error %v carries no server_busy", err)
			}
			return noRoom
		}
		if local != (n.ID == "self") {
			t.Fatalf("local = %v for %s", local, n.ID)
		}
		return n.ID
	}
	seen := func(id string, match func(NodeInfo) bool) {
		t.Helper()
		waitUntil(t, id+"'s heartbeat seen", func() bool {
			self.mu.Lock()
			defer self.mu.Unlock()
			for _, o := range self.others {
				if o.ID == id {
					return match(o)
				}
			}
			return false
		})
	}
	seen("heavy", func(o NodeInfo) bool { return o.Load == 8 })
	seen("light", func(o NodeInfo) bool { return o.Load == 2 })
	seen("full", func(o NodeInfo) bool { return o.Load == 1 })
	seen("unlimited", func(o NodeInfo) bool { return o.Load == 50 })

	if got := place(); got != "self" {
		t.Fatalf("with room here, placed on %s", got)
	}
	self.load.set(2)
	// light (2/10) before heavy (8/10); full has no room; unlimited has
	// room but 50 sessions.
	if got := place(); got != "light" {
		t.Fatalf("placed on %s, want light", got)
	}
	light.SetDraining()
	seen("light", func(o NodeInfo) bool { return o.State == StateDraining })
	if got := place(); got != "heavy" {
		t.Fatalf("with light draining placed on %s, want heavy", got)
	}
	heavy.load.set(10)
	seen("heavy", func(o NodeInfo) bool { return o.Load == 10 })
	if got := place(); got != "unlimited" {
		t.Fatalf("with heavy full placed on %s, want unlimited", got)
	}
	unlimited.SetDraining()
	seen("unlimited", func(o NodeInfo) bool { return o.State == StateDraining })
	if got := place(); got != noRoom {
		t.Fatalf("with no room anywhere placed on %s", got)
	}
	// A draining node places nothing on itself, even with room.
	self.load.set(0)
	self.SetDraining()
	if got := place(); got != noRoom {
		t.Fatalf("a draining node placed on %s", got)
	}
}

// TestPlaceSpreadsBurst: between two heartbeats a burst of placements
// spreads over the nodes with room instead of piling onto the one that
// looked least loaded.
func TestPlaceSpreadsBurst(t *testing.T) {
	n, err := New(Config{NodeID: "self", SoftCapacity: 1}, Deps{Redis: must(NewRedisClient("redis://127.0.0.1:1"))})
	if err != nil {
		t.Fatal(err)
	}
	defer n.rdb.Close()
	n.load = func() int { return 1 }
	n.registered, n.lastBeat = true, time.Now()
	n.others = []NodeInfo{
		{ID: "x", Incarnation: "01", State: StateServing, Load: 0, SoftCapacity: 4},
		{ID: "y", Incarnation: "02", State: StateServing, Load: 2, SoftCapacity: 4},
	}
	counts := map[string]int{}
	for range 6 {
		target, _, err := n.Place()
		if err != nil {
			t.Fatal(err)
		}
		counts[target.ID]++
	}
	if counts["x"] != 4 || counts["y"] != 2 {
		t.Fatalf("placements %v, want x:4 y:2 (both filled to capacity)", counts)
	}
	if _, _, err := n.Place(); !errors.Is(err, ErrNoRoom) {
		t.Fatalf("a seventh placement: %v, want ErrNoRoom", err)
	}
}

func TestDuplicateNodeIDWaits(t *testing.T) {
	mr := newMiniredis(t)
	first := startNode(t, mr.Addr(), Config{NodeID: "a"})
	second := newTestNode(t, mr.Addr(), Config{NodeID: "a"})
	second.start(t)
	time.Sleep(10 * testInterval)
	if second.Ready() {
		t.Fatal("a second process took a node id that is alive")
	}
	// Like a restarted pod whose predecessor was killed: it registers once
	// the old heartbeat expires.
	first.crash()
	expire(t, mr)
	waitUntil(t, "the second process registered", second.Ready)
}

// TestReadyFollowsRedis: Redis out of reach makes the node unready (new
// sessions refused) without touching what runs; it is ready again when
// Redis is back. (miniredis cannot be restarted under blocking reads, so
// the outage is a cut connection.)
func TestReadyFollowsRedis(t *testing.T) {
	mr := newMiniredis(t)
	px := newProxy(t, mr.Addr())
	a := startNode(t, px.addr(), Config{NodeID: "a"})
	px.setCut(true)
	waitUntil(t, "not ready without Redis", func() bool { return !a.Ready() })
	if _, _, err := a.Place(); err != nil {
		t.Fatalf("with room here, placing needs no Redis: %v", err)
	}
	px.setCut(false)
	waitUntil(t, "ready again", a.Ready)
}
