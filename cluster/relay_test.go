package cluster

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rtmrec/rtmrec/rtm"
)

// closedCh records the closed callback of a dialled link.
type closedCh struct {
	once sync.Once
	ch   chan error
}

func newClosedCh() *closedCh { return &closedCh{ch: make(chan error, 1)} }

func (c *closedCh) fn(err error) {
	called := false
	c.once.Do(func() { called = true; c.ch <- err })
	if !called {
		panic("closed callback called twice")
	}
}

func (c *closedCh) wait(t testing.TB) error {
	t.Helper()
	select {
	case err := <-c.ch:
		return err
	case <-time.After(waitLong):
		t.Fatal("the link was not closed")
		return nil
	}
}

func (c *closedCh) none(t testing.TB) {
	t.Helper()
	select {
	case err := <-c.ch:
		t.Fatalf("the link was closed: %v", err)
	default:
	}
}

// acceptedLink waits for the n-th link the node's core opened.
func acceptedLink(t testing.TB, tn *testNode, n int) *simLink {
	t.Helper()
	waitUntil(t, "the serving core to open the link", func() bool { return len(tn.core.openLinks()) >= n })
	return tn.core.openLinks()[n-1]
}

// sendCandidates sends candidates from..to-1 on the link.
func sendCandidates(t testing.TB, l *Link, sid string, from, to int) {
	for i := from; i < to; i++ {
		l.Send(candidate(t, sid, i))
	}
}

// inOrder waits until box holds the candidates 0..n-1, each once, in order.
func inOrder(t testing.TB, what string, box *inbox, n int) {
	t.Helper()
	waitUntil(t, what, func() bool { return len(box.all()) >= n })
	got := box.all()
	if len(got) != n {
		t.Fatalf("%s: %d messages, want %d", what, len(got), n)
	}
	for i, m := range got {
		if candidateNo(m) != i {
			t.Fatalf("%s: message %d is candidate %d", what, i, candidateNo(m))
		}
	}
}

func TestRelayRoundTrip(t *testing.T) {
	mr := newMiniredis(t)
	b := startNode(t, mr.Addr(), Config{NodeID: "b"})
	a := startNode(t, mr.Addr(), Config{NodeID: "a"})
	var out inbox
	closed := newClosedCh()
	l, err := b.Dial(a.Self(), "tenant-1", LinkOptions{CompleteGathering: true, Remote: "198.51.100.4"}, &out, closed.fn)
	if err != nil {
		t.Fatal(err)
	}
	if l.Node() != "a" {
		t.Fatalf("link to %q", l.Node())
	}
	const n = 300
	sendCandidates(t, l, "s1", 0, n)

	served := acceptedLink(t, a, 1)
	if served.token != "tenant-1" || !served.opts.CompleteGathering || served.opts.Remote != "198.51.100.4" {
		t.Fatalf("the serving core got token %q, options %+v", served.token, served.opts)
	}
	inOrder(t, "messages at the serving core", &served.got, n)
	inOrder(t, "answers back at the dialler", &out, n)

	// The open frame carried the token: it does not stay in Redis.
	entries, err := b.rdb.XRange(context.Background(), a.keys.relay("a"), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Values["k"] == string(kindOpen) {
			t.Fatalf("an open frame stayed in the stream: %v", e.Values)
		}
	}

	l.Close()
	waitUntil(t, "the serving core link closed", served.isClosed)
	closed.none(t)
	l.Send(candidate(t, "s1", n)) // after Close: nothing, no panic
}

func TestRelayRefused(t *testing.T) {
	mr := newMiniredis(t)
	b := startNode(t, mr.Addr(), Config{NodeID: "b"})
	a := startNode(t, mr.Addr(), Config{NodeID: "a"})
	closed := newClosedCh()
	l, err := b.Dial(a.Self(), "bad", LinkOptions{}, &inbox{}, closed.fn)
	if err != nil {
		t.Fatal(err)
	}
	l.Send(candidate(t, "s", 0))
	var refused *LinkRefusedError
	if err := closed.wait(t); !errors.As(err, &refused) || refused.Code != rtm.CodeUnauthorized {
		t.Fatalf("closed with %v, want a refusal carrying unauthorized", err)
	}
}

