package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/rtmrec/rtmrec/rtm"
)

func TestMain(m *testing.M) {
	flag.Parse()
	redis.SetLogger(RedisLogger(testLogger()))
	goleak.VerifyTestMain(m)
}

// Timings of the tests: short enough to keep them quick, long enough not
// to flap on a busy machine. Tests on miniredis expire keys only when they
// fast-forward its clock, so a busy machine never kills a node there.
const (
	testInterval = 50 * time.Millisecond
	testExpiry   = 2 * time.Second
	waitLong     = 10 * time.Second
)

func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// testNode is a node running in the test with a Redis client of its own.
type testNode struct {
	*Node
	rdb    redis.UniversalClient
	core   *coreSim
	load   *loadValue
	cancel context.CancelFunc
	done   chan struct{}
}

type loadValue struct {
	mu sync.Mutex
	n  int
}

func (l *loadValue) get() int  { l.mu.Lock(); defer l.mu.Unlock(); return l.n }
func (l *loadValue) set(n int) { l.mu.Lock(); l.n = n; l.mu.Unlock() }

// startNode runs a node against addr (host:port) and waits until it is
// ready. cfg.NodeID is required; zero timings get the test ones.
func startNode(t testing.TB, addr string, cfg Config) *testNode {
	t.Helper()
	tn := newTestNode(t, addr, cfg)
	tn.start(t)
	waitUntil(t, "node "+cfg.NodeID+" ready", tn.Ready)
	return tn
}

func newTestNode(t testing.TB, addr string, cfg Config) *testNode {
	t.Helper()
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = testInterval
	}
	if cfg.Expiry == 0 {
		cfg.Expiry = testExpiry
	}
	rdb, err := NewRedisClient("redis://" + addr + "?max_retries=-1&dial_timeout=500ms")
	if err != nil {
		t.Fatal(err)
	}
	tn := &testNode{rdb: rdb, core: newCoreSim(), load: &loadValue{}}
	n, err := New(cfg, Deps{Redis: rdb, Core: tn.core, Load: tn.load.get, Logger: testLogger().With("node", cfg.NodeID)})
	if err != nil {
		t.Fatal(err)
	}
	tn.Node, tn.core.n = n, n
	t.Cleanup(tn.stop)
	return tn
}

func (tn *testNode) start(t testing.TB) {
	ctx, cancel := context.WithCancel(context.Background())
	tn.cancel, tn.done = cancel, make(chan struct{})
	go func() {
		defer close(tn.done)
		if err := tn.Run(ctx); err != nil {
			t.Error(err)
		}
	}()
}

// stop ends the node gracefully (it leaves the cluster).
func (tn *testNode) stop() {
	if tn.cancel == nil {
		return
	}
	tn.cancel()
	<-tn.done
	tn.cancel = nil
	tn.rdb.Close()
}

// crash ends the node as kill -9 would for the others: its heartbeat,
// claims and links stay in Redis until they expire.
func (tn *testNode) crash() {
	tn.rdb.Close()
	tn.stop()
}

// waitUntil polls cond until it holds or the test times out.
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func newMiniredis(t testing.TB) *miniredis.Miniredis {
	t.Helper()
	return miniredis.RunT(t)
}

// inbox is an Outlet that keeps what it is sent.
type inbox struct {
	mu   sync.Mutex
	msgs []rtm.Message
}

func (b *inbox) Send(m rtm.Message) {
	b.mu.Lock()
	b.msgs = append(b.msgs, m)
	b.mu.Unlock()
}

func (b *inbox) all() []rtm.Message {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]rtm.Message(nil), b.msgs...)
}

// waitFor waits until a message matches and returns it.
func (b *inbox) waitFor(t testing.TB, what string, match func(rtm.Message) bool) rtm.Message {
	t.Helper()
	var found rtm.Message
	waitUntil(t, what, func() bool {
		for _, m := range b.all() {
			if match(m) {
				found = m
				return true
			}
		}
		return false
	})
	return found
}

func isType(typ rtm.Type, sid string) func(rtm.Message) bool {
	return func(m rtm.Message) bool { return m.Type == typ && m.SessionID == sid }
}

