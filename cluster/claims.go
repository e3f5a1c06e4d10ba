package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// claimRef is a claim this node holds.
type claimRef struct{ tenant, id string }

// Claim makes this node the owner of session id within tenant, before the
// session exists. It fails with an error carrying session_exists
// (errors.Is ErrTaken) when a live node holds the id, and with one carrying
// server_busy (errors.Is ErrUnavailable) when Redis cannot be reached or
// this node is not registered. A claim of a node that died or restarted is
// taken over. Claiming an id this node already holds succeeds: the core
// must refuse a duplicate of one of its own sessions itself, as it does
// today.
func (n *Node) Claim(ctx context.Context, tenant, id string) error {
	n.claimMu.RLock()
	defer n.claimMu.RUnlock()
	key := n.keys.claim(tenant, id)
	granted, other, err := n.claim(ctx, key)
	switch {
	case err != nil:
		n.m.claims.WithLabelValues("unavailable").Inc()
		return errUnavailable(err)
	case !granted:
		n.m.claims.WithLabelValues("taken").Inc()
		return errTaken(other)
	}
	n.mu.Lock()
	n.held[key] = claimRef{tenant, id}
	delete(n.releases, key)
	n.mu.Unlock()
	if other != "" {
		n.m.claims.WithLabelValues("taken_over").Inc()
		n.log.Info("took over the claim of a dead node", "session_id", id, "tenant", tenant, "previous_owner", other)
	} else {
		n.m.claims.WithLabelValues("granted").Inc()
	}
	return nil
}

// claim runs the claim script: granted, or the live owner that holds it;
// other is the dead owner taken over when granted.
func (n *Node) claim(ctx context.Context, key string) (granted bool, other string, err error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.OpTimeout)
	defer cancel()
	res, err := claimScript.Run(ctx, n.rdb, []string{key, n.keys.node(n.cfg.NodeID)}, n.owner, n.inc, n.keys.nodePrefix()).Slice()
	if err != nil {
		return false, "", err
	}
	if len(res) != 2 {
		return false, "", fmt.Errorf("claim script returned %d values", len(res))
	}
	code, _ := res[0].(int64)
	other, _ = res[1].(string)
	switch code {
	case 1:
		return true, other, nil
	case 0:
		return false, other, nil
	default:
		return false, "", errors.New("this node is not registered")
	}
}

// Release gives up a claim when its session has ended. It does not wait
// for Redis: the release is retried in the background until Redis has it
// (a session's teardown never waits on the network). Releasing an id this
// node does not hold does nothing, and a claim another node took over in
// the meantime is left alone.
func (n *Node) Release(tenant, id string) {
	key := n.keys.claim(tenant, id)
	n.mu.Lock()
	c, ok := n.held[key]
	if ok {
		delete(n.held, key)
		n.releases[key] = c
	}
	n.mu.Unlock()
	if ok {
		select {
		case n.releaseKick <- struct{}{}:
		default:
		}
	}
}

// Locate returns the live node that holds the claim of session id within
// tenant; ErrNotFound when none does, an error carrying server_busy when
// Redis cannot be reached.
func (n *Node) Locate(ctx context.Context, tenant, id string) (NodeInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.OpTimeout)
	defer cancel()
	raw, err := locateScript.Run(ctx, n.rdb, []string{n.keys.claim(tenant, id)}, n.keys.nodePrefix()).Text()
	if errors.Is(err, redis.Nil) {
		return NodeInfo{}, ErrNotFound
	}
	if err != nil {
		return NodeInfo{}, errUnavailable(err)
	}
	var info NodeInfo
	if err := json.Unmarshal([]byte(raw), &info); err != nil || ValidNodeID(info.ID) != nil {
		return NodeInfo{}, errUnavailable(errors.New("malformed node record"))
	}
	return info, nil
}

// releaseLoop retries releases until Redis has them.
func (n *Node) releaseLoop(ctx context.Context) {
	t := time.NewTicker(n.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.releaseKick:
		case <-t.C:
		}
		n.flushReleases(ctx)
	}
}

// flushReleases deletes the released claims that this node still owns in
// Redis. It excludes claims while it runs, so that it never deletes a claim
// of the same id made after the release.
func (n *Node) flushReleases(ctx context.Context) {
	n.mu.Lock()
	pending := len(n.releases)
	n.mu.Unlock()
	if pending == 0 {
		return
	}
	n.claimMu.Lock()
	defer n.claimMu.Unlock()
	n.mu.Lock()
	keys := make([]string, 0, len(n.releases))
	for k := range n.releases {
		keys = append(keys, k)
	}
	n.mu.Unlock()
	for _, k := range keys {
		opCtx, cancel := context.WithTimeout(ctx, n.cfg.OpTimeout)
		err := releaseScript.Run(opCtx, n.rdb, []string{k}, n.owner).Err()
		cancel()
		if err != nil {
			n.log.Debug("claim release postponed: Redis unreachable", "err", err)
			return
		}
		n.mu.Lock()
		delete(n.releases, k)
		n.mu.Unlock()
	}
}

// reclaim claims again, after this node (re-)registered, every session id
// it holds: Redis may have lost them (restarted without persistence) or the
// node's heartbeat may have expired while Redis was out of reach. An id a
// live node claimed in the meantime is logged and dropped: the session goes
// on here, and its id is no longer unique until it ends.
func (n *Node) reclaim(ctx context.Context) error {
	n.claimMu.RLock()
	defer n.claimMu.RUnlock()
	n.mu.Lock()
	held := make(map[string]claimRef, len(n.held))
	for k, c := range n.held {
		held[k] = c
	}
	n.mu.Unlock()
	lost := 0
	for k, c := range held {
		granted, other, err := n.claim(ctx, k)
		if err != nil {
			return fmt.Errorf("re-claiming sessions: %w", err)
		}
		if !granted {
			lost++
			n.mu.Lock()
			delete(n.held, k)
			n.mu.Unlock()
			n.log.Warn("while this node was out of the cluster another node claimed the id of one of its running sessions",
				"session_id", c.id, "tenant", c.tenant, "owner", other)
		}
	}
	if len(held) > 0 {
		n.log.Info("re-claimed running sessions", "sessions", len(held)-lost, "lost", lost)
	}
	return nil
}
