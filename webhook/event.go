package webhook

import (
	"bytes"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Event is one webhook to deliver.
type Event struct {
	// ID is the event's stable id (the body's "id" and the webhook-id
	// header): the same event keeps it across retries and restarts, so a
	// receiver deduplicates on it. Make it with EventID.
	ID string
	// Key orders events: those of one key are delivered one at a time, in
	// the order they were published (a session's events share its key).
	Key string
	// URL is the receiver; empty means nowhere (the event still keeps its
	// place in the order, see Outbox.Publish).
	URL string
	// Payload is a JSON object without "id" and "timestamp"; the body sent
	// is that object with both added as its first keys (docs/webhooks.md).
	Payload json.RawMessage
	// Fallback, if not nil, is the event that closes this key: should the
	// process die before an event with Fallback.ID is published on the key,
	// the next start sends Fallback instead (a session's TERMINATED caused
	// by the crash). Publishing the closing event itself removes it.
	Fallback *Event
}

// EventID derives an event id from what identifies the event (for
// example a recording id and a state), so that the same event always gets
// the same id, whichever process sends it.
func EventID(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(p)))
		h.Write(n[:])
		h.Write([]byte(p))
	}
	return "evt_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(h.Sum(nil)[:16]))
}

// event is one pending webhook in the ledger, keyed by its sequence number
// (the global publish order, which keeps each key's order across restarts).
type event struct {
	Seq         uint64    `json:"seq"`
	ID          string    `json:"id"`
	Key         string    `json:"key"`
	URL         string    `json:"url"`
	Body        string    `json:"body"` // exactly the bytes sent (and signed), kept as a string so JSON encoding cannot reformat them
	Created     time.Time `json:"created"`
	Attempts    int       `json:"attempts"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
}

// deadLetter is an event that will not be delivered, kept for the operator.
type deadLetter struct {
	event
	// Payload is the unbuilt payload of an event that could not even be
	// queued (Body is then empty); a string, since it may not be JSON.
	Payload string `json:"payload,omitempty"`
}

// fallback is a key's closing event, kept until the key is closed.
type fallback struct {
	URL     string `json:"url"`
	ID      string `json:"id"`
	Payload string `json:"payload"`
}

// buildBody returns payload with "id" and "timestamp" added as its first
// keys (docs/webhooks.md). payload must be a JSON object without those keys, so
// the body never carries a duplicate key.
func buildBody(id string, ts time.Time, payload json.RawMessage) ([]byte, error) {
	p := bytes.TrimSpace(payload)
	if len(p) == 0 {
		p = []byte("{}")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(p, &fields); err != nil || p[0] != '{' {
		return nil, errors.New("the event's payload is not a JSON object")
	}
	for _, k := range []string{"id", "timestamp"} {
		if _, ok := fields[k]; ok {
			return nil, fmt.Errorf("the event's payload has its own %q", k)
		}
	}
	idJSON, _ := json.Marshal(id)
	tsJSON, _ := json.Marshal(ts.UTC().Format(time.RFC3339Nano))
	var b bytes.Buffer
	b.Grow(len(p) + len(idJSON) + len(tsJSON) + 24)
	b.WriteString(`{"id":`)
	b.Write(idJSON)
	b.WriteString(`,"timestamp":`)
	b.Write(tsJSON)
	rest := bytes.TrimSpace(p[1:])
	if len(fields) > 0 {
		b.WriteByte(',')
	}
	b.Write(rest) // the remaining members and the closing brace
	return b.Bytes(), nil
}

func seqKey(seq uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], seq)
	return k[:]
}
