package cluster

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// NodeState is whether a node takes new sessions.
type NodeState string

// The states a node advertises.
const (
	// StateServing takes new sessions (below its soft capacity).
	StateServing NodeState = "serving"
	// StateDraining takes none; its running sessions go on until they end
	// or the drain timeout passes.
	StateDraining NodeState = "draining"
)

// NodeInfo is what a node advertises in its heartbeat.
type NodeInfo struct {
	ID string `json:"id"`
	// Incarnation is drawn at random when the node starts: a node that
	// restarted under the same id is a new incarnation, and the claims and
	// links of the old one are dead.
	Incarnation  string    `json:"inc"`
	State        NodeState `json:"state"`
	Load         int       `json:"load"`
	SoftCapacity int       `json:"soft_capacity,omitempty"`
	PublicAddrs  []string  `json:"public_addrs,omitempty"`
	ICEUDPPort   int       `json:"ice_udp_port,omitempty"`
	// RelayStream is the Redis stream other nodes write this node's relay
	// frames to.
	RelayStream string    `json:"relay_stream"`
	Started     time.Time `json:"started"`
	Heartbeat   time.Time `json:"heartbeat"`
}

// HasRoom reports whether the node takes a new session: serving and below
// its soft capacity.
func (i NodeInfo) HasRoom() bool {
	return i.State == StateServing && (i.SoftCapacity == 0 || i.Load < i.SoftCapacity)
}

// Node is this process's membership in the cluster: its heartbeat, its
// claims and its end of the relay. Create it with New, run it with Run.
type Node struct {
	cfg     Config
	keys    keys
	rdb     redis.UniversalClient
	load    func() int
	log     *slog.Logger
	m       *metrics
	inc     string
	owner   string // the value of this node's claims
	started time.Time
	relay   *relay

	running     atomic.Bool
	relayed     atomic.Int64  // sessions of this node's Conns that live on other nodes
	kick        chan struct{} // write the heartbeat now (state changed)
	releaseKick chan struct{}

	// claimMu lets claims run together but never while pending releases
	// are flushed, so a release cannot delete a claim made after it.
	claimMu sync.RWMutex

	mu         sync.Mutex
	draining   bool
	registered bool      // the last heartbeat write succeeded
	lastBeat   time.Time // when it started
	idInUse    bool      // logged once per episode
	others     []NodeInfo
	held       map[string]claimRef // claim key → claim, granted and not released
	releases   map[string]claimRef // released locally, not yet in Redis
}

// New checks the configuration and prepares a node; nothing is written to
// Redis before Run.
func New(cfg Config, deps Deps) (*Node, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	if deps.Redis == nil {
		return nil, errors.New("cluster: a Redis client is required")
	}
	m, err := newMetrics(deps.Metrics)
	if err != nil {
		return nil, err
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("cluster: incarnation: %w", err)
	}
	n := &Node{
		cfg: cfg, keys: keys{cfg.KeyPrefix}, rdb: deps.Redis, load: deps.Load, log: deps.Logger, m: m,
		inc: hex.EncodeToString(b[:]), started: time.Now(),
		kick: make(chan struct{}, 1), releaseKick: make(chan struct{}, 1),
		held: map[string]claimRef{}, releases: map[string]claimRef{},
	}
	if n.load == nil {
		n.load = func() int { return 0 }
	}
	if n.log == nil {
		n.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	n.log = n.log.With("component", "cluster", "node_id", cfg.NodeID)
	n.owner = cfg.NodeID + " " + n.inc
	n.relay = newRelay(n, deps.Core)
	return n, nil
}

// ID is the node's id.
func (n *Node) ID() string { return n.cfg.NodeID }

// Run registers the node and keeps it registered, serves its end of the
// relay, and retries claims' releases, until ctx is cancelled. It then
// closes the node's relay links, releases its claims, removes its heartbeat
// (so that the others see it gone at once) and returns. Redis being
// unreachable is not an error: Run keeps trying, and Ready says false.
func (n *Node) Run(ctx context.Context) error {
	if !n.running.CompareAndSwap(false, true) {
		return errors.New("cluster: node is already running")
	}
	var wg sync.WaitGroup
	wg.Go(func() { n.relay.readLoop(ctx) })
	wg.Go(func() { n.relay.writeLoop(ctx) })
	wg.Go(func() { n.releaseLoop(ctx) })
	// The reader knows where its stream ends before anyone can find this
	// node and write to it.
	select {
	case <-n.relay.positioned:
		wg.Go(func() { n.heartbeatLoop(ctx) })
	case <-ctx.Done():
	}
	wg.Wait()
	n.leave()
	return nil
}

// Ready reports whether the node is registered and its heartbeat fresh:
// while it is not, new sessions must be refused (server_busy) and /readyz
// answer 503. Running sessions are not affected.
func (n *Node) Ready() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.readyLocked()
}

