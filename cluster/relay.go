package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rtmrec/rtmrec/rtm"
)

// The relay carries RTM messages between a node that holds a client's
// WebSocket (the dialler) and the node that serves the client's sessions
// (the acceptor), over one link per client connection and serving node.
//
// Every node reads its own stream (relay:<id>) with blocking XREADs,
// resuming after the last entry it read, so a reconnect of the Redis client
// loses nothing. Every node writes through one FIFO backlog, in order,
// retrying while Redis is unreachable. Each frame of a link carries a
// sequence number: a retried write's duplicates are dropped, and a gap
// (Redis lost data) fails the link instead of silently skipping messages.
// A link ends when either end closes it, when the peer's heartbeat expires,
// or when this node cannot confirm the peer alive for a whole expiry.
type relay struct {
	n          *Node
	core       Core
	log        *slog.Logger
	positioned chan struct{} // closed once the reader knows where to start

	mu      sync.Mutex
	peers   map[string]*peer     // by node id and incarnation (peerKey)
	tombs   map[string]time.Time // links ended recently: their late frames are dropped silently
	backlog []queued
	queued  int // bytes in backlog
	nextQID uint64
	wake    chan struct{}
	stopped bool

	closers sync.WaitGroup // core links being closed
}

// peer is another node this one has links with.
type peer struct {
	id, inc   string
	stream    string
	links     map[string]*endpoint
	confirmed time.Time // last seen alive
}

// endpoint is this node's end of one link. Its sequence numbers and
// membership are guarded by relay.mu; delivery by dmu.
type endpoint struct {
	id       string
	peer     *peer
	accepted bool // the peer dialled it; this node's core serves it
	seqOut   uint64
	nextIn   uint64
	lastOut  time.Time

	// dmu orders deliveries and the end: the end callback, which runs
	// once, comes after the last delivery. Nothing is delivered once done.
	dmu     sync.Mutex
	done    atomic.Bool
	deliver func(rtm.Message)
	ended   func(error)
}

type queued struct {
	qid    uint64
	peer   string // peerKey
	stream string
	values []any
	size   int
}

func newRelay(n *Node, core Core) *relay {
	return &relay{
		n: n, core: core, log: n.log, positioned: make(chan struct{}),
		peers: map[string]*peer{}, tombs: map[string]time.Time{}, wake: make(chan struct{}, 1),
	}
}

// Link is the dialling end of a relay link: it sends one client
// connection's messages to the node serving its sessions.
type Link struct {
	r *relay
	e *endpoint
}

// Dial opens a link to target (from Place or Locate) for one client
// connection. token is the connection's raw bearer token ("" without
// access control): target verifies it again, trusting the stream no more
// than this node trusted the client. What target's core says arrives on
// out, in order. closed is called once if the link ends otherwise than by
// Link.Close: ErrNodeDead, ErrLinkBroken, ErrNodeStopping, a
// *LinkRefusedError, or nil when target closed it. Dial does not wait for
// target: messages sent at once are queued behind the open.
func (n *Node) Dial(target NodeInfo, token string, opts LinkOptions, out Outlet, closed func(error)) (*Link, error) {
	if target.ID == n.cfg.NodeID {
		return nil, errors.New("cluster: a node does not dial itself")
	}
	if ValidNodeID(target.ID) != nil || !isToken(target.Incarnation) {
		return nil, errors.New("cluster: dial target has no valid id and incarnation")
	}
	return n.relay.dial(target, token, opts, out, closed)
}

// Send queues a client message for the serving node; it never blocks. After
// the link ended it does nothing.
func (l *Link) Send(m rtm.Message) { l.r.send(l.e, m) }

// Close ends the link: the serving node closes its core link
// (TERM_BY_DISCONNECT for the link's sessions). The closed callback is not
// called.
func (l *Link) Close() { l.r.closeLink(l.e) }