// TestRelayServingNodeDies: the dialler learns within the expiry that the
// node it relays to is gone.
func TestRelayServingNodeDies(t *testing.T) {
	mr := newMiniredis(t)
	b := startNode(t, mr.Addr(), Config{NodeID: "b"})
	a := startNode(t, mr.Addr(), Config{NodeID: "a"})
	closed := newClosedCh()
	l, err := b.Dial(a.Self(), "t", LinkOptions{}, &inbox{}, closed.fn)
	if err != nil {
		t.Fatal(err)
	}
	l.Send(candidate(t, "s", 0))
	acceptedLink(t, a, 1)
	a.crash()
	time.Sleep(4 * testInterval)
	closed.none(t) // its heartbeat is still valid
	expire(t, mr, b)
	if err := closed.wait(t); !errors.Is(err, ErrNodeDead) {
		t.Fatalf("closed with %v, want ErrNodeDead", err)
	}
}

// TestRelayDiallingNodeDies: the serving node closes the links of a node
// that died (TERM_BY_DISCONNECT for their sessions).
func TestRelayDiallingNodeDies(t *testing.T) {
	mr := newMiniredis(t)
	b := startNode(t, mr.Addr(), Config{NodeID: "b"})
	a := startNode(t, mr.Addr(), Config{NodeID: "a"})
	if _, err := b.Dial(a.Self(), "t", LinkOptions{}, &inbox{}, newClosedCh().fn); err != nil {
		t.Fatal(err)
	}
	served := acceptedLink(t, a, 1)
	b.crash()
	expire(t, mr, a)
	waitUntil(t, "the serving core link closed", served.isClosed)
}

// stoppedOrGone: a node that stops writes its links' closes, then removes
// its heartbeat; a peer learns one or the other first.
func stoppedOrGone(err error) bool {
	return errors.Is(err, ErrNodeStopping) || errors.Is(err, ErrNodeDead)
}

// TestRelayPeerRestarts: a node that restarted under its id is a new
// incarnation; links with the old one end at once, without waiting for an
// expiry, and frames meant for the old one are not served by the new one.
func TestRelayPeerRestarts(t *testing.T) {
	mr := newMiniredis(t)
	b := startNode(t, mr.Addr(), Config{NodeID: "b"})
	a := startNode(t, mr.Addr(), Config{NodeID: "a"})
	old := a.Self()
	closed := newClosedCh()
	if _, err := b.Dial(old, "t", LinkOptions{}, &inbox{}, closed.fn); err != nil {
		t.Fatal(err)
	}
	acceptedLink(t, a, 1)
	a.stop() // graceful: its heartbeat goes at once
	if err := closed.wait(t); !stoppedOrGone(err) {
		t.Fatalf("closed with %v, want ErrNodeStopping or ErrNodeDead", err)
	}

	a2 := startNode(t, mr.Addr(), Config{NodeID: "a"})
	closed2 := newClosedCh()
	l2, err := b.Dial(old, "t", LinkOptions{}, &inbox{}, closed2.fn)
	if err != nil {
		t.Fatal(err)
	}
	l2.Send(candidate(t, "s", 0))
	if err := closed2.wait(t); !errors.Is(err, ErrNodeDead) {
		t.Fatalf("a link to the old incarnation closed with %v, want ErrNodeDead", err)
	}
	if len(a2.core.openLinks()) != 0 {
		t.Fatal("the new incarnation served a link meant for the old one")
	}
}

// TestRelayStopClosesLinks: a node that shuts down closes the links it
// serves (their core links) and tells the diallers.
func TestRelayStopClosesLinks(t *testing.T) {
	mr := newMiniredis(t)
	b := startNode(t, mr.Addr(), Config{NodeID: "b"})
	a := startNode(t, mr.Addr(), Config{NodeID: "a"})
	closed := newClosedCh()
	if _, err := b.Dial(a.Self(), "t", LinkOptions{}, &inbox{}, closed.fn); err != nil {
		t.Fatal(err)
	}
	served := acceptedLink(t, a, 1)
	a.stop()
	if !served.isClosed() {
		t.Fatal("Run returned with a served core link open")
	}
	if err := closed.wait(t); !stoppedOrGone(err) {
		t.Fatalf("closed with %v, want ErrNodeStopping or ErrNodeDead", err)
	}
}

