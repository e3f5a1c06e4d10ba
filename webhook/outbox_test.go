package webhook

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/rtmrec/rtmrec/internal/ledger"
	"github.com/rtmrec/rtmrec/internal/netguard"
	"github.com/rtmrec/rtmrec/internal/wording"
	"net"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// hit is one request as the receiver saw it.
type hit struct {
	path   string
	header http.Header
	body   []byte
	status int // what the receiver answered; 0 for a dropped connection
	at     time.Time
}

// receiver is a webhook endpoint whose answers follow a policy.
type receiver struct {
	srv *httptest.Server

	mu     sync.Mutex
	policy func(n int, path string) string // n counts requests from 0
	hits   []hit
}

func newReceiver(t *testing.T, policy func(n int, path string) string) *receiver {
	t.Helper()
	rc := &receiver{policy: policy}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

// restart closes the endpoint, which waits for every request it has
// begun, and opens it again at the same address: a request a stopped
// outbox wrote just before it stopped is answered by the old policy, not
// taken for the next outbox's.
func (rc *receiver) restart(t *testing.T, p func(int, string) string) {
	t.Helper()
	addr := rc.srv.Listener.Addr().String()
	rc.srv.Close()
	rc.setPolicy(p)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen again on %s: %v", addr, err)
	}
	rc.srv = httptest.NewUnstartedServer(http.HandlerFunc(rc.serve))
	rc.srv.Listener.Close()
	rc.srv.Listener = ln
	rc.srv.Start()
	t.Cleanup(rc.srv.Close)
}

func always(b string) func(int, string) string { return func(int, string) string { return b } }

func script(bs ...string) func(int, string) string {
	return func(n int, _ string) string { return bs[min(n, len(bs)-1)] }
}

func (rc *receiver) setPolicy(p func(int, string) string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.policy = p
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	b := rc.policy(len(rc.hits), r.URL.Path)
	i := len(rc.hits)
	rc.hits = append(rc.hits, hit{path: r.URL.Path, header: r.Header.Clone(), body: body, at: time.Now()})
	rc.mu.Unlock()
	status := 0
	switch b {
	case "reset":
		if c, _, err := w.(http.Hijacker).Hijack(); err == nil {
			c.Close()
		}
	case "slow":
		select {
		case <-r.Context().Done():
		case <-time.After(3 * time.Second):
		}
	default:
		fmt.Sscan(b, &status)
		w.WriteHeader(status)
	}
	rc.mu.Lock()
	rc.hits[i].status = status
	rc.mu.Unlock()
}

func (rc *receiver) all() []hit {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]hit(nil), rc.hits...)
}

// delivered returns the ids answered 2xx, in order, per path.
func (rc *receiver) delivered() map[string][]string {
	out := map[string][]string{}
	for _, h := range rc.all() {
		if h.status >= 200 && h.status < 300 {
			out[h.path] = append(out[h.path], h.header.Get(HeaderID))
		}
	}
	return out
}

