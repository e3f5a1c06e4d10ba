package cluster

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/rtmrec/rtmrec/rtm"
)

// client is one client connection to a node, through a Conn, as a front
// end would make it.
type client struct {
	out   *inbox
	local *simLink
	conn  *Conn
}

func connect(t testing.TB, tn *testNode, tenant string) *client {
	t.Helper()
	out := &inbox{}
	local := tn.core.localLink(tenant, out)
	c := &client{out: out, local: local, conn: tn.NewConn(local, out, ConnOptions{Tenant: tenant, Token: tenant, Link: LinkOptions{Remote: "192.0.2.1"}})}
	t.Cleanup(c.conn.Close)
	return c
}

func join(t testing.TB, sid, monitored string) rtm.Message {
	return msg(t, rtm.TypeSupervisorJoinSession, sid, rtm.SupervisorJoin{SDP: offer.SDP, SessionIDToMonitor: monitored})
}

// TestConnSupervisorOnAnotherNode: a supervisor connected to b joins a
// session that lives on a: its signaling is relayed to a, which serves the
// supervisor session, and the end of the call ends it.
func TestConnSupervisorOnAnotherNode(t *testing.T) {
	mr := newMiniredis(t)
	a := startNode(t, mr.Addr(), Config{NodeID: "a"})
	b := startNode(t, mr.Addr(), Config{NodeID: "b"})
	agent := connect(t, a, "acme")
	sup := connect(t, b, "acme")

	agent.conn.Handle(msg(t, rtm.TypeSessionStart, "call", offer))
	agent.out.waitFor(t, "the agent's answer", isType(rtm.TypeSDPUpdate, "call"))

	sup.conn.Handle(join(t, "sup", "call"))
	sup.out.waitFor(t, "the supervisor's answer, from a", isType(rtm.TypeSDPUpdate, "sup"))
	if a.core.session("acme", "sup") == nil || b.core.session("acme", "sup") != nil {
		t.Fatal("the supervisor session is not on a alone")
	}
	if got, err := b.Locate(context.Background(), "acme", "sup"); err != nil || got.ID != "a" {
		t.Fatalf("the supervisor's id is claimed by %q, %v", got.ID, err)
	}
	served := acceptedLink(t, a, 2)
	if served.opts.Remote != "192.0.2.1" {
		t.Fatalf("the client's address did not travel: %+v", served.opts)
	}

	// The supervisor's own messages go to a too, in order.
	for i := range 20 {
		sup.conn.Handle(candidate(t, "sup", i))
	}
	waitUntil(t, "the supervisor's candidates at a", func() bool { return len(served.got.all()) == 21 })
	for i, m := range served.got.all()[1:] {
		if candidateNo(m) != i {
			t.Fatalf("candidate %d arrived as %d", candidateNo(m), i)
		}
	}
	// A ping needs no session: b answers it.
	sup.conn.Handle(msg(t, rtm.TypePing, "", nil))
	sup.out.waitFor(t, "pong", isType(rtm.TypePong, ""))
	if len(sup.local.got.all()) != 1 {
		t.Fatalf("b's core got %d messages, want only the ping", len(sup.local.got.all()))
	}

	if b.Relayed() != 1 || a.Relayed() != 0 {
		t.Fatalf("relayed sessions: a %d, b %d; want 0 and 1", a.Relayed(), b.Relayed())
	}

	agent.conn.Handle(msg(t, rtm.TypeSessionStop, "call", nil))
	sup.out.waitFor(t, "the supervisor ended with the call", isTerminated("sup", rtm.CauseMonitoredSessionEnd))
	if b.Relayed() != 0 {
		t.Fatalf("b still counts %d relayed sessions after the supervisor ended", b.Relayed())
	}
	// The route is gone: a message for the ended session is b's to answer.
	sup.conn.Handle(candidate(t, "sup", 99))
	waitUntil(t, "b's core to get the late message", func() bool { return len(sup.local.got.all()) == 2 })
}