// TestRelayDropsDuplicates: a retried write appends a batch again; the
// receiver delivers each message once, and a closed link is not opened
// again by a late copy of its open.
func TestRelayDropsDuplicates(t *testing.T) {
	mr := newMiniredis(t)
	b := startNode(t, mr.Addr(), Config{NodeID: "b"})
	a := startNode(t, mr.Addr(), Config{NodeID: "a"})
	// Keep a copy of every frame written to a's stream.
	var mu sync.Mutex
	var frames []map[string]any
	b.rdb.AddHook(copyHook{func(args []any) {
		if len(args) > 2 && args[0] == "xadd" && args[1] == a.keys.relay("a") {
			star := slices.Index(args, any("*"))
			v := map[string]any{}
			for i := star + 1; i+1 < len(args); i += 2 {
				v[args[i].(string)] = args[i+1]
			}
			mu.Lock()
			frames = append(frames, v)
			mu.Unlock()
		}
	}})
	again := func() {
		t.Helper()
		mu.Lock()
		copies := append([]map[string]any(nil), frames...)
		mu.Unlock()
		for _, v := range copies {
			if err := b.rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: a.keys.relay("a"), Values: v}).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	// probe dials a new link and waits for its answer: a has read all that
	// was written before.
	probe := func() {
		t.Helper()
		var out inbox
		l, err := b.Dial(a.Self(), "t", LinkOptions{}, &out, newClosedCh().fn)
		if err != nil {
			t.Fatal(err)
		}
		l.Send(candidate(t, "probe", 0))
		inOrder(t, "a probe", &out, 1)
		l.Close()
	}

	l, err := b.Dial(a.Self(), "t", LinkOptions{}, &inbox{}, newClosedCh().fn)
	if err != nil {
		t.Fatal(err)
	}
	sendCandidates(t, l, "s", 0, 5)
	served := acceptedLink(t, a, 1)
	inOrder(t, "the first copy", &served.got, 5)

	again() // while the link is open
	sendCandidates(t, l, "s", 5, 6)
	probe()
	inOrder(t, "after copies on an open link", &served.got, 6)

	l.Close()
	waitUntil(t, "the serving core link closed", served.isClosed)
	again() // after it closed
	probe()
	if len(served.got.all()) != 6 || len(a.core.openLinks()) != 3 {
		t.Fatalf("after the copies: %d messages, %d core links (want 6 and 3: the link and two probes)",
			len(served.got.all()), len(a.core.openLinks()))
	}
}

// copyHook sees the arguments of every command a client sends.
type copyHook struct{ see func(args []any) }

func (h copyHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h copyHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.see(cmd.Args())
		return next(ctx, cmd)
	}
}
func (h copyHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			h.see(c.Args())
		}
		return next(ctx, cmds)
	}
}

// inStream counts the frames of a kind in node id's stream.
func inStream(t testing.TB, tn *testNode, id string, kind frameKind) int {
	t.Helper()
	entries, err := tn.rdb.XRange(context.Background(), tn.keys.relay(id), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if e.Values["k"] == string(kind) {
			n++
		}
	}
	return n
}

// TestRelayLostFramesFailLink: Redis lost frames a node had not read yet
// (a restart without persistence). The link fails loudly on both ends
// instead of delivering what is left as if nothing were missing: on the
// next message (a gap), or, when nothing follows, on the sender's next
// sync.
func TestRelayLostFramesFailLink(t *testing.T) {
	for _, tail := range []bool{false, true} {
		name := "gap"
		if tail {
			name = "tail"
		}
		t.Run(name, func(t *testing.T) {
			mr := newMiniredis(t)
			pa := newProxy(t, mr.Addr())
			b := startNode(t, mr.Addr(), Config{NodeID: "b"})
			a := startNode(t, pa.addr(), Config{NodeID: "a"})
			closed := newClosedCh()
			l, err := b.Dial(a.Self(), "t", LinkOptions{}, &inbox{}, closed.fn)
			if err != nil {
				t.Fatal(err)
			}
			sendCandidates(t, l, "s", 0, 3)
			served := acceptedLink(t, a, 1)
			inOrder(t, "before the loss", &served.got, 3)

			pa.setCut(true) // a cannot read for a moment...
			sendCandidates(t, l, "s", 3, 6)
			waitUntil(t, "the frames in a's stream", func() bool {
				return inStream(t, b, "a", kindMsg) == 6 // 3 before, 3 now
			})
			mr.Del(a.keys.relay("a")) // ...and Redis loses them.
			pa.setCut(false)
			if !tail {
				sendCandidates(t, l, "s", 6, 7)
			}
			if err := closed.wait(t); !errors.Is(err, ErrLinkBroken) {
				t.Fatalf("closed with %v, want ErrLinkBroken", err)
			}
			waitUntil(t, "the serving core link closed", served.isClosed)
			if got := len(served.got.all()); got != 3 {
				t.Fatalf("the serving core got %d messages, want the 3 before the loss", got)
			}
		})
	}
}