// Node is the id of the node the link goes to.
func (l *Link) Node() string { return l.e.peer.id }

func (r *relay) dial(target NodeInfo, token string, opts LinkOptions, out Outlet, closed func(error)) (*Link, error) {
	id, err := newLinkID()
	if err != nil {
		return nil, err
	}
	e := &endpoint{id: id, nextIn: 2, deliver: out.Send, ended: closed}
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		return nil, ErrNodeStopping
	}
	p := r.peerLocked(target.ID, target.Incarnation)
	e.peer = p
	p.links[id] = e
	ok := r.sendLocked(e, frame{Kind: kindOpen, Token: token, Opts: &opts})
	if !ok {
		r.dropLocked(e)
	}
	r.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("cluster: %w: the relay backlog is full", ErrLinkBroken)
	}
	r.n.m.links.Inc()
	return &Link{r: r, e: e}, nil
}

// peerLocked finds or adds a peer. Each incarnation of a node is a peer
// of its own: the links with one that restarted end when checkPeers finds
// its heartbeat gone, while the new one may already have links (which of
// two incarnations is newer is not known here).
func (r *relay) peerLocked(id, inc string) *peer {
	if p := r.peers[peerKey(id, inc)]; p != nil {
		return p
	}
	p := &peer{id: id, inc: inc, stream: r.n.keys.relay(id), links: map[string]*endpoint{}, confirmed: time.Now()}
	r.peers[peerKey(id, inc)] = p
	return p
}

func peerKey(id, inc string) string { return id + " " + inc }

// sender is the address of a frame's sender, for replies: its peer entry,
// or a detached one when there is none.
func (r *relay) sender(f frame) *peer {
	if p := r.peers[peerKey(f.From, f.FromInc)]; p != nil {
		return p
	}
	return &peer{id: f.From, inc: f.FromInc, stream: r.n.keys.relay(f.From), links: map[string]*endpoint{}}
}

// dropPeerLocked forgets a peer and its queued frames, and returns its
// links to be ended.
func (r *relay) dropPeerLocked(p *peer) []*endpoint {
	delete(r.peers, peerKey(p.id, p.inc))
	gone := make([]*endpoint, 0, len(p.links))
	for _, e := range p.links {
		gone = append(gone, e)
		r.dropLocked(e)
	}
	kept := r.backlog[:0]
	for _, q := range r.backlog {
		if q.peer == peerKey(p.id, p.inc) {
			r.queued -= q.size
			continue
		}
		kept = append(kept, q)
	}
	clear(r.backlog[len(kept):])
	r.backlog = kept
	r.n.m.backlog.Set(float64(r.queued))
	return gone
}

// dropLocked removes a link from its peer and remembers it ended.
func (r *relay) dropLocked(e *endpoint) {
	if e.peer.links[e.id] == e {
		delete(e.peer.links, e.id)
		r.tombs[e.id] = time.Now()
	}
}

// sendLocked numbers a frame of link e and queues it for the writer; false
// when the backlog is full.
func (r *relay) sendLocked(e *endpoint, f frame) bool {
	f.Link = e.id
	f.Seq = e.seqOut + 1
	if !r.queueLocked(e.peer, f) {
		return false
	}
	e.seqOut++
	e.lastOut = time.Now()
	return true
}

// queueLocked adds a frame to the backlog. Opens and messages are refused
// above the backlog bound; closes and syncs are small and always queued.
func (r *relay) queueLocked(p *peer, f frame) bool {
	f.From, f.FromInc, f.ToInc = r.n.cfg.NodeID, r.n.inc, p.inc
	size := f.size()
	if (f.Kind == kindOpen || f.Kind == kindMsg) && r.queued+size > r.n.cfg.MaxRelayBacklog {
		return false
	}
	r.nextQID++
	r.backlog = append(r.backlog, queued{qid: r.nextQID, peer: peerKey(p.id, p.inc), stream: p.stream, values: f.values(), size: size})
	r.queued += size
	r.n.m.backlog.Set(float64(r.queued))
	select {
	case r.wake <- struct{}{}:
	default:
	}
	return true
}

