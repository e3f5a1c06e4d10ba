package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/rtmrec/rtmrec/internal/durable"
)

// event is one webhook on disk, a JSON file named by its sequence number
// so that a directory listing gives the enqueue order, which keeps the
// per-key order across restarts.
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

// buildBody returns payload with "id" and "timestamp" added as its first
// keys (contract §6). payload must be a JSON object without those keys, so
// the body never carries a duplicate key.
func buildBody(id string, ts time.Time, payload json.RawMessage) ([]byte, error) {
	p := bytes.TrimSpace(payload)
	if len(p) == 0 {
		p = []byte("{}")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(p, &fields); err != nil || p[0] != '{' {
		return nil, errors.New("webhook: payload is not a JSON object")
	}
	for _, k := range []string{"id", "timestamp"} {
		if _, ok := fields[k]; ok {
			return nil, fmt.Errorf("webhook: payload has its own %q", k)
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

// store keeps pending events in dir and dead letters in dir/dead.
type store struct{ dir string }

const eventExt = ".evt"

func (s store) name(seq uint64) string { return fmt.Sprintf("%020d%s", seq, eventExt) }

func (s store) save(ev *event) error {
	data, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("webhook: encode event %s: %w", ev.ID, err)
	}
	if err := durable.WriteFile(filepath.Join(s.dir, s.name(ev.Seq)), data); err != nil {
		return fmt.Errorf("webhook: save event %s: %w", ev.ID, err)
	}
	return nil
}

func (s store) remove(ev *event) error {
	if err := os.Remove(filepath.Join(s.dir, s.name(ev.Seq))); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("webhook: remove event %s: %w", ev.ID, err)
	}
	return durable.SyncDir(s.dir)
}

// bury moves ev to the dead-letter directory with its last error; the
// operator can inspect and replay it from there.
func (s store) bury(ev *event) error {
	data, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("webhook: encode event %s: %w", ev.ID, err)
	}
	dead := filepath.Join(s.dir, "dead")
	if err := os.MkdirAll(dead, 0o700); err != nil {
		return fmt.Errorf("webhook: dead-letter dir: %w", err)
	}
	if err := durable.WriteFile(filepath.Join(dead, s.name(ev.Seq)), data); err != nil {
		return fmt.Errorf("webhook: dead-letter event %s: %w", ev.ID, err)
	}
	return s.remove(ev)
}

// load returns the pending events in enqueue order. Temp files of an
// interrupted write are removed; unreadable files are renamed aside.
func (s store) load() (evs []*event, bad []string, err error) {
	evs, bad, err = durable.LoadJSON(s.dir, eventExt, func(ev *event) error {
		if ev.ID == "" || ev.Seq == 0 {
			return errors.New("no id or sequence")
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("webhook: read event dir: %w", err)
	}
	sort.Slice(evs, func(i, j int) bool { return evs[i].Seq < evs[j].Seq })
	return evs, bad, nil
}