func TestConnSessionIDsAreClusterWide(t *testing.T) {
	mr := newMiniredis(t)
	a := startNode(t, mr.Addr(), Config{NodeID: "a"})
	b := startNode(t, mr.Addr(), Config{NodeID: "b"})
	onA := connect(t, a, "acme")
	onB := connect(t, b, "acme")
	otherTenant := connect(t, b, "globex")

	onA.conn.Handle(msg(t, rtm.TypeSessionStart, "s1", offer))
	onA.out.waitFor(t, "the first start", isType(rtm.TypeSDPUpdate, "s1"))
	onB.conn.Handle(msg(t, rtm.TypeSessionStart, "s1", offer))
	m := onB.out.waitFor(t, "session_exists on the other node", isError("s1", rtm.CodeSessionExists))
	if d := errorData(t, m); d.RequestType != rtm.TypeSessionStart {
		t.Fatalf("error for %q", d.RequestType)
	}
	otherTenant.conn.Handle(msg(t, rtm.TypeSessionStart, "s1", offer))
	otherTenant.out.waitFor(t, "the same id in another tenant", isType(rtm.TypeSDPUpdate, "s1"))

	// A supervisor of another tenant does not find acme's sessions.
	onA.conn.Handle(msg(t, rtm.TypeSessionStart, "acme-only", offer))
	onA.out.waitFor(t, "acme's other session", isType(rtm.TypeSDPUpdate, "acme-only"))
	otherTenant.conn.Handle(join(t, "sup", "acme-only"))
	otherTenant.out.waitFor(t, "session_not_found", isError("sup", rtm.CodeSessionNotFound))
	if len(a.core.openLinks()) != 1 {
		t.Fatal("a link was opened to a for another tenant's supervisor")
	}
}

// TestConnBalancing: a node at its soft capacity serves a new session on
// the least loaded other node, relaying its signaling.
func TestConnBalancing(t *testing.T) {
	mr := newMiniredis(t)
	full := startNode(t, mr.Addr(), Config{NodeID: "full", SoftCapacity: 1})
	spare := startNode(t, mr.Addr(), Config{NodeID: "spare", SoftCapacity: 5})
	full.load.set(1)
	waitUntil(t, "full to see spare", func() bool {
		_, local, err := full.Place()
		return err == nil && !local
	})
	c := connect(t, full, "acme")
	c.conn.Handle(msg(t, rtm.TypeSessionStart, "s", offer))
	c.out.waitFor(t, "the answer from spare", isType(rtm.TypeSDPUpdate, "s"))
	if spare.core.session("acme", "s") == nil || full.core.session("acme", "s") != nil {
		t.Fatal("the session is not on spare")
	}
	c.conn.Handle(msg(t, rtm.TypeSessionStop, "s", nil))
	c.out.waitFor(t, "TERMINATED from spare", isTerminated("s", rtm.CauseClient))

	// A start without an id is placed and answered under an id the Conn
	// chose, which later messages reach.
	c.conn.Handle(msg(t, rtm.TypeSessionStart, "", offer))
	answer := c.out.waitFor(t, "an answer under a generated id", func(m rtm.Message) bool {
		return m.Type == rtm.TypeSDPUpdate && m.SessionID != "" && m.SessionID != "s"
	})
	c.conn.Handle(msg(t, rtm.TypeSessionStop, answer.SessionID, nil))
	c.out.waitFor(t, "TERMINATED under the generated id", isTerminated(answer.SessionID, rtm.CauseClient))

	// No room anywhere: server_busy.
	spare.load.set(5)
	waitUntil(t, "full to see spare full", func() bool { _, _, err := full.Place(); return err != nil })
	c.conn.Handle(msg(t, rtm.TypeSessionStart, "s2", offer))
	m := c.out.waitFor(t, "server_busy", isError("s2", rtm.CodeServerBusy))
	if d := errorData(t, m); d.RequestType != rtm.TypeSessionStart {
		t.Fatalf("error for %q", d.RequestType)
	}
}