// send queues one RTM message on link e.
func (r *relay) send(e *endpoint, m rtm.Message) {
	b, err := json.Marshal(m)
	if err != nil {
		r.log.Error("encoding a relayed message", "err", err, "session_id", m.SessionID)
		return
	}
	r.mu.Lock()
	if r.stopped || e.peer.links[e.id] != e {
		r.mu.Unlock()
		return
	}
	if r.sendLocked(e, frame{Kind: kindMsg, Msg: b, Secret: m.Type == rtm.TypeTokenRefresh}) {
		r.mu.Unlock()
		return
	}
	r.dropLocked(e)
	r.sendLocked(e, frame{Kind: kindClose, Cause: causeBroken})
	r.mu.Unlock()
	r.log.Warn("relay backlog full: failing the link", "peer", e.peer.id, "link", e.id)
	r.n.m.linksLost.WithLabelValues("broken").Inc()
	// send may run inside a delivery on this link (a core answering a
	// message at once), which holds the link's delivery lock.
	r.closers.Go(func() { r.end(e, ErrLinkBroken) })
}

// closeLink ends a link its owner closes; the peer is told.
func (r *relay) closeLink(e *endpoint) {
	r.mu.Lock()
	if e.peer.links[e.id] == e {
		r.dropLocked(e)
		r.sendLocked(e, frame{Kind: kindClose, Cause: causeClosed})
	}
	r.mu.Unlock()
	// Without the delivery lock: the owner may close the link from inside
	// a delivery.
	if e.done.CompareAndSwap(false, true) {
		r.n.m.links.Dec()
	}
}

// end ends a link for a reason of the relay's and tells its owner: the
// dialler's closed callback, or the core link's Close (on its own
// goroutine: it waits for the link's sessions to be torn down).
func (r *relay) end(e *endpoint, err error) {
	e.dmu.Lock()
	if !e.done.CompareAndSwap(false, true) {
		e.dmu.Unlock()
		return
	}
	ended := e.ended
	e.dmu.Unlock()
	r.n.m.links.Dec()
	switch {
	case ended == nil:
	case e.accepted:
		r.closers.Go(func() { ended(err) })
	default:
		ended(err)
	}
}

func (r *relay) endAll(es []*endpoint, err error) {
	for _, e := range es {
		r.end(e, err)
	}
}

// deliver hands one message to the link's owner unless the link ended.
func (e *endpoint) deliverMsg(m rtm.Message) {
	e.dmu.Lock()
	defer e.dmu.Unlock()
	if !e.done.Load() && e.deliver != nil {
		e.deliver(m)
	}
}

// outlet is what an accepted link's core link answers through.
type outlet struct {
	r *relay
	e *endpoint
}

func (o outlet) Send(m rtm.Message) { o.r.send(o.e, m) }

// receive handles one frame read from this node's stream.
func (r *relay) receive(f frame) {
	if f.ToInc != r.n.inc {
		return // meant for an earlier run of this node
	}
	switch f.Kind {
	case kindOpen:
		r.accept(f)
	case kindMsg, kindClose:
		r.onLinkFrame(f)
	case kindSync:
		r.onSync(f)
	}
}

