package session_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rtmrec/rtmrec/internal/testclient"
	"github.com/rtmrec/rtmrec/rtm"
	"github.com/rtmrec/rtmrec/session"
)

// directory is a cluster directory stand-in: it holds the ids claimed,
// refuses those a "live node" holds, and can be unreachable.
type directory struct {
	mu        sync.Mutex
	held      map[string]bool
	elsewhere map[string]bool
	down      bool
	released  []string
}

func newDirectory() *directory {
	return &directory{held: map[string]bool{}, elsewhere: map[string]bool{}}
}

func (d *directory) Claim(_ context.Context, tenant, id string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.down:
		return rtm.Errorf(rtm.CodeServerBusy, "the cluster directory is unreachable")
	case d.elsewhere[id]:
		return rtm.Errorf(rtm.CodeSessionExists, "session_id is already in use")
	}
	d.held[tenant+"/"+id] = true
	return nil
}

func (d *directory) Release(tenant, id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.held, tenant+"/"+id)
	d.released = append(d.released, id)
}

func (d *directory) holds(id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.held["/"+id]
}

func (d *directory) wasReleased(id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Contains(d.released, id)
}

func (d *directory) set(f func(d *directory)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f(d)
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startErr sends session_start for id and returns the server's refusal.
func (h *harness) startErr(c *testclient.Client, id string, offer *rtm.SessionDescription) rtm.ErrorData {
	h.t.Helper()
	if err := c.Send(rtm.TypeSessionStart, "c", id, rtm.SessionStart{SDP: offer}); err != nil {
		h.t.Fatal(err)
	}
	return testclient.Data[rtm.ErrorData](h.wait(c, func(m rtm.Message) bool { return m.Type == rtm.TypeError && m.SessionID == id }))
}

func TestSessionsClaimTheirIDsInTheDirectory(t *testing.T) {
	dir := newDirectory()
	h := newHarness(t, func(_ *session.Config, d *session.Deps) { d.Directory = dir })
	c := h.dial()

	h.start(c, "call", testclient.Tone)
	if !dir.holds("call") {
		t.Fatal("a running session's id is not claimed")
	}
	h.watcher(c, "sup", "call", 1, 0)
	if !dir.holds("sup") {
		t.Fatal("a supervisor session's id is not claimed")
	}

	// An id a live node holds elsewhere, and a directory out of reach.
	dir.set(func(d *directory) { d.elsewhere["taken"] = true })
	offer := &rtm.SessionDescription{Type: "offer", SDP: "v=0"}
	if e := h.startErr(c, "taken", offer); e.Code != rtm.CodeSessionExists {
		t.Fatalf("an id claimed elsewhere: %+v", e)
	}
	dir.set(func(d *directory) { d.down = true })
	if e := h.startErr(c, "unreachable", offer); e.Code != rtm.CodeServerBusy {
		t.Fatalf("directory unreachable: %+v", e)
	}
	dir.set(func(d *directory) { d.down = false })
	// Refused after its claim (the offer does not parse): released.
	if e := h.startErr(c, "bad-sdp", offer); e.Code != rtm.CodeInvalidSDP {
		t.Fatalf("garbage offer: %+v", e)
	}
	waitUntil(t, "the refused session's claim released", func() bool { return dir.wasReleased("bad-sdp") })
	if dir.wasReleased("taken") || dir.wasReleased("unreachable") {
		t.Fatal("a claim that was never granted was released")
	}

	// The end of the call releases both ids.
	if err := c.Send(rtm.TypeSessionStop, "", "call", nil); err != nil {
		t.Fatal(err)
	}
	h.terminated(c, "call")
	h.terminated(c, "sup")
	waitUntil(t, "the ended sessions' claims released", func() bool { return !dir.holds("call") && !dir.holds("sup") })
	// The id is free again, on this node too.
	h.start(c, "call", testclient.Tone)
	if !dir.holds("call") {
		t.Fatal("the id's new session is not claimed")
	}
}

func TestDrainRefusesNewSessionsOnly(t *testing.T) {
	h := newHarness(t, nil)
	c := h.dial()
	h.start(c, "call", testclient.Tone)
	if !h.srv.Ready() || h.srv.Load() != 1 {
		t.Fatalf("ready %v, load %d before the drain", h.srv.Ready(), h.srv.Load())
	}
	h.srv.Drain()
	if h.srv.Ready() || h.srv.Draining() {
		t.Fatalf("after Drain: ready %v (want false), shutting down %v (want false)", h.srv.Ready(), h.srv.Draining())
	}
	offer := &rtm.SessionDescription{Type: "offer", SDP: "v=0"}
	if e := h.startErr(c, "new", offer); e.Code != rtm.CodeServerBusy {
		t.Fatalf("a new session while draining: %+v", e)
	}
	// A supervisor may still join the running call, which goes on; a new
	// connection is still accepted.
	h.watcher(h.dial(), "sup", "call", 1, 0)
	h.waitPackets("call", 1, 50)
	if h.srv.Load() != 2 {
		t.Fatalf("load %d, want the call and its supervisor", h.srv.Load())
	}
	if err := c.Send(rtm.TypeSessionStop, "", "call", nil); err != nil {
		t.Fatal(err)
	}
	h.terminated(c, "call")
	waitUntil(t, "no session left", func() bool { return h.srv.Load() == 0 })
}

// router stands in for a cluster's: it sees every connection's messages
// before the local link does.
type router struct {
	mu     sync.Mutex
	routes []session.Route
	seen   []rtm.Type
	closed int
}

type routed struct {
	r     *router
	local *session.Link
}

func (r *router) Route(local *session.Link, _ session.Outlet, rt session.Route) session.Handler {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.routes = append(r.routes, rt)
	return routed{r, local}
}

func (h routed) Handle(m rtm.Message) {
	h.r.mu.Lock()
	h.r.seen = append(h.r.seen, m.Type)
	h.r.mu.Unlock()
	h.local.Handle(m)
}

func (h routed) Close() {
	h.r.mu.Lock()
	h.r.closed++
	h.r.mu.Unlock()
	h.local.Close()
}

func TestConnectionsGoThroughTheRouter(t *testing.T) {
	r := &router{}
	h := newHarness(t, func(_ *session.Config, d *session.Deps) { d.Router = r })
	// What the auth gate does: the principal and its raw token.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		h.srv.ServeHTTP(w, req.WithContext(session.WithToken(req.Context(), "raw-token")))
	}))
	t.Cleanup(srv.Close)
	h.url = "ws" + strings.TrimPrefix(srv.URL, "http")
	c := h.dial()
	h.start(c, "call", testclient.Tone)

	r.mu.Lock()
	if len(r.routes) != 1 || r.routes[0].Token != "raw-token" || r.routes[0].Options.Remote == "" {
		t.Errorf("routes = %+v, want one with the connection's token and address", r.routes)
	}
	if !slices.Contains(r.seen, rtm.TypeSessionStart) {
		t.Errorf("the router saw %v, not the session_start", r.seen)
	}
	r.mu.Unlock()
	c.Close()
	h.gone("call")
	waitUntil(t, "the router's handler closed", func() bool { r.mu.Lock(); defer r.mu.Unlock(); return r.closed == 1 })
}