func (rc *receiver) waitDelivered(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		c := 0
		for _, ids := range rc.delivered() {
			c += len(ids)
		}
		if c >= n {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("fewer than %d deliveries after 20s", n)
}

func testConfig(t *testing.T, dir string) Config {
	t.Helper()
	return Config{
		Ledger:         openLedger(t, dir),
		Guard:          netguard.New(netguard.Config{AllowPrivate: true}),
		BaseBackoff:    2 * time.Millisecond,
		MaxBackoff:     20 * time.Millisecond,
		RequestTimeout: 2 * time.Second,
		RetryPeriod:    time.Minute,
	}
}

// run starts o.Run and returns a stop function that waits for it.
func run(t *testing.T, o *Outbox) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { o.Run(ctx); close(done) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

// openLedger opens the ledger in dir, closed when the test ends.
func openLedger(t *testing.T, dir string) *ledger.Ledger {
	t.Helper()
	l, err := ledger.Open(dir, ledger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// enqueue publishes an event with a fresh id and waits until it is durable.
func enqueue(t *testing.T, o *Outbox, url, key string, payload json.RawMessage) string {
	t.Helper()
	id := EventID(t.Name(), key, string(payload), fmt.Sprint(time.Now().UnixNano()))
	done := make(chan struct{})
	o.Publish(Event{ID: id, Key: key, URL: url, Payload: payload}, func() { close(done) })
	<-done
	return id
}

func newOutbox(t *testing.T, cfg Config) *Outbox {
	t.Helper()
	o, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestDeliverySignedBody(t *testing.T) {
	rc := newReceiver(t, always("204"))
	cfg := testConfig(t, t.TempDir())
	oldSecret, newSecret := []byte("old-secret-0123456789"), []byte("new-secret-9876543210")
	cfg.Secrets = [][]byte{newSecret, oldSecret}
	fixed := time.Date(2026, 3, 4, 5, 6, 7, 0, time.FixedZone("X", 3600))
	cfg.Now = func() time.Time { return fixed }
	o := newOutbox(t, cfg)
	run(t, o)

	payload := json.RawMessage(`{"type":"session_state","client_id":"c1","session_id":"s1","data":{"state":"CONNECTED"}}`)
	id := enqueue(t, o, rc.srv.URL+"/hook?token=topsecret", "s1", payload)
	rc.waitDelivered(t, 1)
	h := rc.all()[0]
	want := `{"id":"` + id + `","timestamp":"2026-03-04T04:06:07Z","type":"session_state","client_id":"c1","session_id":"s1","data":{"state":"CONNECTED"}}`
	if string(h.body) != want {
		t.Fatalf("body\n%s\nwant\n%s", h.body, want)
	}
	if h.header.Get("Content-Type") != "application/json" || h.header.Get(HeaderID) != id ||
		h.header.Get(HeaderTimestamp) != fmt.Sprint(fixed.Unix()) {
		t.Fatalf("headers %v", h.header)
	}
	if n := len(strings.Fields(h.header.Get(HeaderSignature))); n != 2 {
		t.Fatalf("%d signatures, want one per secret", n)
	}
	for _, s := range [][]byte{oldSecret, newSecret} {
		if err := Verify(s, h.header, h.body, fixed, 5*time.Minute); err != nil {
			t.Errorf("Verify with %q: %v", s, err)
		}
	}
	if err := Verify([]byte("other"), h.header, h.body, fixed, 5*time.Minute); err != ErrBadSignature {
		t.Errorf("Verify with a wrong secret = %v", err)
	}
	if err := Verify(oldSecret, h.header, append(h.body, ' '), fixed, 5*time.Minute); err != ErrBadSignature {
		t.Errorf("Verify of a changed body = %v", err)
	}
	if err := Verify(oldSecret, h.header, h.body, fixed.Add(time.Hour), 5*time.Minute); err == nil {
		t.Error("Verify accepted a stale timestamp")
	}
}

func TestUnsigned(t *testing.T) {
	rc := newReceiver(t, always("200"))
	o := newOutbox(t, testConfig(t, t.TempDir()))
	run(t, o)
	enqueue(t, o, rc.srv.URL, "k", json.RawMessage(`{}`))
	rc.waitDelivered(t, 1)
	h := rc.all()[0]
	if h.header.Get(HeaderSignature) != "" {
		t.Error("signature without secrets")
	}
	var body map[string]any
	if err := json.Unmarshal(h.body, &body); err != nil || len(body) != 2 {
		t.Errorf("body %s: %v", h.body, err)
	}
}

// TestUnqueueableEventsAreDeadLetters: an event that cannot be queued is
// kept as a dead letter and counted, never dropped, and the events after
// it on its key still go out.
func TestUnqueueableEventsAreDeadLetters(t *testing.T) {
	rc := newReceiver(t, always("200"))
	cfg := testConfig(t, t.TempDir())
	o := newOutbox(t, cfg)
	run(t, o)
	bad := []struct{ url, payload string }{
		{"ftp://example.com/x?token=topsecret", `{}`},
		{rc.srv.URL, `[1,2]`},
		{rc.srv.URL, `{"id":"mine"}`},
		{rc.srv.URL, `{"timestamp":1}`},
		{rc.srv.URL, `{broken`},
	}
	for _, tc := range bad {
		enqueue(t, o, tc.url, "k", json.RawMessage(tc.payload))
	}
	good := enqueue(t, o, rc.srv.URL, "k", json.RawMessage(`{"n":1}`))
	rc.waitDelivered(t, 1)
	if got := rc.all(); len(got) != 1 || got[0].header.Get(HeaderID) != good {
		t.Fatalf("deliveries %v, want only the good event", got)
	}
	dead := deadLetters(t, cfg.Ledger)
	if len(dead) != len(bad) {
		t.Fatalf("%d dead letters, want %d", len(dead), len(bad))
	}
	for _, d := range dead {
		if d.LastError == "" || strings.Contains(d.LastError, "topsecret") {
			t.Errorf("dead letter reason %q", d.LastError)
		}
		if err := wording.Check(d.LastError); err != nil {
			t.Error(err)
		}
	}
	if v := testutilCounter(o.m.dead); v != float64(len(bad)) {
		t.Fatalf("dead letter counter = %v", v)
	}
}

// deadLetters reads the dead letters from the ledger.
func deadLetters(t *testing.T, l *ledger.Ledger) []deadLetter {
	t.Helper()
	var out []deadLetter
	err := l.View(func(tx *ledger.Tx) error {
		b := tx.Bucket(bucketDead)
		if b == nil {
			return nil
		}
		return b.ForEach(func(_, v []byte) error {
			var d deadLetter
			if err := json.Unmarshal(v, &d); err != nil {
				return err
			}
			out = append(out, d)
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// pendingInLedger counts the events the ledger still holds for delivery.
func pendingInLedger(t *testing.T, l *ledger.Ledger) int {
	t.Helper()
	n := 0
	err := l.View(func(tx *ledger.Tx) error {
		if b := tx.Bucket(bucketEvents); b != nil {
			n = b.Stats().KeyN
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestRetriesKeepID(t *testing.T) {
	rc := newReceiver(t, script("500", "reset", "429", "slow", "503", "200"))
	cfg := testConfig(t, t.TempDir())
	cfg.RequestTimeout = 200 * time.Millisecond
	cfg.Secrets = [][]byte{[]byte("s")}
	o := newOutbox(t, cfg)
	run(t, o)
	id := enqueue(t, o, rc.srv.URL+"/h", "k", json.RawMessage(`{"n":1}`))
	rc.waitDelivered(t, 1)
	hits := rc.all()
	if len(hits) != 6 {
		t.Fatalf("%d attempts, want 6", len(hits))
	}
	for i, h := range hits {
		if h.header.Get(HeaderID) != id || !strings.Contains(string(h.body), `"id":"`+id+`"`) {
			t.Errorf("attempt %d: id %q", i, h.header.Get(HeaderID))
		}
		if string(h.body) != string(hits[0].body) && len(h.body) > 0 {
			t.Errorf("attempt %d: body changed", i)
		}
		if len(h.body) > 0 {
			if err := Verify([]byte("s"), h.header, h.body, time.Now(), time.Minute); err != nil {
				t.Errorf("attempt %d: %v", i, err)
			}
		}
	}
}

// TestOrderUnderFailures: many keys, a receiver that fails often; every
// key's events arrive in order, each delivered before the next is tried.
func TestOrderUnderFailures(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			checkOrder(t, seed, 6, 15)
		})
	}
}

// checkOrder enqueues events on keys, against a receiver whose answers
// come from a deterministic pseudo-random sequence, and checks the order.
func checkOrder(t *testing.T, seed uint64, keys, perKey int) {
	x := seed*0x9E3779B97F4A7C15 + 1
	next := func() uint64 { x ^= x << 13; x ^= x >> 7; x ^= x << 17; return x }
	answers := []string{"200", "200", "204", "500", "503", "reset", "404"}
	var mu sync.Mutex
	rc := newReceiver(t, func(int, string) string {
		mu.Lock()
		defer mu.Unlock()
		return answers[next()%uint64(len(answers))]
	})
	cfg := testConfig(t, t.TempDir())
	cfg.Workers = 4
	o := newOutbox(t, cfg)
	run(t, o)
	want := map[string][]string{}
	for i := range perKey {
		for k := range keys {
			key := fmt.Sprintf("session-%d", k)
			id := enqueue(t, o, rc.srv.URL+"/"+key, key, json.RawMessage(fmt.Sprintf(`{"n":%d}`, i)))
			want["/"+key] = append(want["/"+key], id)
		}
	}
	rc.waitDelivered(t, keys*perKey)
	checkHits(t, rc.all(), want)
}

// checkHits checks that per path the requests go through the wanted ids
// in order: an id is only tried after its predecessor was delivered.
func checkHits(t *testing.T, hits []hit, want map[string][]string) {
	t.Helper()
	pos := map[string]int{}
	for _, h := range hits {
		ids := want[h.path]
		p := pos[h.path]
		if p >= len(ids) {
			t.Fatalf("%s: extra request for %s after all were delivered", h.path, h.header.Get(HeaderID))
		}
		if got := h.header.Get(HeaderID); got != ids[p] {
			t.Fatalf("%s: request for %s while %s (#%d) was not delivered", h.path, got, ids[p], p)
		}
		if h.status >= 200 && h.status < 300 {
			pos[h.path]++
		}
	}
	for path, ids := range want {
		if pos[path] != len(ids) {
			t.Errorf("%s: %d of %d delivered", path, pos[path], len(ids))
		}
	}
}

// TestSlowKey: one receiver hangs; other keys are delivered meanwhile.
func TestSlowKey(t *testing.T) {
	rc := newReceiver(t, func(_ int, path string) string {
		if path == "/slow" {
			return "slow"
		}
		return "200"
	})
	cfg := testConfig(t, t.TempDir())
	cfg.RequestTimeout = 2 * time.Second
	o := newOutbox(t, cfg)
	run(t, o)
	for range 3 {
		enqueue(t, o, rc.srv.URL+"/slow", "slow", json.RawMessage(`{}`))
	}
	time.Sleep(50 * time.Millisecond) // the slow key is in flight
	start := time.Now()
	for i := range 20 {
		enqueue(t, o, rc.srv.URL+"/fast", fmt.Sprint("fast-", i), json.RawMessage(`{}`))
	}
	for len(rc.delivered()["/fast"]) < 20 {
		if time.Since(start) > time.Second {
			t.Fatalf("fast keys waited for the slow one: %d delivered", len(rc.delivered()["/fast"]))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := len(rc.delivered()["/slow"]); n != 0 {
		t.Fatalf("slow key delivered %d", n)
	}
}

func TestDeadLetter(t *testing.T) {
	rc := newReceiver(t, func(_ int, path string) string {
		if path == "/broken" {
			return "500"
		}
		return "200"
	})
	cfg := testConfig(t, t.TempDir())
	cfg.RetryPeriod = 150 * time.Millisecond
	o := newOutbox(t, cfg)
	run(t, o)
	deadID := enqueue(t, o, rc.srv.URL+"/broken", "k", json.RawMessage(`{"n":1}`))
	// The next event of the key waits for the first to be given up.
	okID := enqueue(t, o, rc.srv.URL+"/ok", "k", json.RawMessage(`{"n":2}`))
	rc.waitDelivered(t, 1)
	hits := rc.all()
	last := hits[len(hits)-1]
	if last.header.Get(HeaderID) != okID {
		t.Fatal("second event not delivered last")
	}
	first, lastBroken := hits[0], hits[len(hits)-2]
	if d := lastBroken.at.Sub(first.at); d < 100*time.Millisecond {
		t.Fatalf("given up after %v, before the retry period", d)
	}
	time.Sleep(50 * time.Millisecond) // the ledger learns of the outcome without the worker waiting
	dead := deadLetters(t, cfg.Ledger)
	if len(dead) != 1 || dead[0].ID != deadID || !strings.Contains(dead[0].LastError, "500") {
		t.Fatalf("dead letters: %+v", dead)
	}
	if v := testutilCounter(o.m.dead); v != 1 {
		t.Fatalf("dead letter counter = %v", v)
	}
}

// TestDeadLetterSaysWhy: a receiver that cannot be reached leaves a dead
// letter whose last_error a customer can act on ("connection refused"),
// not Go's dial chain.
func TestDeadLetterSaysWhy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String() + "/hooks?token=topsecret"
	ln.Close()
	cfg := testConfig(t, t.TempDir())
	cfg.RetryPeriod = 100 * time.Millisecond
	o := newOutbox(t, cfg)
	run(t, o)
	enqueue(t, o, closed, "k", json.RawMessage(`{"n":1}`))
	deadline := time.Now().Add(5 * time.Second)
	for len(deadLetters(t, cfg.Ledger)) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	dead := deadLetters(t, cfg.Ledger)
	if len(dead) != 1 || dead[0].LastError != "connection refused" {
		t.Fatalf("dead letters %+v, want one saying connection refused", dead)
	}
}

// TestRestartKeepsOrder: events left by a stopped outbox are delivered by
// the next one, in order, with their ids.
func TestRestartKeepsOrder(t *testing.T) {
	rc := newReceiver(t, always("503"))
	dir := t.TempDir()
	l, err := ledger.Open(dir, ledger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, t.TempDir())
	cfg.Ledger = l
	o := newOutbox(t, cfg)
	stop := run(t, o)
	want := map[string][]string{}
	for i := range 10 {
		for _, key := range []string{"a", "b"} {
			id := enqueue(t, o, rc.srv.URL+"/"+key, key, json.RawMessage(fmt.Sprintf(`{"n":%d}`, i)))
			want["/"+key] = append(want["/"+key], id)
		}
	}
	time.Sleep(50 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	o.Drain(ctx)
	cancel()
	stop()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rc.restart(t, always("200"))
	failed := len(rc.all())
	if failed == 0 {
		t.Fatal("no attempt before the restart")
	}

	cfg.Ledger = openLedger(t, dir)
	o2 := newOutbox(t, cfg)
	run(t, o2)
	rc.waitDelivered(t, 20)
	checkHits(t, rc.all()[failed:], want)
	deadline := time.Now().Add(2 * time.Second)
	for pendingInLedger(t, cfg.Ledger) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d events left in the ledger after delivery", pendingInLedger(t, cfg.Ledger))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestFallbackClosesKeysACrashLeftOpen: a key opened with a fallback and
// not closed before the process died gets the fallback at the next start,
// once; a key that was closed gets nothing more.
func TestFallbackClosesKeysACrashLeftOpen(t *testing.T) {
	rc := newReceiver(t, always("200"))
	dir := t.TempDir()
	l, err := ledger.Open(dir, ledger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, t.TempDir())
	cfg.Ledger = l
	o := newOutbox(t, cfg)
	terminated := func(key string) *Event {
		return &Event{ID: EventID(key, "TERMINATED"), Key: key, URL: rc.srv.URL + "/" + key, Payload: json.RawMessage(`{"state":"TERMINATED","cause":"crash"}`)}
	}
	publish := func(ev Event) {
		done := make(chan struct{})
		o.Publish(ev, func() { close(done) })
		<-done
	}
	for _, key := range []string{"open", "closed"} {
		publish(Event{ID: EventID(key, "CONNECTING"), Key: key, URL: rc.srv.URL + "/" + key, Payload: json.RawMessage(`{"state":"CONNECTING"}`), Fallback: terminated(key)})
	}
	closing := *terminated("closed")
	closing.Payload = json.RawMessage(`{"state":"TERMINATED","cause":"client"}`)
	publish(closing)
	// The process dies: nothing delivered, the ledger is simply closed.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	for restart := range 2 {
		cfg.Ledger = openLedger(t, dir)
		o2 := newOutbox(t, cfg)
		stop := run(t, o2)
		if restart == 0 {
			rc.waitDelivered(t, 4)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		o2.Drain(ctx)
		cancel()
		stop()
		if err := cfg.Ledger.Close(); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string][]string{}
	for _, h := range rc.all() {
		var body struct {
			State string `json:"state"`
			Cause string `json:"cause"`
		}
		if err := json.Unmarshal(h.body, &body); err != nil {
			t.Fatal(err)
		}
		got[h.path] = append(got[h.path], body.State+"/"+body.Cause)
	}
	want := map[string][]string{
		"/open":   {"CONNECTING/", "TERMINATED/crash"},
		"/closed": {"CONNECTING/", "TERMINATED/client"},
	}
	for path, w := range want {
		if strings.Join(got[path], ",") != strings.Join(w, ",") {
			t.Errorf("%s: %v, want %v", path, got[path], w)
		}
	}
	for _, h := range rc.all() {
		if h.path == "/open" && strings.Contains(string(h.body), "TERMINATED") && h.header.Get(HeaderID) != EventID("open", "TERMINATED") {
			t.Errorf("fallback sent under id %s, want its own stable id", h.header.Get(HeaderID))
		}
	}
}

// TestPublishOrderWithAndWithoutURL: delivered callbacks come in publish
// order whether or not an event is written, which is what keeps a
// session's WebSocket in the same order as its webhook.
func TestPublishOrderWithAndWithoutURL(t *testing.T) {
	rc := newReceiver(t, always("200"))
	o := newOutbox(t, testConfig(t, t.TempDir()))
	var mu sync.Mutex
	var order []int
	var wg sync.WaitGroup
	for i := range 200 {
		url := ""
		if i%3 == 0 {
			url = rc.srv.URL
		}
		wg.Add(1)
		o.Publish(Event{ID: EventID("k", fmt.Sprint(i)), Key: "k", URL: url, Payload: json.RawMessage(`{}`)}, func() {
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			wg.Done()
		})
	}
	wg.Wait()
	for i, v := range order {
		if v != i {
			t.Fatalf("callback %d is event %d", i, v)
		}
	}
}

func TestEventIDIsStable(t *testing.T) {
	a, b := EventID("rec1", "STOPPED"), EventID("rec1", "STOPPED")
	if a != b || !strings.HasPrefix(a, "evt_") {
		t.Fatalf("EventID not stable: %s %s", a, b)
	}
	for _, other := range []string{EventID("rec1", "FAILED"), EventID("rec1S", "TOPPED"), EventID("rec1", "STOPPED", "")} {
		if other == a {
			t.Fatalf("EventID collides: %s", other)
		}
	}
}

func TestParseSecret(t *testing.T) {
	tests := []struct {
		in      string
		want    string // hex of the key; "" when an error is wanted
		wantErr bool
	}{
		{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "31f290f6bf0629" + "8aab4f08d43c3f082cf648a362da2da4b0", false},
		{"plain-text-secret", "706c61696e2d746578742d736563726574", false},
		{"whsec_not base64!", "", true},
		{"whsec_c2hvcnQ=", "", true},
		{"", "", true},
	}
	for _, tt := range tests {
		got, err := ParseSecret(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseSecret(%q) error %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if !tt.wantErr && fmt.Sprintf("%x", got) != tt.want {
			t.Errorf("ParseSecret(%q) = %x, want %s", tt.in, got, tt.want)
		}
	}
}

// TestSignVector is the example of the Standard Webhooks specification.
func TestSignVector(t *testing.T) {
	secret, _ := base64.StdEncoding.DecodeString("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	got := Sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, []byte(`{"test": 2432232314}`))
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
}

func FuzzOutboxOrder(f *testing.F) {
	f.Add(uint64(7), uint8(3), uint8(5))
	f.Add(uint64(42), uint8(1), uint8(12))
	f.Fuzz(func(t *testing.T, seed uint64, keys, perKey uint8) {
		checkOrder(t, seed, int(keys%5)+1, int(perKey%10)+1)
	})
}

// TestOrderUnderConcurrentProducers: a session's events come from its loop
// and from recording workers at once; whatever order they are made durable
// in is the order the receiver gets them, in this run and after a restart.
func TestOrderUnderConcurrentProducers(t *testing.T) {
	rc := newReceiver(t, always("200"))
	dir := t.TempDir()
	l, err := ledger.Open(dir, ledger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, t.TempDir())
	cfg.Ledger = l
	o := newOutbox(t, cfg)
	var mu sync.Mutex
	var durable []string // ids in the order their delivered callbacks came
	var wg sync.WaitGroup
	for p := range 4 {
		wg.Go(func() {
			for i := range 50 {
				id := EventID("p", fmt.Sprint(p), fmt.Sprint(i))
				done := make(chan struct{})
				o.Publish(Event{ID: id, Key: "session", URL: rc.srv.URL, Payload: json.RawMessage(`{}`)}, func() {
					mu.Lock()
					durable = append(durable, id)
					mu.Unlock()
					close(done)
				})
				<-done
			}
		})
	}
	wg.Wait()
	// Half goes out before a restart; the rest after it.
	stop := run(t, o)
	rc.waitDelivered(t, 100)
	stop()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	cfg.Ledger = openLedger(t, dir)
	run(t, newOutbox(t, cfg))
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		unique := map[string]bool{}
		for _, id := range rc.delivered()["/"] {
			unique[id] = true
		}
		if len(unique) == len(durable) || time.Now().After(deadline) {
			break
		}
	}
	// At least once: one cut off by the stop may come again (same id);
	// the first deliveries are in the durable order.
	var first []string
	seen := map[string]bool{}
	for _, id := range rc.delivered()["/"] {
		if !seen[id] {
			seen[id] = true
			first = append(first, id)
		}
	}
	if strings.Join(first, ",") != strings.Join(durable, ",") {
		t.Fatalf("delivered in another order than made durable:\n%v\n%v", first, durable)
	}
}

// TestDeadLettersCanBeReplayed: an operator lists the dead letters and, once
// the receiver is fixed, queues one again; it is delivered under its id.
func TestDeadLettersCanBeReplayed(t *testing.T) {
	rc := newReceiver(t, always("500"))
	cfg := testConfig(t, t.TempDir())
	cfg.RetryPeriod = 100 * time.Millisecond
	o := newOutbox(t, cfg)
	run(t, o)
	id := enqueue(t, o, rc.srv.URL+"/hook?token=topsecret", "k", json.RawMessage(`{"n":1}`))
	enqueue(t, o, "ftp://nowhere/x", "k", json.RawMessage(`{}`))
	var dead []DeadLetter
	for deadline := time.Now().Add(5 * time.Second); len(dead) < 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("dead letters: %+v", dead)
		}
		var err error
		if dead, err = o.DeadLetters(); err != nil {
			t.Fatal(err)
		}
	}
	var replayable, broken DeadLetter
	for _, d := range dead {
		if d.Queueable {
			replayable = d
		} else {
			broken = d
		}
	}
	if replayable.ID != id || strings.Contains(replayable.URL, "topsecret") || !strings.Contains(replayable.LastError, "500") {
		t.Fatalf("dead letter %+v", replayable)
	}
	if err := o.Replay(broken.Seq); !errors.Is(err, ErrNoDeadLetter) {
		t.Fatalf("replay of an unqueueable event: %v", err)
	}
	rc.setPolicy(always("200"))
	if err := o.Replay(replayable.Seq); err != nil {
		t.Fatal(err)
	}
	rc.waitDelivered(t, 1)
	if got := rc.delivered()["/hook"]; len(got) != 1 || got[0] != id {
		t.Fatalf("delivered %v, want %s", got, id)
	}
	if left, _ := o.DeadLetters(); len(left) != 1 {
		t.Fatalf("%d dead letters left, want the unqueueable one", len(left))
	}
}