// TestRelayLostOpen: Redis lost the open of a link; the dialler's messages
// on it are answered "unknown link" and the link fails.
func TestRelayLostOpen(t *testing.T) {
	mr := newMiniredis(t)
	pa := newProxy(t, mr.Addr())
	b := startNode(t, mr.Addr(), Config{NodeID: "b"})
	a := startNode(t, pa.addr(), Config{NodeID: "a"})
	pa.setCut(true)
	closed := newClosedCh()
	l, err := b.Dial(a.Self(), "t", LinkOptions{}, &inbox{}, closed.fn)
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the open in a's stream", func() bool { return inStream(t, b, "a", kindOpen) == 1 })
	mr.Del(a.keys.relay("a"))
	pa.setCut(false)
	l.Send(candidate(t, "s", 0))
	if err := closed.wait(t); !errors.Is(err, ErrLinkBroken) {
		t.Fatalf("closed with %v, want ErrLinkBroken", err)
	}
	if len(a.core.openLinks()) != 0 {
		t.Fatal("a link whose open was lost was served")
	}
}

// TestRelaySurvivesShortOutage: a node cut off from Redis for less than
// the expiry keeps its links; what was sent meanwhile arrives, in order.
func TestRelaySurvivesShortOutage(t *testing.T) {
	mr := newMiniredis(t)
	pb := newProxy(t, mr.Addr())
	b := startNode(t, pb.addr(), Config{NodeID: "b"})
	a := startNode(t, mr.Addr(), Config{NodeID: "a"})
	var out inbox
	closed := newClosedCh()
	l, err := b.Dial(a.Self(), "t", LinkOptions{}, &out, closed.fn)
	if err != nil {
		t.Fatal(err)
	}
	sendCandidates(t, l, "s", 0, 10)
	served := acceptedLink(t, a, 1)
	inOrder(t, "before the outage", &served.got, 10)
	pb.setCut(true)
	sendCandidates(t, l, "s", 10, 20)
	time.Sleep(testExpiry / 4)
	pb.setCut(false)
	sendCandidates(t, l, "s", 20, 30)
	inOrder(t, "at the serving core", &served.got, 30)
	inOrder(t, "back at the dialler", &out, 30)
	closed.none(t)
}

// TestRelayOutageLongerThanExpiry: a node that cannot reach Redis for a
// whole expiry gives its links up, as its peers give it up. (That a shorter
// outage keeps them is TestRelaySurvivesShortOutage.)
func TestRelayOutageLongerThanExpiry(t *testing.T) {
	mr := newMiniredis(t)
	pb := newProxy(t, mr.Addr())
	b := startNode(t, pb.addr(), Config{NodeID: "b", Expiry: 4 * testInterval})
	a := startNode(t, mr.Addr(), Config{NodeID: "a"})
	closed := newClosedCh()
	if _, err := b.Dial(a.Self(), "t", LinkOptions{}, &inbox{}, closed.fn); err != nil {
		t.Fatal(err)
	}
	acceptedLink(t, a, 1)
	pb.setCut(true)
	if err := closed.wait(t); !errors.Is(err, ErrNodeDead) {
		t.Fatalf("closed with %v, want ErrNodeDead", err)
	}
}

func TestRelayBacklogBound(t *testing.T) {
	mr := newMiniredis(t)
	pb := newProxy(t, mr.Addr())
	b := startNode(t, pb.addr(), Config{NodeID: "b", MaxRelayBacklog: 4 << 10})
	a := startNode(t, mr.Addr(), Config{NodeID: "a"})
	pb.setCut(true)
	closed := newClosedCh()
	l, err := b.Dial(a.Self(), "t", LinkOptions{}, &inbox{}, closed.fn)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		l.Send(candidate(t, "s", i))
	}
	if err := closed.wait(t); !errors.Is(err, ErrLinkBroken) {
		t.Fatalf("closed with %v, want ErrLinkBroken", err)
	}
	pb.setCut(false)
}