// accept serves a link another node dialled: the core verifies its token
// and opens a core link, or the link is refused.
func (r *relay) accept(f frame) {
	// seqOut 1 stands for the open: the acceptor's messages start at 2,
	// as the dialler's do.
	e := &endpoint{id: f.Link, accepted: true, nextIn: 2, seqOut: 1}
	r.mu.Lock()
	if _, ended := r.tombs[f.Link]; ended {
		r.mu.Unlock()
		return
	}
	p := r.peerLocked(f.From, f.FromInc)
	if p.links[f.Link] != nil {
		r.mu.Unlock()
		return // a retried write's duplicate
	}
	e.peer = p
	p.links[e.id] = e
	stopped := r.stopped
	r.mu.Unlock()
	r.n.m.links.Inc()

	var opts LinkOptions
	if f.Opts != nil {
		opts = *f.Opts
	}
	var cl CoreLink
	err := ErrNodeStopping
	if !stopped && r.core != nil {
		cl, err = r.core.OpenLink(f.Token, outlet{r, e}, opts)
	} else if !stopped {
		err = errors.New("this node serves no relayed connections")
	}
	if err != nil {
		r.refuse(e, err)
		return
	}
	e.dmu.Lock()
	if e.done.Load() {
		e.dmu.Unlock()
		r.closers.Go(cl.Close)
		return
	}
	e.deliver = cl.Handle
	e.ended = func(error) { cl.Close() }
	e.dmu.Unlock()
}

// refuse answers an open the core refused, with the RTM error the client
// gets.
func (r *relay) refuse(e *endpoint, err error) {
	c := frame{Kind: kindClose, Cause: causeRefused, Code: rtm.CodeInternal, Text: "the serving node could not open the connection"}
	var re *rtm.Error
	switch {
	case errors.As(err, &re):
		c.Code, c.Text = re.Code, re.Message
	case errors.Is(err, ErrNodeStopping):
		c = frame{Kind: kindClose, Cause: causeStopping}
	}
	r.log.Info("refused a relayed connection", "peer", e.peer.id, "err", err)
	r.n.m.linksLost.WithLabelValues("refused").Inc()
	r.mu.Lock()
	if e.peer.links[e.id] == e {
		r.dropLocked(e)
		r.sendLocked(e, c)
	}
	r.mu.Unlock()
	r.end(e, err)
}

// onLinkFrame delivers a message or a close, in sequence.
func (r *relay) onLinkFrame(f frame) {
	r.mu.Lock()
	p := r.sender(f)
	e := p.links[f.Link]
	if e == nil {
		if _, ended := r.tombs[f.Link]; f.Kind == kindMsg && !ended {
			r.queueLocked(p, frame{Kind: kindClose, Link: f.Link, Cause: causeUnknown})
		}
		r.mu.Unlock()
		return
	}
	switch {
	case f.Seq < e.nextIn && f.Seq != 0:
		r.mu.Unlock()
		return // a retried write's duplicate
	case f.Seq > e.nextIn:
		r.breakLocked(e)
		r.mu.Unlock()
		r.log.Warn("relay frames lost: failing the link", "peer", p.id, "link", e.id, "want", e.nextIn, "got", f.Seq)
		r.end(e, ErrLinkBroken)
		return
	}
	e.nextIn++
	if f.Kind == kindClose {
		r.dropLocked(e)
		r.mu.Unlock()
		err := closeError(f)
		if errors.Is(err, ErrLinkBroken) {
			r.n.m.linksLost.WithLabelValues("broken").Inc()
		}
		r.end(e, err)
		return
	}
	r.mu.Unlock()

	var m rtm.Message
	var err error
	if e.accepted {
		// A client message: checked as a front end checks one.
		m, err = rtm.Decode(f.Msg)
	} else {
		err = json.Unmarshal(f.Msg, &m)
	}
	if err != nil {
		r.log.Warn("dropping a malformed relayed message", "peer", p.id, "link", e.id, "err", err)
		return
	}
	e.deliverMsg(m)
}

// breakLocked drops a link that lost frames and tells the peer.
func (r *relay) breakLocked(e *endpoint) {
	r.dropLocked(e)
	r.sendLocked(e, frame{Kind: kindClose, Cause: causeBroken})
	r.n.m.linksLost.WithLabelValues("broken").Inc()
}

