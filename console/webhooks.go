package console

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/rtmrec/rtmrec/webhook"
)

// DefaultWebhookCapacity is how many webhook events the sink keeps.
const DefaultWebhookCapacity = 500

// maxWebhookBody bounds one stored webhook body; rtmrec's are < 1 KiB.
const maxWebhookBody = 64 << 10

// signatureTolerance is how far a webhook's timestamp may be from the
// sink's clock, as a receiver following the convention allows.
const signatureTolerance = 5 * time.Minute

// What the sink found of a webhook's signature (WebhookEvent.Signed).
const (
	SignatureVerified  = "verified"  // one signature matches a key of the sink
	SignatureInvalid   = "invalid"   // signed, but no signature matches (SignatureError says why)
	SignatureUnsigned  = "unsigned"  // no signature header: the server has no secret
	SignatureUnchecked = "unchecked" // signed, but the sink has no key to check it with
)

// subscriberBuffer is how many events a slow live viewer may lag behind
// before it is dropped (its EventSource reconnects and catches up by id).
const subscriberBuffer = 64

// WebhookEvent is one webhook the sink received.
type WebhookEvent struct {
	// Seq numbers events in arrival order from 1; the live stream uses it as
	// the SSE id so a reconnecting page resumes where it left off.
	Seq        uint64    `json:"seq"`
	ReceivedAt time.Time `json:"received_at"`
	// WebhookID and Signature are the Standard Webhooks headers as sent.
	WebhookID string `json:"webhook_id,omitempty"`
	Signature string `json:"webhook_signature,omitempty"`
	// Signed is what checking the signature found: SignatureVerified,
	// SignatureInvalid (with SignatureError), SignatureUnsigned or
	// SignatureUnchecked.
	Signed         string `json:"signed"`
	SignatureError string `json:"signature_error,omitempty"`
	// Body is the JSON body as received (a JSON string when it was not JSON).
	Body json.RawMessage `json:"body"`
}

// WebhookSink receives rtmrec's webhooks, checks their signatures as a
// customer's receiver would, and keeps the last ones in memory (a bounded
// ring), for the pages to list and follow live with Server-Sent Events. It
// answers every well-formed POST with 200, even one whose signature does
// not verify: the console is where one looks at what was sent.
type WebhookSink struct {
	log  *slog.Logger
	keys [][]byte
	// stopped, when set, ends live streams: an open stream would otherwise
	// hold up the HTTP server's graceful shutdown until its timeout.
	stopped func() bool

	mu   sync.Mutex
	ring []WebhookEvent // oldest first, at most cap(ring)
	seq  uint64
	subs map[chan WebhookEvent]struct{}
}

// NewWebhookSink keeps the last capacity events (<= 0: the default) and
// checks their signatures with keys (the server's webhook secrets as HMAC
// keys; none: signatures are not checked). stopped, when not nil, is
// polled by live streams, which end once it returns true (the server is
// shutting down).
func NewWebhookSink(capacity int, keys [][]byte, stopped func() bool, log *slog.Logger) *WebhookSink {
	if capacity <= 0 {
		capacity = DefaultWebhookCapacity
	}
	return &WebhookSink{log: log, keys: keys, stopped: stopped, ring: make([]WebhookEvent, 0, capacity), subs: map[chan WebhookEvent]struct{}{}}
}

// check verifies a webhook's signature with the sink's keys.
func (s *WebhookSink) check(h http.Header, body []byte) (signed, why string) {
	switch {
	case h.Get(webhook.HeaderSignature) == "":
		return SignatureUnsigned, ""
	case len(s.keys) == 0:
		return SignatureUnchecked, ""
	}
	var err error
	for _, k := range s.keys {
		if err = webhook.Verify(k, h, body, time.Now(), signatureTolerance); err == nil {
			return SignatureVerified, ""
		}
	}
	return SignatureInvalid, err.Error()
}

