// Package webhook is the durable event outbox: session and recording
// events are committed to the ledger in one global order, then POSTed
// signed (Standard Webhooks) to the customer's URL, retried with backoff,
// in order per key (session), each under a stable id.
package webhook

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rtmrec/rtmrec/internal/backoff"
	"github.com/rtmrec/rtmrec/internal/ledger"
	"github.com/rtmrec/rtmrec/internal/netguard"
	"github.com/rtmrec/rtmrec/internal/workpool"
)

// Ledger buckets of the outbox.
var (
	bucketEvents    = []byte("webhook_events")    // seq → event, pending delivery
	bucketDead      = []byte("webhook_dead")      // seq → deadLetter
	bucketFallbacks = []byte("webhook_fallbacks") // key → fallback
)

// Config configures an Outbox. Zero values take the documented defaults.
type Config struct {
	// Ledger keeps the pending events. Required.
	Ledger *ledger.Ledger
	// Guard checks receiver URLs at every connection. Required.
	Guard *netguard.Guard
	// Secrets sign deliveries: none, one, or two during a rotation (one
	// "v1,..." signature per secret in webhook-signature). See ParseSecret.
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
	// maxDrain is how much of a response is read so the connection can be
	// reused.
	maxDrain = 64 << 10
	// maxRequeueDelay caps the wait before an event whose commit failed
	// (disk full, I/O error) is tried again.
	maxRequeueDelay = 30 * time.Second
)

// Outbox is a durable, ordered webhook queue. Create it with New, feed it
// with Publish (or Stage inside a ledger op), run it with Run, finish it
// with Drain and by cancelling Run's context.
type Outbox struct {
	cfg    Config
	log    *slog.Logger
	m      *metrics
	client *http.Client

	mu    sync.Mutex
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

// New loads the events an earlier process left in the ledger, turns the
// fallbacks of keys that process left open into events (a crashed
// session's TERMINATED), and returns an outbox ready for Publish and Run.
func New(cfg Config) (*Outbox, error) {
	if cfg.Ledger == nil {
		return nil, errors.New("webhook: Config.Ledger is required")
	}
	if cfg.Guard == nil {
		return nil, errors.New("webhook: Config.Guard is required")
	}
	if len(cfg.Secrets) > 2 {
		return nil, errors.New("webhook: at most two secrets (current and next)")
	}
	for _, s := range cfg.Secrets {
		if len(s) == 0 {
			return nil, errors.New("webhook: empty secret")
		}
	}
	cfg.setDefaults()
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, err
	}
	o := &Outbox{
		cfg:    cfg,
		log:    cfg.Logger,
		m:      m,
		client: cfg.Guard.HTTPClient(cfg.RequestTimeout),
		keys:   map[string]*keyQueue{},
		wake:   make(chan struct{}, 1),
		life:   workpool.New(),
	}
	if err := o.load(); err != nil {
		return nil, err
	}
	return o, nil
}

