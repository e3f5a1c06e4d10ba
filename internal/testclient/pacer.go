package testclient

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Pacer sends the clips of many peers from a few goroutines on a shared
// tick, instead of a goroutine and a timer per track (Peer.Stream): a load
// generator's own scheduling then costs little next to the server it
// measures. A sample goes out at most one tick late.
type Pacer struct {
	tick   time.Duration
	shards []*pacerShard
	// lag is the most a sample went out past its time since ResetLag. A
	// real-time source is never more than a tick late; a longer lag is the
	// pacer falling behind for want of CPU, and its catch-up then sends
	// the backlog in one burst, which no browser does.
	lag   atomic.Int64
	mu    sync.Mutex
	next  int
	clips map[Source]*clip // parsed once for all the peers
	wg    sync.WaitGroup
}

type pacerShard struct {
	mu      sync.Mutex
	cursors map[*cursor]struct{}
	lag     *atomic.Int64 // the Pacer's
}

// NewPacer starts shards goroutines that send what is due every tick, until
// ctx ends; Wait waits for them.
func NewPacer(ctx context.Context, shards int, tick time.Duration) *Pacer {
	p := &Pacer{tick: tick, clips: map[Source]*clip{}}
	for range max(1, shards) {
		sh := &pacerShard{cursors: map[*cursor]struct{}{}, lag: &p.lag}
		p.shards = append(p.shards, sh)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			sh.run(ctx, tick)
		}()
	}
	return p
}

// Wait returns once every shard has stopped (after ctx ended).
func (p *Pacer) Wait() { p.wg.Wait() }

// MaxLag is the most a sample went out past its time since the last
// ResetLag (or the start).
func (p *Pacer) MaxLag() time.Duration { return time.Duration(p.lag.Load()) }

// ResetLag starts measuring MaxLag afresh.
func (p *Pacer) ResetLag() { p.lag.Store(0) }

func (sh *pacerShard) run(ctx context.Context, tick time.Duration) {
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			sh.mu.Lock()
			for c := range sh.cursors {
				raise(sh.lag, int64(time.Since(c.due())))
				if _, err := c.send(now); err != nil {
					delete(sh.cursors, c) // the peer closed
				}
			}
			sh.mu.Unlock()
		}
	}
}

// raise sets v to x if x is more, whatever other shards do meanwhile.
func raise(v *atomic.Int64, x int64) {
	for {
		old := v.Load()
		if x <= old || v.CompareAndSwap(old, x) {
			return
		}
	}
}

// clip returns src's frames, parsed on first use.
func (p *Pacer) clip(src Source) (*clip, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c := p.clips[src]; c != nil {
		return c, nil
	}
	c, err := loadClip(src)
	if err != nil {
		return nil, err
	}
	p.clips[src] = c
	return c, nil
}

func (p *Pacer) shard() *pacerShard {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.next++
	return p.shards[p.next%len(p.shards)]
}

// StreamOn sends every track's clip, looping, on the pacer's tick, until
// Close. It replaces Stream for peers by the hundred.
func (p *Peer) StreamOn(pc *Pacer) error {
	now := time.Now()
	for _, t := range p.tracks {
		clip, err := pc.clip(t.src)
		if err != nil {
			return err
		}
		c, err := t.cursor(now, clip)
		if err != nil {
			return err
		}
		sh := pc.shard()
		sh.mu.Lock()
		sh.cursors[c] = struct{}{}
		sh.mu.Unlock()
		p.paced = append(p.paced, pacedCursor{sh, c})
	}
	return nil
}

type pacedCursor struct {
	sh *pacerShard
	c  *cursor
}

// unpace takes the peer's tracks off their pacer; once it returns, no
// sample of theirs is being written.
func (p *Peer) unpace() {
	for _, pc := range p.paced {
		pc.sh.mu.Lock()
		delete(pc.sh.cursors, pc.c)
		pc.sh.mu.Unlock()
	}
	p.paced = nil
}
