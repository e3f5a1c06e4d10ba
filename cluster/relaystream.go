package cluster

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rtmrec/rtmrec/internal/backoff"
)

// The relay's Redis I/O: one reader of this node's stream and one writer
// of the backlog to the others' streams.

// readLoop reads this node's stream until ctx ends, resuming after the last
// entry read whenever Redis comes back.
func (r *relay) readLoop(ctx context.Context) {
	stream := r.n.keys.relay(r.n.cfg.NodeID)
	block := min(500*time.Millisecond, r.n.cfg.HeartbeatInterval)
	var last string
	for attempt := 1; ; attempt++ {
		opCtx, cancel := context.WithTimeout(ctx, r.n.cfg.OpTimeout)
		tail, err := r.n.rdb.XRevRangeN(opCtx, stream, "+", "-", 1).Result()
		cancel()
		if err == nil {
			last = "0-0"
			if len(tail) > 0 {
				last = tail[0].ID
			}
			close(r.positioned)
			break
		}
		if !sleep(ctx, backoff.Ceiling(attempt, 50*time.Millisecond, r.n.cfg.HeartbeatInterval)) {
			return
		}
	}
	for attempt := 0; ctx.Err() == nil; {
		res, err := r.n.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{stream, last}, Count: 256, Block: block}).Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			attempt++
			if attempt == 1 && ctx.Err() == nil {
				r.log.Debug("relay read failed; retrying", "err", err)
			}
			sleep(ctx, backoff.Ceiling(attempt, 50*time.Millisecond, r.n.cfg.HeartbeatInterval))
			continue
		}
		attempt = 0
		var opens []string
		for _, s := range res {
			for _, x := range s.Messages {
				last = x.ID
				f, err := decodeFrame(x.Values)
				if err != nil {
					r.log.Warn("dropping a malformed relay frame", "entry", x.ID, "err", err)
					continue
				}
				r.n.m.frames.WithLabelValues("received").Inc()
				if f.Kind == kindOpen || f.Secret {
					opens = append(opens, x.ID)
				}
				r.receive(f)
			}
		}
		// Open frames and secret messages carry bearer tokens: keep them
		// in Redis no longer than needed.
		if len(opens) > 0 {
			opCtx, cancel := context.WithTimeout(ctx, r.n.cfg.OpTimeout)
			_ = r.n.rdb.XDel(opCtx, stream, opens...).Err()
			cancel()
		}
	}
}

// writeLoop writes the backlog to the peers' streams in order, in batches,
// retrying a failed batch until it is written or the peer is dropped.
func (r *relay) writeLoop(ctx context.Context) {
	for attempt := 0; ; {
		batch := r.nextBatch()
		if len(batch) == 0 {
			select {
			case <-ctx.Done():
				return
			case <-r.wake:
			}
			continue
		}
		if err := r.write(ctx, batch); err != nil {
			if ctx.Err() != nil {
				return
			}
			attempt++
			if attempt == 1 {
				r.log.Debug("relay write failed; retrying", "err", err)
			}
			sleep(ctx, backoff.Ceiling(attempt, 20*time.Millisecond, r.n.cfg.HeartbeatInterval/2))
			continue
		}
		attempt = 0
		r.written(batch[len(batch)-1].qid)
	}
}

func (r *relay) nextBatch() []queued {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]queued(nil), r.backlog[:min(len(r.backlog), 128)]...)
}

// write appends a batch to the streams atomically (MULTI/EXEC): a retry
// after an unanswered EXEC duplicates the whole batch, which the receivers
// drop by sequence number, and never reorders it.
func (r *relay) write(ctx context.Context, batch []queued) error {
	ctx, cancel := context.WithTimeout(ctx, r.n.cfg.OpTimeout)
	defer cancel()
	_, err := r.n.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, q := range batch {
			p.XAdd(ctx, &redis.XAddArgs{Stream: q.stream, MaxLen: r.n.cfg.RelayMaxLen, Approx: true, Values: q.values})
		}
		return nil
	})
	if err == nil {
		r.n.m.frames.WithLabelValues("sent").Add(float64(len(batch)))
	}
	return err
}

// written removes the frames up to qid from the backlog (those of peers
// dropped meanwhile are already gone).
func (r *relay) written(qid uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := 0
	for i < len(r.backlog) && r.backlog[i].qid <= qid {
		r.queued -= r.backlog[i].size
		i++
	}
	clear(r.backlog[:i])
	r.backlog = r.backlog[i:]
	r.n.m.backlog.Set(float64(r.queued))
}

// flush makes one attempt to write what is left in the backlog.
func (r *relay) flush(ctx context.Context) {
	for {
		batch := r.nextBatch()
		if len(batch) == 0 || r.write(ctx, batch) != nil {
			return
		}
		r.written(batch[len(batch)-1].qid)
	}
}

// sleep waits d or until ctx ends; false when ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