// onSync compares what the peer sent on each link with what arrived.
func (r *relay) onSync(f frame) {
	r.mu.Lock()
	p := r.sender(f)
	var broken []*endpoint
	for id, last := range f.Links {
		if !isToken(id) {
			continue
		}
		e := p.links[id]
		if e == nil {
			if _, ended := r.tombs[id]; !ended {
				r.queueLocked(p, frame{Kind: kindClose, Link: id, Cause: causeUnknown})
			}
			continue
		}
		if e.nextIn-1 < last {
			r.breakLocked(e)
			broken = append(broken, e)
		}
	}
	r.mu.Unlock()
	if len(broken) > 0 {
		r.log.Warn("relay frames lost at the end of links: failing them", "peer", f.From, "links", len(broken))
	}
	r.endAll(broken, ErrLinkBroken)
}

// sendSyncs tells each peer the last frame sent on every link that sent
// anything within an expiry (a frame older than that was read long ago, or
// its reader, unable to read for an expiry, has given the link up), and
// forgets old tombstones.
func (r *relay) sendSyncs() {
	now := time.Now()
	recent := now.Add(-r.n.cfg.Expiry - r.n.cfg.HeartbeatInterval)
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.peers {
		var ls map[string]uint64
		for id, e := range p.links {
			if e.lastOut.After(recent) {
				if ls == nil {
					ls = map[string]uint64{}
				}
				ls[id] = e.seqOut
			}
		}
		if ls != nil {
			r.queueLocked(p, frame{Kind: kindSync, Links: ls})
		}
	}
	for id, t := range r.tombs {
		if now.Sub(t) > 2*r.n.cfg.Expiry {
			delete(r.tombs, id)
		}
	}
}

// checkPeers ends the links of peers that are dead: their heartbeat is
// gone or belongs to a new incarnation, or none could be confirmed for a
// whole expiry (Redis out of reach: the other side gives up on this node
// in the same time).
func (r *relay) checkPeers(ctx context.Context) {
	r.mu.Lock()
	args := []any{r.n.keys.nodePrefix()}
	var ps []*peer
	for k, p := range r.peers {
		if len(p.links) == 0 {
			delete(r.peers, k)
			continue
		}
		ps = append(ps, p)
		args = append(args, p.id, p.inc)
	}
	r.mu.Unlock()
	if len(ps) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, r.n.cfg.OpTimeout)
	alive, err := aliveScript.Run(ctx, r.n.rdb, nil, args...).Int64Slice()
	cancel()
	if err == nil && len(alive) != len(ps) {
		err = errors.New("alive script returned a short list")
	}
	now := time.Now()
	var gone []*endpoint
	var dead []string
	r.mu.Lock()
	for i, p := range ps {
		if r.peers[peerKey(p.id, p.inc)] != p {
			continue
		}
		switch {
		case err == nil && alive[i] == 1:
			p.confirmed = now
			continue
		case err != nil && now.Sub(p.confirmed) <= r.n.cfg.Expiry:
			continue
		}
		dead = append(dead, p.id)
		gone = append(gone, r.dropPeerLocked(p)...)
	}
	r.mu.Unlock()
	if len(gone) > 0 {
		r.log.Warn("relay peers gone: ending their links", "peers", dead, "links", len(gone))
		r.n.m.linksLost.WithLabelValues("node_dead").Add(float64(len(gone)))
	}
	r.endAll(gone, ErrNodeDead)
}

// stop ends every link (telling the peers the node is stopping) and waits
// for the core links to close.
func (r *relay) stop() {
	r.mu.Lock()
	r.stopped = true
	var all []*endpoint
	for _, p := range r.peers {
		for _, e := range p.links {
			r.dropLocked(e)
			r.sendLocked(e, frame{Kind: kindClose, Cause: causeStopping})
			all = append(all, e)
		}
	}
	r.mu.Unlock()
	r.endAll(all, ErrNodeStopping)
	r.closers.Wait()
}

func newLinkID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("cluster: link id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