func TestConnBusyWithoutRedis(t *testing.T) {
	mr := newMiniredis(t)
	px := newProxy(t, mr.Addr())
	a := startNode(t, px.addr(), Config{NodeID: "a"})
	c := connect(t, a, "acme")
	c.conn.Handle(msg(t, rtm.TypeSessionStart, "running", offer))
	c.out.waitFor(t, "the answer", isType(rtm.TypeSDPUpdate, "running"))
	px.setCut(true)
	waitUntil(t, "not ready", func() bool { return !a.Ready() })
	c.conn.Handle(msg(t, rtm.TypeSessionStart, "new", offer))
	c.out.waitFor(t, "server_busy for a new session", isError("new", rtm.CodeServerBusy))
	c.conn.Handle(join(t, "sup", "running"))
	c.out.waitFor(t, "server_busy for a new supervisor", isError("sup", rtm.CodeServerBusy))
	// What runs goes on.
	c.conn.Handle(msg(t, rtm.TypeSessionStop, "running", nil))
	c.out.waitFor(t, "the running session ends as asked", isTerminated("running", rtm.CauseClient))
}

// TestConnServingNodeDies: the sessions a dead node served for this
// connection end with TERM_BY_ERROR, and an unanswered start gets an
// error.
func TestConnServingNodeDies(t *testing.T) {
	mr := newMiniredis(t)
	a := startNode(t, mr.Addr(), Config{NodeID: "a"})
	b := startNode(t, mr.Addr(), Config{NodeID: "b"})
	agent := connect(t, a, "acme")
	sup := connect(t, b, "acme")
	agent.conn.Handle(msg(t, rtm.TypeSessionStart, "call", offer))
	agent.out.waitFor(t, "the agent's answer", isType(rtm.TypeSDPUpdate, "call"))
	sup.conn.Handle(join(t, "sup", "call"))
	sup.out.waitFor(t, "the supervisor's answer", isType(rtm.TypeSDPUpdate, "sup"))

	a.crash()
	expire(t, mr, b)
	m := sup.out.waitFor(t, "TERM_BY_ERROR", isTerminated("sup", rtm.CauseError))
	if st := (rtm.SessionState{}); json.Unmarshal(m.Data, &st) != nil || st.Reason == "" {
		t.Fatalf("TERMINATED without a reason: %s", m.Data)
	}
	// The route went with the link: the next message is b's to answer.
	sup.conn.Handle(candidate(t, "sup", 1))
	waitUntil(t, "b's core to get it", func() bool { return len(sup.local.got.all()) == 1 })
	if b.Relayed() != 0 {
		t.Fatalf("b counts %d relayed sessions after their node died", b.Relayed())
	}
}

// TestConnRefused: the serving node verifies the token again; when it
// refuses, the client gets the code it would have got there.
func TestConnRefused(t *testing.T) {
	mr := newMiniredis(t)
	a := startNode(t, mr.Addr(), Config{NodeID: "a"})
	b := startNode(t, mr.Addr(), Config{NodeID: "b"})
	agent := connect(t, a, "acme")
	agent.conn.Handle(msg(t, rtm.TypeSessionStart, "call", offer))
	agent.out.waitFor(t, "the answer", isType(rtm.TypeSDPUpdate, "call"))
	// b took the supervisor's token; a no longer does (it expired, say).
	a.core.mu.Lock()
	a.core.refuse = rtm.Errorf(rtm.CodeUnauthorized, "token has expired")
	a.core.mu.Unlock()
	sup := connect(t, b, "acme")
	sup.conn.Handle(join(t, "sup", "call"))
	m := sup.out.waitFor(t, "unauthorized", isError("sup", rtm.CodeUnauthorized))
	if d := errorData(t, m); d.RequestType != rtm.TypeSupervisorJoinSession || d.Message != "token has expired" {
		t.Fatalf("error %+v", d)
	}
}

