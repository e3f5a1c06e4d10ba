// Package webhook is the durable event outbox: session and recording
// events are written to disk, then POSTed signed (Standard Webhooks) to
// the customer's URL, retried with backoff, in order per key (session).
package webhook

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rtmrec/rtmrec/internal/backoff"
	"github.com/rtmrec/rtmrec/internal/netguard"
	"github.com/rtmrec/rtmrec/internal/workpool"
)

// Config configures an Outbox. Zero values take the documented defaults.
type Config struct {
	// Dir holds pending events; dead letters go to Dir/dead. Created if missing.
	Dir string
	// Guard checks receiver URLs at Enqueue and every connection. Required.
	Guard *netguard.Guard
	// Secrets sign deliveries: none, one, or two during a rotation (one
	// "v1,..." signature per secret in webhook-signature).
	Secrets [][]byte
	// RetryPeriod is how long an event is retried before it becomes a dead
	// letter; default 24h.
	RetryPeriod time.Duration
	// RequestTimeout bounds one delivery attempt; default 10s.
	RequestTimeout time.Duration
	// BaseBackoff and MaxBackoff shape retry delays (full jitter); defaults
	// 1s and 5m.
	BaseBackoff, MaxBackoff time.Duration
	// Workers bounds concurrent deliveries (each to a different key);
	// default 32. A slow receiver holds one worker for at most
	// RequestTimeout, so it delays other keys only when Workers receivers
	// are slow at once.
	Workers int
	// Logger receives the outbox's logs; nil discards them.
	Logger *slog.Logger
	// Metrics registers the outbox's metrics; nil skips them.
	Metrics prometheus.Registerer
	// Now is the clock for event timestamps and retry deadlines; nil means
	// time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.RetryPeriod, 24*time.Hour)
	def(&c.RequestTimeout, 10*time.Second)
	def(&c.BaseBackoff, time.Second)
	def(&c.MaxBackoff, 5*time.Minute)
	if c.MaxBackoff < c.BaseBackoff {
		c.MaxBackoff = c.BaseBackoff
	}
	if c.Workers <= 0 {
		c.Workers = 32
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

const (
	// enqueueCheckTimeout bounds the URL check's DNS lookup in Enqueue.
	enqueueCheckTimeout = 10 * time.Second
	// storeRetry is how soon a key whose state could not be written is
	// tried again.
	storeRetry = 5 * time.Second
	// maxDrain is how much of a response is read so the connection can be
	// reused.
	maxDrain = 64 << 10
)

// Outbox is a durable, ordered webhook queue. Create it with New, feed it
// with Enqueue, run it with Run, stop it with Drain and by cancelling
// Run's context.
type Outbox struct {
	cfg    Config
	log    *slog.Logger
	store  store
	m      *metrics
	client *http.Client

	mu    sync.Mutex
	seq   uint64                  // last sequence number given out
	keys  map[string]*keyQueue    // keys with pending events
	ready workpool.Due[*keyQueue] // keys not in flight, by their head event's due time
	wake  chan struct{}

	life *workpool.Lifecycle
}

// keyQueue holds one key's pending events in order. Only its head is ever
// delivered, and by one worker at a time (busy), which is what keeps the
// order.
type keyQueue struct {
	key    string
	events []*event
	busy   bool
}

// New loads the events an earlier process left in cfg.Dir and returns an
// outbox ready for Enqueue and Run.
func New(cfg Config) (*Outbox, error) {
	if cfg.Dir == "" {
		return nil, errors.New("webhook: Config.Dir is required")
	}
	if cfg.Guard == nil {
		return nil, errors.New("webhook: Config.Guard is required")
	}
	if len(cfg.Secrets) > 2 {
		return nil, errors.New("webhook: at most two secrets (current and previous)")
	}
	for _, s := range cfg.Secrets {
		if len(s) == 0 {
			return nil, errors.New("webhook: empty secret")
		}
	}
	cfg.setDefaults()
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("webhook: create dir: %w", err)
	}
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, err
	}
	o := &Outbox{
		cfg:    cfg,
		log:    cfg.Logger,
		store:  store{dir: cfg.Dir},
		m:      m,
		client: cfg.Guard.HTTPClient(cfg.RequestTimeout),
		keys:   map[string]*keyQueue{},
		wake:   make(chan struct{}, 1),
		life:   workpool.New(),
	}
	evs, bad, err := o.store.load()
	if err != nil {
		return nil, err
	}
	for _, b := range bad {
		o.log.Error("webhook: unreadable event file set aside", "error", b)
	}
	for _, ev := range evs {
		o.seq = max(o.seq, ev.Seq)
		o.add(ev)
	}
	return o, nil
}