// Post handles POST: store the event and hand it to live viewers.
func (s *WebhookSink) Post(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxWebhookBody))
	if err != nil {
		http.Error(w, fmt.Sprintf("webhook body unreadable or over %d bytes", maxWebhookBody), http.StatusRequestEntityTooLarge)
		return
	}
	raw := json.RawMessage(bytes.TrimSpace(body))
	if !json.Valid(raw) {
		// Keep it anyway, as a string: the console is where one looks for
		// what a misbehaving sender sent.
		raw, _ = json.Marshal(string(body))
	}
	signed, why := s.check(r.Header, body)
	ev := s.add(WebhookEvent{
		ReceivedAt: time.Now().UTC(), WebhookID: r.Header.Get(webhook.HeaderID),
		Signature: r.Header.Get(webhook.HeaderSignature), Signed: signed, SignatureError: why, Body: raw,
	})
	s.log.Debug("dev webhook received", "seq", ev.Seq, "webhook_id", ev.WebhookID, "signed", signed)
	w.WriteHeader(http.StatusOK)
}

func (s *WebhookSink) add(ev WebhookEvent) WebhookEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	ev.Seq = s.seq
	if len(s.ring) == cap(s.ring) {
		copy(s.ring, s.ring[1:])
		s.ring = s.ring[:len(s.ring)-1]
	}
	s.ring = append(s.ring, ev)
	for ch := range s.subs {
		select {
		case ch <- ev:
		default:
			// Too slow: drop the viewer rather than block the sender.
			delete(s.subs, ch)
			close(ch)
		}
	}
	return ev
}

// Events returns the stored events with Seq > after, oldest first.
func (s *WebhookSink) Events(after uint64) []WebhookEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []WebhookEvent{}
	for _, ev := range s.ring {
		if ev.Seq > after {
			out = append(out, ev)
		}
	}
	return out
}

// List handles GET: the stored events as a JSON array, oldest first;
// ?after=SEQ returns only newer ones (for polling).
func (s *WebhookSink) List(w http.ResponseWriter, r *http.Request) {
	after, _ := strconv.ParseUint(r.URL.Query().Get("after"), 10, 64)
	writeJSON(w, s.Events(after))
}

// Stream handles GET of the live stream (text/event-stream): first the
// stored events after Last-Event-ID, then each new one as it arrives.
func (s *WebhookSink) Stream(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	after, _ := strconv.ParseUint(r.Header.Get("Last-Event-ID"), 10, 64)

	ch := make(chan WebhookEvent, subscriberBuffer)
	s.mu.Lock()
	backlog := []WebhookEvent{}
	for _, ev := range s.ring {
		if ev.Seq > after {
			backlog = append(backlog, ev)
		}
	}
	s.subs[ch] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if _, ok := s.subs[ch]; ok {
			delete(s.subs, ch)
			close(ch)
		}
		s.mu.Unlock()
	}()

	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	send := func(ev WebhookEvent) error {
		b, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "id: %d\nevent: webhook\ndata: %s\n\n", ev.Seq, b); err != nil {
			return err
		}
		return rc.Flush()
	}
	for _, ev := range backlog {
		if err := send(ev); err != nil {
			return
		}
	}
	if err := rc.Flush(); err != nil {
		return
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for n := 1; ; n++ {
		select {
		case <-r.Context().Done():
			return
		case ev, ok := <-ch:
			if !ok {
				return // dropped as too slow; the browser reconnects
			}
			if err := send(ev); err != nil {
				return
			}
		case <-tick.C:
			if s.stopped != nil && s.stopped() {
				return
			}
			// A comment now and then lets proxies and the browser see the
			// stream is alive.
			if n%15 == 0 {
				if _, err := io.WriteString(w, ": keepalive\n\n"); err != nil || rc.Flush() != nil {
					return
				}
			}
		}
	}
}

// writeJSON answers v as JSON.
func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}