// load reads the pending events in publish order, then closes the keys a
// crash left open.
func (o *Outbox) load() error {
	var bad int
	err := o.cfg.Ledger.View(func(tx *ledger.Tx) error {
		b := tx.Bucket(bucketEvents)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			ev := new(event)
			if err := json.Unmarshal(v, ev); err != nil || ev.ID == "" {
				bad++
				o.log.Error("webhook: unreadable event kept in the ledger", "seq", fmt.Sprintf("%x", k))
				return nil
			}
			o.add(ev)
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("webhook: load events: %w", err)
	}
	var afters []func()
	err = o.cfg.Ledger.Update(func(tx *ledger.Tx) error {
		afters = afters[:0]
		b := tx.Bucket(bucketFallbacks)
		if b == nil {
			return nil
		}
		var open []Event
		err := b.ForEach(func(k, v []byte) error {
			var fb fallback
			if err := json.Unmarshal(v, &fb); err != nil {
				o.log.Error("webhook: unreadable fallback dropped", "key", string(k), "error", err)
				return nil
			}
			open = append(open, Event{ID: fb.ID, Key: string(k), URL: fb.URL, Payload: json.RawMessage(fb.Payload)})
			return nil
		})
		if err != nil {
			return err
		}
		for _, ev := range open {
			after, err := o.Stage(tx, ev) // closes the key: its id is the fallback's
			if err != nil {
				return err
			}
			afters = append(afters, after)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("webhook: close keys left open: %w", err)
	}
	for _, f := range afters {
		f()
	}
	if len(afters) > 0 {
		o.log.Info("webhook: sent the closing events of keys an earlier run left open", "count", len(afters))
	}
	return nil
}

// Publish queues ev behind everything published before it and returns at
// once: it never waits for disk, so a session loop may call it. Once ev is
// durable, delivered (if not nil) is called on the ledger's committer, in
// publish order; an event with no URL is not written, but delivered still
// comes in its turn. delivered must not block. An event that cannot be
// queued (a payload that is not a JSON object, a malformed URL) becomes a
// dead letter; one whose commit fails is tried again until it is written.
func (o *Outbox) Publish(ev Event, delivered func()) {
	if ev.URL == "" && ev.Fallback == nil {
		o.cfg.Ledger.Submit(ledger.Op{Done: func(error) {
			if delivered != nil {
				delivered()
			}
		}})
		return
	}
	o.submit(ev, delivered, 0)
}

func (o *Outbox) submit(ev Event, delivered func(), tries int) {
	var after func()
	o.cfg.Ledger.Submit(ledger.Op{
		Apply: func(tx *ledger.Tx) error {
			var err error
			after, err = o.Stage(tx, ev)
			return err
		},
		Done: func(err error) {
			switch {
			case err == nil:
				after()
			case errors.Is(err, ledger.ErrClosed):
				o.log.Error("webhook: event not written, the server is stopping", "event_id", ev.ID, "key", ev.Key)
			default:
				// Order within the key is kept only if the disk recovers before
				// the next event of the key; losing the event would be worse.
				o.m.enqueueFailures.Inc()
				delay := min(time.Duration(tries+1)*time.Second, maxRequeueDelay)
				o.log.Error("webhook: event not written, trying again", "event_id", ev.ID, "key", ev.Key, "retry_in", delay.String(), "error", err)
				time.AfterFunc(delay, func() { o.submit(ev, nil, tries+1) })
			}
			if delivered != nil {
				delivered()
			}
		},
	})
}

// Stage writes ev into tx, for callers that commit an event together with
// a change of their own (a recording's outcome and its STOPPED). after must
// be called once the transaction is committed; it makes the event
// deliverable. An event that cannot be queued is staged as a dead letter.
func (o *Outbox) Stage(tx *ledger.Tx, ev Event) (after func(), err error) {
	now := o.cfg.Now().UTC()
	fbs, err := ledger.Bucket(tx, bucketFallbacks)
	if err != nil {
		return nil, err
	}
	if v := fbs.Get([]byte(ev.Key)); v != nil {
		var fb fallback
		if json.Unmarshal(v, &fb) != nil || fb.ID == ev.ID {
			if err := fbs.Delete([]byte(ev.Key)); err != nil {
				return nil, fmt.Errorf("webhook: close key: %w", err)
			}
		}
	}
	if f := ev.Fallback; f != nil && f.URL != "" {
		v, err := json.Marshal(fallback{URL: f.URL, ID: f.ID, Payload: string(f.Payload)})
		if err != nil {
			return nil, fmt.Errorf("webhook: encode fallback: %w", err)
		}
		if err := fbs.Put([]byte(ev.Key), v); err != nil {
			return nil, fmt.Errorf("webhook: open key: %w", err)
		}
	}
	if ev.URL == "" {
		return func() {}, nil
	}
	body, berr := buildBody(ev.ID, now, ev.Payload)
	if berr == nil && (ev.ID == "" || ev.Key == "") {
		berr = errors.New("the event has no id or no order key")
	}
	if berr == nil {
		berr = checkReceiverURL(ev.URL)
	}
	if berr != nil {
		return o.stageDead(tx, ev, now, berr)
	}
	return o.put(tx, &event{ID: ev.ID, Key: ev.Key, URL: ev.URL, Body: string(body), Created: now})
}

// checkReceiverURL says why raw cannot receive events, if it cannot.
func checkReceiverURL(raw string) error {
	if u, err := url.Parse(raw); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("the receiver URL is not an absolute http(s) URL")
	}
	return nil
}

// appendTo gives e the next sequence number of bucket and writes what
// record makes of e there.
func appendTo(tx *ledger.Tx, bucket []byte, e *event, record func(*event) any) error {
	b, err := ledger.Bucket(tx, bucket)
	if err != nil {
		return err
	}
	seq, err := b.NextSequence()
	if err != nil {
		return fmt.Errorf("webhook: sequence: %w", err)
	}
	e.Seq = seq
	v, err := json.Marshal(record(e))
	if err != nil {
		return fmt.Errorf("webhook: encode event %s: %w", e.ID, err)
	}
	if err := b.Put(seqKey(seq), v); err != nil {
		return fmt.Errorf("webhook: save event %s: %w", e.ID, err)
	}
	return nil
}

// put queues e in tx and returns the after of Stage.
func (o *Outbox) put(tx *ledger.Tx, e *event) (after func(), err error) {
	if err := appendTo(tx, bucketEvents, e, func(e *event) any { return e }); err != nil {
		return nil, err
	}
	return func() {
		o.mu.Lock()
		o.add(e)
		o.mu.Unlock()
		o.log.Debug("webhook queued", "event_id", e.ID, "key", e.Key, "url", netguard.SecretURL(e.URL))
	}, nil
}

// stageDead keeps an event that cannot be queued as a dead letter.
func (o *Outbox) stageDead(tx *ledger.Tx, ev Event, now time.Time, why error) (func(), error) {
	b, err := ledger.Bucket(tx, bucketDead)
	if err != nil {
		return nil, err
	}
	seq, err := b.NextSequence()
	if err != nil {
		return nil, fmt.Errorf("webhook: sequence: %w", err)
	}
	d := deadLetter{event: event{Seq: seq, ID: ev.ID, Key: ev.Key, URL: ev.URL, Created: now, LastError: why.Error()}, Payload: string(ev.Payload)}
	v, err := json.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("webhook: encode dead letter: %w", err)
	}
	if err := b.Put(seqKey(seq), v); err != nil {
		return nil, fmt.Errorf("webhook: save dead letter: %w", err)
	}
	return func() {
		o.m.dead.Inc()
		o.log.Error("webhook: event cannot be queued, kept as a dead letter", "event_id", ev.ID, "key", ev.Key, "error", why)
	}, nil
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

// Pending is the number of events waiting for delivery.
func (o *Outbox) Pending() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, kq := range o.keys {
		n += len(kq.events)
	}
	return n
}

// Run delivers events until ctx is cancelled or a drain is over, and
// returns after every worker has exited. A delivery cut off by ctx is
// retried by the next Run (at-least-once; the id stays the same).
func (o *Outbox) Run(ctx context.Context) error {
	return workpool.Run(ctx, o.life, o.cfg.Workers, o.dispatch, o.deliverHead, o.client.CloseIdleConnections)
}

// Drain delivers what can be delivered by ctx's deadline (retries due
// before it included), then stops Run. Undelivered events stay in the
// ledger for the next process.
func (o *Outbox) Drain(ctx context.Context) { o.life.Drain(ctx) }

// dispatch hands keys whose head event is due to the workers.
func (o *Outbox) dispatch(ctx context.Context, work chan<- *keyQueue) {
	workpool.Dispatch(ctx, o.life, &o.mu, &o.ready, o.wake, o.cfg.Now,
		func(kq *keyQueue) { kq.busy = true },
		func(kq *keyQueue) { kq.busy = false; o.ready1(kq) }, work)
}

// deliverHead makes one attempt at kq's head event, then settles it:
// delivered and dead events leave the queue, others wait for their retry;
// either way the key becomes available again. The ledger learns of the
// outcome in order, without the worker waiting for the disk: a crash before
// that commit only repeats a delivery, under the same id.
func (o *Outbox) deliverHead(ctx context.Context, kq *keyQueue) {
	o.mu.Lock()
	ev := kq.events[0]
	o.mu.Unlock()
	log := o.log.With("event_id", ev.ID, "key", ev.Key, "url", netguard.SecretURL(ev.URL))

	ev.Attempts++
	status, err := o.post(ctx, ev)
	now := o.cfg.Now()
	pop := false
	switch {
	case err == nil && status >= 200 && status < 300:
		pop = true
		o.persist(ev, nil, false)
		o.m.deliveries.WithLabelValues("delivered").Inc()
		o.m.latency.Observe(now.Sub(ev.Created).Seconds())
		log.Debug("webhook delivered", "attempt", ev.Attempts, "status", status)
	case ctx.Err() != nil:
		// Shutdown, not the receiver's fault; the next Run tries again.
		ev.Attempts--
	default:
		// last_error is read by operators and may reach the customer:
		// Explain's words, not Go's dial chain; the log keeps the detail.
		if err != nil {
			ev.LastError = netguard.Explain(err)
			log = log.With("detail", err)
		} else {
			ev.LastError = fmt.Sprintf("receiver answered %d %s", status, http.StatusText(status))
		}
		deadline := ev.Created.Add(o.cfg.RetryPeriod)
		if !now.Before(deadline) {
			pop = true
			v, _ := json.Marshal(deadLetter{event: *ev})
			o.persist(ev, v, true)
			o.m.deliveries.WithLabelValues("dead").Inc()
			o.m.dead.Inc()
			log.Error("webhook undeliverable, kept as a dead letter", "attempts", ev.Attempts, "error", ev.LastError)
			break
		}
		// The last retry lands on the deadline itself rather than past it.
		next := now.Add(backoff.Delay(ev.Attempts, o.cfg.BaseBackoff, o.cfg.MaxBackoff, nil))
		ev.NextAttempt = minTime(next, deadline)
		v, _ := json.Marshal(ev)
		o.persist(ev, v, false)
		o.m.deliveries.WithLabelValues("retry").Inc()
		log.Info("webhook delivery failed, will retry", "attempt", ev.Attempts,
			"error", ev.LastError, "retry_in", ev.NextAttempt.Sub(now).Round(time.Millisecond).String())
	}

	o.mu.Lock()
	defer o.mu.Unlock()
	kq.busy = false
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

// persist records an attempt's outcome: v nil removes the event
// (delivered), dead moves v to the dead letters, otherwise v replaces it.
func (o *Outbox) persist(ev *event, v []byte, dead bool) {
	k := seqKey(ev.Seq)
	o.cfg.Ledger.Submit(ledger.Op{
		Apply: func(tx *ledger.Tx) error {
			b, err := ledger.Bucket(tx, bucketEvents)
			if err != nil {
				return err
			}
			switch {
			case v == nil:
				return b.Delete(k)
			case dead:
				// Dead letters have their own numbering: an event's sequence
				// number may already name one that could not be queued.
				d, err := ledger.Bucket(tx, bucketDead)
				if err != nil {
					return err
				}
				seq, err := d.NextSequence()
				if err != nil {
					return err
				}
				if err := d.Put(seqKey(seq), v); err != nil {
					return err
				}
				return b.Delete(k)
			}
			return b.Put(k, v)
		},
		Done: func(err error) {
			if err != nil && !errors.Is(err, ledger.ErrClosed) {
				o.log.Error("webhook: delivery state not saved; the event may be delivered again", "event_id", ev.ID, "error", err)
			}
		},
	})
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
	// replays by age; the body's timestamp stays the publish time.
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

// DeadLetter is an event the outbox gave up, as an operator sees it.
type DeadLetter struct {
	// Seq numbers the dead letter, for Replay.
	Seq       uint64    `json:"seq"`
	ID        string    `json:"id"`
	Key       string    `json:"key"`
	URL       string    `json:"url"` // redacted: scheme, host and path
	Created   time.Time `json:"created"`
	Attempts  int       `json:"attempts"`
	LastError string    `json:"last_error"`
	// Queueable is false for an event that could never be queued (its
	// payload or URL was malformed): replaying it would fail again.
	Queueable bool `json:"queueable"`
}

// DeadLetters lists the dead letters, oldest first.
func (o *Outbox) DeadLetters() ([]DeadLetter, error) {
	var out []DeadLetter
	err := o.cfg.Ledger.View(func(tx *ledger.Tx) error {
		b := tx.Bucket(bucketDead)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var d deadLetter
			if err := json.Unmarshal(v, &d); err != nil || len(k) != 8 {
				return nil // unreadable: not listable, kept
			}
			out = append(out, DeadLetter{
				Seq: binary.BigEndian.Uint64(k), ID: d.ID, Key: d.Key, URL: netguard.Redact(d.URL), Created: d.Created,
				Attempts: d.Attempts, LastError: d.LastError, Queueable: d.Body != "",
			})
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("webhook: read dead letters: %w", err)
	}
	return out, nil
}

// ErrNoDeadLetter is Replay's error for a dead letter that does not exist
// or cannot be queued.
var ErrNoDeadLetter = errors.New("no such dead letter that can be delivered")

// Replay moves a dead letter back into the queue, under its own id, with a
// fresh retry period: for after the receiver was fixed. It goes behind
// what its key has queued now.
func (o *Outbox) Replay(seq uint64) error {
	var after func()
	err := o.cfg.Ledger.Update(func(tx *ledger.Tx) error {
		d, err := ledger.Bucket(tx, bucketDead)
		if err != nil {
			return err
		}
		v := d.Get(seqKey(seq))
		var dl deadLetter
		if v == nil || json.Unmarshal(v, &dl) != nil || dl.Body == "" {
			return ErrNoDeadLetter
		}
		b, err := ledger.Bucket(tx, bucketEvents)
		if err != nil {
			return err
		}
		next, err := b.NextSequence()
		if err != nil {
			return err
		}
		ev := dl.event
		ev.Seq, ev.Created, ev.Attempts, ev.NextAttempt, ev.LastError = next, o.cfg.Now().UTC(), 0, time.Time{}, ""
		nv, err := json.Marshal(&ev)
		if err != nil {
			return err
		}
		if err := b.Put(seqKey(next), nv); err != nil {
			return err
		}
		after = func() {
			o.mu.Lock()
			o.add(&ev)
			o.mu.Unlock()
		}
		return d.Delete(seqKey(seq))
	})
	if err != nil {
		return err
	}
	after()
	o.log.Info("webhook dead letter queued again", "seq", seq)
	return nil
}