// Enqueue stores an event for url and returns its id once it is on disk
// (fsync'd). key orders events: those of one key are delivered one at a
// time in Enqueue order. payload must be a JSON object; the body sent is
// that object with "id" and "timestamp" (RFC 3339, UTC, time of Enqueue)
// added as its first keys. An empty url means no webhook: Enqueue returns
// "", nil and stores nothing. A URL whose host cannot be resolved right
// now is accepted and checked again at each delivery.
func (o *Outbox) Enqueue(url, key string, payload json.RawMessage) (string, error) {
	if url == "" {
		return "", nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), enqueueCheckTimeout)
	_, err := o.cfg.Guard.CheckURL(ctx, url, "https", "http")
	cancel()
	if err != nil && !errors.Is(err, netguard.ErrResolve) {
		return "", fmt.Errorf("webhook: %w", err)
	}
	now := o.cfg.Now().UTC()
	id := "evt_" + rand.Text()
	body, err := buildBody(id, now, payload)
	if err != nil {
		return "", err
	}
	o.mu.Lock()
	o.seq++
	ev := &event{Seq: o.seq, ID: id, Key: key, URL: url, Body: string(body), Created: now}
	o.mu.Unlock()
	// Written outside the lock so enqueues of different keys do not queue
	// behind each other's fsync; a caller that enqueues one key's events
	// one after another still gets them in sequence order.
	if err := o.store.save(ev); err != nil {
		return "", err
	}
	o.mu.Lock()
	o.add(ev)
	o.mu.Unlock()
	o.log.Debug("webhook queued", "event_id", id, "key", key, "url", netguard.SecretURL(url))
	return id, nil
}

// add appends ev to its key's queue. Callers hold o.mu (or own o alone).
func (o *Outbox) add(ev *event) {
	kq := o.keys[ev.Key]
	if kq == nil {
		kq = &keyQueue{key: ev.Key}
		o.keys[ev.Key] = kq
	}
	kq.events = append(kq.events, ev)
	o.m.depth.Inc()
	if len(kq.events) == 1 && !kq.busy {
		o.ready1(kq)
	}
}