// TestConnClose: closing the connection delivers what was handed over
// first (a session_stop keeps its cause), then ends the sessions left on
// every node (TERM_BY_DISCONNECT there).
func TestConnClose(t *testing.T) {
	mr := newMiniredis(t)
	a := startNode(t, mr.Addr(), Config{NodeID: "a"})
	b := startNode(t, mr.Addr(), Config{NodeID: "b"})
	agent := connect(t, a, "acme")
	agent.conn.Handle(msg(t, rtm.TypeSessionStart, "call", offer))
	agent.conn.Handle(msg(t, rtm.TypeSessionStart, "call2", offer))
	agent.out.waitFor(t, "the agent's answer", isType(rtm.TypeSDPUpdate, "call2"))

	sup := connect(t, b, "acme")
	sup.conn.Handle(join(t, "sup1", "call"))
	sup.conn.Handle(join(t, "sup2", "call2"))
	sup.out.waitFor(t, "the answers", isType(rtm.TypeSDPUpdate, "sup2"))
	sup.conn.Handle(msg(t, rtm.TypeSessionStop, "sup1", nil))
	sup.conn.Close()
	if b.Relayed() != 0 {
		t.Fatalf("b counts %d relayed sessions after the connection closed", b.Relayed())
	}
	served := acceptedLink(t, a, 2)
	waitUntil(t, "a's core link for the supervisor closed", served.isClosed)
	if !sup.local.isClosed() {
		t.Fatal("Close returned with b's core link open")
	}
	if a.core.session("acme", "sup1") != nil || a.core.session("acme", "sup2") != nil {
		t.Fatal("supervisor sessions outlived their connection")
	}
	if !slices.ContainsFunc(served.got.all(), isType(rtm.TypeSessionStop, "sup1")) {
		t.Fatal("the session_stop handed over before Close did not reach a")
	}
	sup.conn.Handle(join(t, "late", "call")) // after Close: nothing
}

// TestConnCarriesARefreshedToken: a token this node's core took through
// token_refresh goes to the nodes serving the connection's sessions (their
// answers stay there: the client heard this node's), and the links opened
// later carry it.
func TestConnCarriesARefreshedToken(t *testing.T) {
	mr := newMiniredis(t)
	a := startNode(t, mr.Addr(), Config{NodeID: "a"})
	b := startNode(t, mr.Addr(), Config{NodeID: "b"})
	c := startNode(t, mr.Addr(), Config{NodeID: "c"})
	for _, n := range []*testNode{a, c} {
		agent := connect(t, n, "acme")
		agent.conn.Handle(msg(t, rtm.TypeSessionStart, "call-"+n.ID(), offer))
		agent.out.waitFor(t, "the agent's answer", isType(rtm.TypeSDPUpdate, "call-"+n.ID()))
	}
	sup := connect(t, b, "acme")
	sup.conn.Handle(join(t, "sup-a", "call-a"))
	sup.out.waitFor(t, "the supervisor's answer from a", isType(rtm.TypeSDPUpdate, "sup-a"))

	// What the session core does with a token_refresh it accepts.
	sup.conn.Handle(msg(t, rtm.TypeTokenRefresh, "", rtm.TokenRefresh{Token: "acme#2"}))
	sup.out.waitFor(t, "b's answer", isType(rtm.TypeTokenRefreshed, ""))
	sup.conn.CarryToken("acme#2")
	served := acceptedLink(t, a, 2)
	waitUntil(t, "the token at a", func() bool { return slices.ContainsFunc(served.got.all(), isType(rtm.TypeTokenRefresh, "")) })
	// Like an open frame's, the token does not stay in Redis once read.
	waitUntil(t, "the token gone from a's stream", func() bool {
		entries, err := b.rdb.XRange(context.Background(), a.keys.relay("a"), "-", "+").Result()
		return err == nil && !slices.ContainsFunc(entries, func(e redis.XMessage) bool {
			m, _ := e.Values["m"].(string)
			return strings.Contains(m, "acme#2")
		})
	})
	// a's answer to it came back before the echo of a later message on
	// the same link.
	sup.conn.Handle(candidate(t, "sup-a", 7))
	sup.out.waitFor(t, "the echo from a", func(m rtm.Message) bool { return m.Type == rtm.TypeCandidate && candidateNo(m) == 7 })

	sup.conn.Handle(join(t, "sup-c", "call-c"))
	sup.out.waitFor(t, "the supervisor's answer from c", isType(rtm.TypeSDPUpdate, "sup-c"))
	if l := acceptedLink(t, c, 2); l.token != "acme#2" {
		t.Fatalf("a link opened after the refresh carries %q", l.token)
	}
	if n := len(slices.DeleteFunc(sup.out.all(), func(m rtm.Message) bool { return m.Type != rtm.TypeTokenRefreshed })); n != 1 {
		t.Fatalf("the client got %d token_refreshed, want b's alone", n)
	}
}