func (n *Node) readyLocked() bool {
	return n.registered && time.Since(n.lastBeat) < n.cfg.Expiry-n.cfg.HeartbeatInterval/2
}

// SetDraining marks the node draining: it stays in the cluster (its
// sessions and links go on) but is placed no new session. The others see
// it at once.
func (n *Node) SetDraining() {
	n.mu.Lock()
	n.draining = true
	n.mu.Unlock()
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// Relayed is the number of sessions that clients connected to this node
// hold on other nodes, through its Conns: a draining node waits for them
// too, since they end when its connections close.
func (n *Node) Relayed() int { return int(n.relayed.Load()) }

// Self is this node's current advertisement.
func (n *Node) Self() NodeInfo {
	n.mu.Lock()
	draining := n.draining
	n.mu.Unlock()
	st := StateServing
	if draining {
		st = StateDraining
	}
	return NodeInfo{
		ID: n.cfg.NodeID, Incarnation: n.inc, State: st, Load: n.load(), SoftCapacity: n.cfg.SoftCapacity,
		PublicAddrs: n.cfg.PublicAddrs, ICEUDPPort: n.cfg.ICEUDPPort, RelayStream: n.keys.relay(n.cfg.NodeID),
		Started: n.started, Heartbeat: time.Now(),
	}
}

// Nodes lists the live nodes, this one included, read from Redis now.
func (n *Node) Nodes(ctx context.Context) ([]NodeInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.OpTimeout)
	defer cancel()
	raw, err := listScript.Run(ctx, n.rdb, []string{n.keys.nodes()}, n.keys.nodePrefix()).StringSlice()
	if err != nil {
		return nil, errUnavailable(err)
	}
	out := make([]NodeInfo, 0, len(raw))
	for _, r := range raw {
		var info NodeInfo
		if err := json.Unmarshal([]byte(r), &info); err != nil || ValidNodeID(info.ID) != nil {
			n.log.Warn("ignoring a malformed node record in Redis")
			continue
		}
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, b NodeInfo) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// Place chooses the node for a new session: this one while it is serving
// and below its soft capacity (no relay needed), otherwise the least loaded
// other serving node with room, from the last heartbeat's view of the
// cluster. local is true when it is this node. Without room anywhere it
// returns an error carrying server_busy.
func (n *Node) Place() (target NodeInfo, local bool, err error) {
	self := n.Self()
	if self.HasRoom() {
		return self, true, nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.readyLocked() {
		return NodeInfo{}, false, errUnavailable(errors.New("not registered"))
	}
	best := -1
	for i, o := range n.others {
		if !o.HasRoom() {
			continue
		}
		if best < 0 || fill(o) < fill(n.others[best]) {
			best = i
		}
	}
	if best < 0 {
		return NodeInfo{}, false, errNoRoom
	}
	// Count the session now, so a burst spreads before the next heartbeat
	// brings the real load.
	n.others[best].Load++
	return n.others[best], false, nil
}

// fill orders nodes for placement: by the fraction of their capacity in
// use, or by load for nodes without a soft capacity.
func fill(i NodeInfo) float64 {
	if i.SoftCapacity > 0 {
		return float64(i.Load) / float64(i.SoftCapacity)
	}
	return float64(i.Load)
}

// heartbeatLoop writes the heartbeat every interval (and at once when the
// state changes) and checks, four times as often, that the nodes this one
// has relay links with are alive.
func (n *Node) heartbeatLoop(ctx context.Context) {
	beat := time.NewTicker(n.cfg.HeartbeatInterval)
	defer beat.Stop()
	peers := time.NewTicker(n.cfg.HeartbeatInterval / 4)
	defer peers.Stop()
	n.heartbeat(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-beat.C:
			n.heartbeat(ctx)
		case <-n.kick:
			n.heartbeat(ctx)
		case <-peers.C:
			n.relay.checkPeers(ctx)
		}
	}
}

// heartbeat writes this node's record, re-claims its sessions when it has
// just (re-)registered, and refreshes its view of the others.
func (n *Node) heartbeat(ctx context.Context) {
	start := time.Now()
	info, err := json.Marshal(n.Self())
	if err != nil {
		n.log.Error("encoding the heartbeat", "err", err)
		return
	}
	opCtx, cancel := context.WithTimeout(ctx, n.cfg.OpTimeout)
	defer cancel()
	res, err := registerScript.Run(opCtx, n.rdb, []string{n.keys.node(n.cfg.NodeID), n.keys.nodes()},
		n.cfg.NodeID, n.inc, info, n.cfg.Expiry.Milliseconds()).Int()
	if err == nil && res == 0 {
		err = ErrNodeIDInUse
	}
	if err == nil {
		n.mu.Lock()
		was := n.registered
		n.mu.Unlock()
		// The heartbeat had expired or Redis lost it (and the claims with
		// it), or Redis was out of reach (a failover may have lost the
		// last claims): claim the running sessions again.
		if res == 2 || !was {
			err = n.reclaim(ctx)
		}
	}
	var others []NodeInfo
	if err == nil {
		var all []NodeInfo
		if all, err = n.Nodes(ctx); err == nil {
			others = slices.DeleteFunc(all, func(i NodeInfo) bool { return i.ID == n.cfg.NodeID })
		}
	}
	if ctx.Err() != nil {
		return // leaving: not an outage
	}
	n.setRegistered(err, start, others)
	if err == nil {
		n.relay.sendSyncs()
	}
}

// setRegistered records the outcome of a heartbeat, logging only changes.
func (n *Node) setRegistered(err error, start time.Time, others []NodeInfo) {
	n.mu.Lock()
	was := n.registered
	n.registered = err == nil
	if err == nil {
		n.lastBeat = start
		n.others = others
		n.idInUse = false
		n.m.nodes.Set(float64(len(others) + 1))
	}
	inUse := errors.Is(err, ErrNodeIDInUse)
	logInUse := inUse && !n.idInUse
	n.idInUse = n.idInUse || inUse
	n.mu.Unlock()

	switch {
	case err == nil && !was:
		n.m.ready.Set(1)
		n.log.Info("registered in the cluster", "incarnation", n.inc, "nodes", len(others)+1)
	case logInUse:
		n.m.ready.Set(0)
		n.log.Error("another live process is registered with this node id; waiting for its heartbeat to expire")
	case err != nil && was:
		n.m.ready.Set(0)
		n.log.Warn("cluster directory unreachable: refusing new sessions until it is back", "err", err)
	}
}

// leave closes the relay, releases this node's claims and removes its
// heartbeat, each bounded by the operation timeout.
func (n *Node) leave() {
	n.relay.stop()
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.OpTimeout)
	defer cancel()
	n.relay.flush(ctx)
	n.mu.Lock()
	for k, c := range n.held {
		n.releases[k] = c
	}
	clear(n.held)
	n.mu.Unlock()
	n.flushReleases(ctx)
	if err := leaveScript.Run(ctx, n.rdb, []string{n.keys.node(n.cfg.NodeID), n.keys.nodes()}, n.cfg.NodeID, n.inc).Err(); err != nil {
		n.log.Warn("could not remove the heartbeat; the others see this node gone when it expires", "err", err)
	}
	n.mu.Lock()
	n.registered = false
	n.mu.Unlock()
	n.m.ready.Set(0)
	n.m.nodes.Set(0)
}