// ready1 puts an idle key with events into the heap at its head's due time.
func (o *Outbox) ready1(kq *keyQueue) {
	o.ready.Push(kq.events[0].NextAttempt, kq)
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// Run delivers events until ctx is cancelled or Drain is called, and
// returns after every worker has exited. A delivery cut off by ctx is
// retried by the next Run (at-least-once; the id stays the same).
func (o *Outbox) Run(ctx context.Context) error {
	return workpool.Run(ctx, o.life, o.cfg.Workers, o.dispatch, o.deliverHead, o.client.CloseIdleConnections)
}

// Drain stops starting deliveries and waits, up to ctx, for those in
// flight. Undelivered events stay on disk for the next process.
func (o *Outbox) Drain(ctx context.Context) { o.life.Drain(ctx) }

// dispatch hands keys whose head event is due to the workers.
func (o *Outbox) dispatch(ctx context.Context, work chan<- *keyQueue) {
	workpool.Dispatch(ctx, o.life, &o.mu, &o.ready, o.wake, o.cfg.Now,
		func(kq *keyQueue) { kq.busy = true },
		func(kq *keyQueue) { kq.busy = false; o.ready1(kq) }, work)
}

// deliverHead makes one attempt at kq's head event, then settles it:
// delivered and dead events leave the queue, others wait for their retry;
// either way the key becomes available again.
func (o *Outbox) deliverHead(ctx context.Context, kq *keyQueue) {
	o.mu.Lock()
	ev := kq.events[0]
	o.mu.Unlock()
	log := o.log.With("event_id", ev.ID, "key", ev.Key, "url", netguard.SecretURL(ev.URL))

	ev.Attempts++
	status, err := o.post(ctx, ev)
	now := o.cfg.Now()
	var pop bool
	var serr error
	switch {
	case err == nil && status >= 200 && status < 300:
		pop = true
		serr = o.store.remove(ev)
		o.m.deliveries.WithLabelValues("delivered").Inc()
		o.m.latency.Observe(now.Sub(ev.Created).Seconds())
		log.Debug("webhook delivered", "attempt", ev.Attempts, "status", status)
	case ctx.Err() != nil:
		// Shutdown, not the receiver's fault; the next Run tries again.
		ev.Attempts--
	default:
		if err != nil {
			ev.LastError = err.Error()
		} else {
			ev.LastError = fmt.Sprintf("receiver answered %d %s", status, http.StatusText(status))
		}
		deadline := ev.Created.Add(o.cfg.RetryPeriod)
		if !now.Before(deadline) {
			pop = true
			serr = o.store.bury(ev)
			o.m.deliveries.WithLabelValues("dead").Inc()
			o.m.dead.Inc()
			log.Error("webhook undeliverable, moved to dead letters", "attempts", ev.Attempts, "error", ev.LastError)
			break
		}
		// The last retry lands on the deadline itself rather than past it.
		next := now.Add(backoff.Delay(ev.Attempts, o.cfg.BaseBackoff, o.cfg.MaxBackoff, nil))
		ev.NextAttempt = minTime(next, deadline)
		serr = o.store.save(ev)
		o.m.deliveries.WithLabelValues("retry").Inc()
		log.Info("webhook delivery failed, will retry", "attempt", ev.Attempts,
			"error", ev.LastError, "retry_in", ev.NextAttempt.Sub(now).Round(time.Millisecond))
	}

	o.mu.Lock()
	defer o.mu.Unlock()
	kq.busy = false
	if serr != nil {
		// Keep the event at the head (order!) and try again later.
		log.Error("webhook: event state not saved", "error", serr)
		pop = false
		ev.NextAttempt = now.Add(storeRetry)
	}
	if pop {
		kq.events[0] = nil
		kq.events = kq.events[1:]
		o.m.depth.Dec()
	}
	if len(kq.events) == 0 {
		delete(o.keys, kq.key)
		return
	}
	o.ready1(kq)
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// post makes one delivery attempt and returns the status. Errors never
// contain the URL's query.
func (o *Outbox) post(ctx context.Context, ev *event) (int, error) {
	body := []byte(ev.Body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ev.URL, bytes.NewReader(body))
	if err != nil {
		return 0, errors.New("bad URL")
	}
	// webhook-timestamp is the attempt's time, so receivers can reject
	// replays by age; the body's timestamp stays the enqueue time.
	ts := o.cfg.Now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "rtmrec-webhook")
	req.Header.Set(HeaderID, ev.ID)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	if len(o.cfg.Secrets) > 0 {
		req.Header.Set(HeaderSignature, signatureHeader(o.cfg.Secrets, ev.ID, ts, body))
	}
	resp, err := o.client.Do(req)
	if err != nil {
		return 0, netguard.ScrubError(err)
	}
	_, _ = io.CopyN(io.Discard, resp.Body, maxDrain)
	resp.Body.Close()
	return resp.StatusCode, nil
}
