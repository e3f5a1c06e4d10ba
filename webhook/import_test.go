package webhook

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/rtmrec/rtmrec/internal/ledger"
)

// TestImportKeepsIDBodyAndOrder: events of the first release go out byte
// for byte under their ids, in import order, ahead of what is published
// after them on their key; its dead letters become replayable dead
// letters; what could never be sent is a dead letter that says why.
func TestImportKeepsIDBodyAndOrder(t *testing.T) {
	rc := newReceiver(t, always("200"))
	cfg := testConfig(t, t.TempDir())
	o := newOutbox(t, cfg)
	created := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	body := func(id string) string {
		return `{"id":"` + id + `","timestamp":"2026-11-30T10:00:00Z","type":"session_state","session_id":"s1","data":{"state":"CONNECTED"}}`
	}
	imports := []Queued{
		{ID: "evt_old1", Key: "0:/s1", URL: rc.srv.URL + "/a", Body: body("evt_old1"), Created: created, Attempts: 3},
		{ID: "evt_old2", Key: "0:/s1", URL: rc.srv.URL + "/a", Body: body("evt_old2"), Created: created, Attempts: 3},
		{ID: "evt_dead", Key: "0:/s1", URL: rc.srv.URL + "/a", Body: body("evt_dead"), Created: created, Dead: true, LastError: "receiver answered 500"},
		{ID: "evt_torn", Key: "0:/s1", URL: rc.srv.URL + "/a", Body: `{"id":"evt_torn","timesta`, Created: created},
		{ID: "evt_nourl", Key: "0:/s1", URL: "", Body: body("evt_nourl"), Created: created},
	}
	for _, q := range imports {
		var after func()
		err := cfg.Ledger.Update(func(tx *ledger.Tx) (err error) {
			after, err = o.Import(tx, q)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		after()
	}
	run(t, o)
	next := enqueue(t, o, rc.srv.URL+"/a", "0:/s1", json.RawMessage(`{"type":"session_state"}`))
	rc.waitDelivered(t, 3)

	hits := rc.all()
	if got, want := rc.delivered()["/a"], []string{"evt_old1", "evt_old2", next}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("delivered %v, want %v", got, want)
	}
	for i, id := range []string{"evt_old1", "evt_old2"} {
		if string(hits[i].body) != body(id) {
			t.Errorf("body of %s\n%s\nwant it as it was queued\n%s", id, hits[i].body, body(id))
		}
	}
	dead := deadLetters(t, cfg.Ledger)
	if len(dead) != 3 {
		t.Fatalf("%d dead letters, want 3: %+v", len(dead), dead)
	}
	why := map[string]string{}
	for _, d := range dead {
		why[d.ID] = d.LastError
		if d.ID == "evt_dead" && d.Body != body("evt_dead") {
			t.Errorf("the first release's dead letter lost its body: %+v", d)
		}
	}
	if why["evt_dead"] != "receiver answered 500" || !strings.Contains(why["evt_torn"], "not a JSON object") || !strings.Contains(why["evt_nourl"], "URL") {
		t.Errorf("dead letters say %q", why)
	}
}