func isError(sid string, code rtm.Code) func(rtm.Message) bool {
	return func(m rtm.Message) bool {
		var d rtm.ErrorData
		return m.Type == rtm.TypeError && m.SessionID == sid && json.Unmarshal(m.Data, &d) == nil && d.Code == code
	}
}

func isTerminated(sid string, cause rtm.Cause) func(rtm.Message) bool {
	return func(m rtm.Message) bool {
		var d rtm.SessionState
		return m.Type == rtm.TypeSessionState && m.SessionID == sid && json.Unmarshal(m.Data, &d) == nil &&
			d.State == rtm.StateTerminated && d.TerminationCause == cause
	}
}

func errorData(t testing.TB, m rtm.Message) rtm.ErrorData {
	t.Helper()
	var d rtm.ErrorData
	if err := json.Unmarshal(m.Data, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

func msg(t testing.TB, typ rtm.Type, sid string, data any) rtm.Message {
	t.Helper()
	m, err := rtm.NewMessage(typ, "client-1", sid, data)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func candidate(t testing.TB, sid string, i int) rtm.Message {
	return msg(t, rtm.TypeCandidate, sid, rtm.CandidateData{Candidate: &rtm.ICECandidate{Candidate: fmt.Sprint(i)}})
}

func candidateNo(m rtm.Message) int {
	var d rtm.CandidateData
	if json.Unmarshal(m.Data, &d) != nil || d.Candidate == nil {
		return -1
	}
	var i int
	if _, err := fmt.Sscan(d.Candidate.Candidate, &i); err != nil {
		return -1
	}
	return i
}

var offer = rtm.SessionStart{SDP: &rtm.SessionDescription{Type: "offer", SDP: "v=0"}}

// coreSim stands in for the session core, as far as the cluster sees it:
// it verifies tokens (the tenant is the token up to a '#', "bad" is
// refused; a token_refresh is answered token_refreshed), claims
// the ids of the sessions it starts through the node, and answers like the
// core: an answer and CONNECTING for a start, TERMINATED at the end,
// TERM_BY_MONITORED_SESSION_END for supervisors, pong, and an echo of every
// candidate (so tests can check order end to end).
type coreSim struct {
	n *Node

	mu       sync.Mutex
	sessions map[string]*simSession // tenant + " " + id
	links    []*simLink
	refuse   error // OpenLink fails with it when set
}

type simSession struct {
	link      *simLink
	tenant    string
	id        string
	clientID  string
	monitored string // for supervisors
}

type simLink struct {
	core   *coreSim
	out    Outlet
	tenant string
	token  string
	opts   LinkOptions
	got    inbox
	closed chan struct{}
}

func newCoreSim() *coreSim { return &coreSim{sessions: map[string]*simSession{}} }

func (c *coreSim) OpenLink(token string, out Outlet, opts LinkOptions) (CoreLink, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refuse != nil {
		return nil, c.refuse
	}
	if token == "bad" {
		return nil, rtm.Errorf(rtm.CodeUnauthorized, "token is not valid")
	}
	tenant, _, _ := strings.Cut(token, "#")
	l := &simLink{core: c, out: out, tenant: tenant, token: token, opts: opts, closed: make(chan struct{})}
	c.links = append(c.links, l)
	return l, nil
}

// localLink is the core link a front end of this node opens.
func (c *coreSim) localLink(tenant string, out Outlet) *simLink {
	l, _ := c.OpenLink(tenant, out, LinkOptions{})
	return l.(*simLink)
}

func (c *coreSim) openLinks() []*simLink {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*simLink(nil), c.links...)
}

func (c *coreSim) session(tenant, id string) *simSession {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sessions[tenant+" "+id]
}

func (l *simLink) reply(typ rtm.Type, clientID, sid string, data any) {
	m, _ := rtm.NewMessage(typ, clientID, sid, data)
	l.out.Send(m)
}

func (l *simLink) fail(m rtm.Message, err error) {
	var re *rtm.Error
	if !errors.As(err, &re) {
		re = rtm.Errorf(rtm.CodeInternal, "internal error")
	}
	l.reply(rtm.TypeError, m.ClientID, m.SessionID, rtm.ErrorData{Code: re.Code, Message: re.Message, RequestType: m.Type})
}

func (l *simLink) Handle(m rtm.Message) {
	l.got.Send(m)
	c := l.core
	switch m.Type {
	case rtm.TypePing:
		l.reply(rtm.TypePong, m.ClientID, m.SessionID, nil)
	case rtm.TypeTokenRefresh:
		l.reply(rtm.TypeTokenRefreshed, m.ClientID, m.SessionID, rtm.TokenRefreshed{})
	case rtm.TypeCandidate:
		l.out.Send(m)
	case rtm.TypeSessionStart, rtm.TypeSupervisorJoinSession:
		var d rtm.SupervisorJoin
		_ = json.Unmarshal(m.Data, &d)
		if m.Type == rtm.TypeSupervisorJoinSession && c.session(l.tenant, d.SessionIDToMonitor) == nil {
			l.fail(m, rtm.Errorf(rtm.CodeSessionNotFound, "no such session"))
			return
		}
		if c.session(l.tenant, m.SessionID) != nil {
			l.fail(m, rtm.Errorf(rtm.CodeSessionExists, "session_id is already in use"))
			return
		}
		if err := c.n.Claim(context.Background(), l.tenant, m.SessionID); err != nil {
			l.fail(m, err)
			return
		}
		c.mu.Lock()
		c.sessions[l.tenant+" "+m.SessionID] = &simSession{link: l, tenant: l.tenant, id: m.SessionID, clientID: m.ClientID, monitored: d.SessionIDToMonitor}
		c.mu.Unlock()
		l.reply(rtm.TypeSDPUpdate, m.ClientID, m.SessionID, rtm.SDPUpdate{SDP: &rtm.SessionDescription{Type: "answer", SDP: "v=0"}})
		l.reply(rtm.TypeSessionState, m.ClientID, m.SessionID, rtm.SessionState{State: rtm.StateConnecting})
	case rtm.TypeSessionStop:
		if s := c.session(l.tenant, m.SessionID); s != nil && s.link == l {
			c.end(s, rtm.CauseClient)
		}
	}
}

// end terminates a session and the supervisors monitoring it.
func (c *coreSim) end(s *simSession, cause rtm.Cause) {
	c.mu.Lock()
	if c.sessions[s.tenant+" "+s.id] != s {
		c.mu.Unlock()
		return
	}
	delete(c.sessions, s.tenant+" "+s.id)
	var sups []*simSession
	for _, o := range c.sessions {
		if o.tenant == s.tenant && o.monitored == s.id {
			sups = append(sups, o)
		}
	}
	c.mu.Unlock()
	c.n.Release(s.tenant, s.id)
	s.link.reply(rtm.TypeSessionState, s.clientID, s.id, rtm.SessionState{State: rtm.StateTerminated, TerminationCause: cause})
	for _, o := range sups {
		c.end(o, rtm.CauseMonitoredSessionEnd)
	}
}

func (l *simLink) Close() {
	c := l.core
	c.mu.Lock()
	var mine []*simSession
	for _, s := range c.sessions {
		if s.link == l {
			mine = append(mine, s)
		}
	}
	c.mu.Unlock()
	for _, s := range mine {
		c.end(s, rtm.CauseDisconnect)
	}
	close(l.closed)
}

func (l *simLink) isClosed() bool {
	select {
	case <-l.closed:
		return true
	default:
		return false
	}
}

// proxy is a TCP proxy in front of Redis that can cut one node off
// (partition) and let it back.
type proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func newProxy(t testing.TB, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		ln.Close()
		p.setCut(true)
		p.wg.Wait()
	})
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			_, _ = io.Copy(dst, src)
			dst.Close()
			src.Close()
		}
		p.wg.Go(func() { pipe(up, c) })
		p.wg.Go(func() { pipe(c, up) })
	}
}

// setCut cuts every connection and refuses new ones (true), or lets them
// through again (false).
func (p *proxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for c := range p.conns {
			c.Close()
		}
		clear(p.conns)
	}
}

// expire moves miniredis' clock past the expiry, so that every heartbeat
// expires, and waits until the live nodes have written theirs again: what
// is left dead are the nodes that crashed.
func expire(t testing.TB, mr *miniredis.Miniredis, live ...*testNode) {
	t.Helper()
	mr.FastForward(testExpiry)
	waitUntil(t, "the live nodes' heartbeats", func() bool {
		for _, n := range live {
			if !mr.Exists(n.keys.node(n.ID())) {
				return false
			}
		}
		return true
	})
}
