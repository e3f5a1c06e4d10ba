package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"time"

	"github.com/rtmrec/rtmrec/internal/ledger"
)

// Queued is an event that rtmrec's first release had queued in its own
// outbox directory and not delivered: its body is already built (with its
// id and enqueue time), and receivers may have seen an earlier attempt of
// it, so it goes out again byte for byte, under the same id.
type Queued struct {
	ID       string
	Key      string
	URL      string
	Body     string
	Created  time.Time
	Attempts int
	// Dead is set for an event the first release gave up on: it is kept
	// as a dead letter (with LastError), for the operator to replay.
	Dead      bool
	LastError string
}

// Import writes q into tx behind every event staged before it, for an
// upgrade that moves a first-release outbox into the ledger. after must be
// called once tx is committed. An event that could never be sent (no id,
// no key, a body that is not a JSON object, a malformed URL) is kept as a
// dead letter. Its retry period runs from Created, as it did before.
func (o *Outbox) Import(tx *ledger.Tx, q Queued) (after func(), err error) {
	e := &event{ID: q.ID, Key: q.Key, URL: q.URL, Body: q.Body, Created: q.Created.UTC(), Attempts: q.Attempts, LastError: q.LastError}
	why := checkReceiverURL(q.URL)
	switch body := bytes.TrimSpace([]byte(q.Body)); {
	case q.ID == "" || q.Key == "":
		why = errors.New("the event has no id or no order key")
	case len(body) == 0 || body[0] != '{' || !json.Valid(body):
		why = errors.New("the event's body is not a JSON object")
	}
	switch {
	case why != nil:
		return o.stageDead(tx, Event{ID: q.ID, Key: q.Key, URL: q.URL, Payload: json.RawMessage(q.Body)}, e.Created, why)
	case q.Dead:
		return o.putDead(tx, e)
	}
	return o.put(tx, e)
}

// putDead writes e into tx as a dead letter that can be replayed.
func (o *Outbox) putDead(tx *ledger.Tx, e *event) (after func(), err error) {
	if err := appendTo(tx, bucketDead, e, func(e *event) any { return deadLetter{event: *e} }); err != nil {
		return nil, err
	}
	return func() {}, nil
}
