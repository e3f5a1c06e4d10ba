package integration

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rtmrec/rtmrec/internal/testclient"
	"github.com/rtmrec/rtmrec/rtm"
	"github.com/rtmrec/rtmrec/webhook"
)

// The webhook receivers of docs/examples, as a customer would run them,
// verify the signatures of a real server's events: with a whsec_ secret,
// with a raw secret, and during a rotation (the server signs with two
// secrets) whichever of the two a receiver holds. Each also refuses an
// event signed with another key.
func TestWebhookReceiverExamples(t *testing.T) {
	node := requireTool(t, "node", "runs docs/examples/webhook-receiver.mjs")
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	examples := filepath.Join(root, "docs", "examples")
	if _, err := os.Stat(filepath.Join(examples, "node_modules", "standardwebhooks", "package.json")); err != nil {
		msg := "standardwebhooks not installed in docs/examples/node_modules: run scripts/install-examples.sh"
		if os.Getenv("RTMREC_REQUIRE_TOOLS") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	goRecv := filepath.Join(t.TempDir(), "webhook-receiver")
	build := exec.Command("go", "build", "-o", goRecv, "./docs/examples/webhook-receiver")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the Go receiver: %v\n%s", err, out)
	}
	receivers := map[string][]string{
		"go":   {goRecv},
		"node": {node, filepath.Join(examples, "webhook-receiver.mjs")},
	}
	oldSecret, newSecret := newWhsec(t), newWhsec(t)
	tests := []struct {
		name    string
		server  []string          // -webhook-secret values
		holders map[string]string // receiver → the secret it holds
	}{
		{"whsec secret", []string{oldSecret}, map[string]string{"go": oldSecret, "node": oldSecret}},
		{"raw secret", []string{"a-raw-secret-used-as-it-is"}, map[string]string{"go": "a-raw-secret-used-as-it-is", "node": "a-raw-secret-used-as-it-is"}},
		{"rotation, old secret", []string{oldSecret, newSecret}, map[string]string{"go": oldSecret, "node": oldSecret}},
		{"rotation, new secret", []string{newSecret, oldSecret}, map[string]string{"go": newSecret, "node": newSecret}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"-allow-private-urls", "-log-level", "info"}
			for _, s := range tt.server {
				args = append(args, "-webhook-secret", s)
			}
			srv := runRTMRec(t, t.TempDir(), args...)
			target := newUploadTarget(t)
			var wg sync.WaitGroup
			for name, secret := range tt.holders {
				r := startExampleReceiver(t, name, secret, receivers[name]...)
				wg.Go(func() {
					id := "hooks-" + name
					c := startCall(t, srv.wsURL(), id, r.url, nil, testclient.Tone)
					c.record(target.url("/rec/"+id+".ogg"), "")
					time.Sleep(time.Second)
					c.send(rtm.TypeRecordingStop, nil)
					c.wait(testclient.IsRecording(id, rtm.RecordingStopped))
					c.send(rtm.TypeSessionStop, nil)
					c.wait(testclient.IsState(id, rtm.StateTerminated))
					want := []string{"session_state:CONNECTING", "session_state:CONNECTED", "recording_state:STARTED", "recording_state:STOPPED", "session_state:TERMINATED/TERM_BY_CLIENT"}
					got := r.waitVerified(len(want))
					if s := states(got); strings.Join(s, " ") != strings.Join(want, " ") {
						t.Errorf("%s receiver verified %v, want %v", name, s, want)
					}
					if rej := r.rejected(); len(rej) > 0 {
						t.Errorf("%s receiver rejected real events: %q", name, rej)
					}
					r.wantRefusesForgery(t)
				})
			}
			wg.Wait()
		})
	}
}

// TestDocsShowTheWebhookReceivers: the receivers shown in docs/webhooks.md
// are the ones tested above.
func TestDocsShowTheWebhookReceivers(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "webhooks.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"webhook-receiver/main.go", "webhook-receiver.mjs"} {
		src, err := os.ReadFile(filepath.Join("..", "docs", "examples", f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(doc, src) {
			t.Errorf("docs/webhooks.md does not show docs/examples/%s as it is", f)
		}
	}
}

// newWhsec makes a secret in the Standard Webhooks form.
func newWhsec(t *testing.T) string {
	key := make([]byte, 24)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	return "whsec_" + base64.StdEncoding.EncodeToString(key)
}

// exampleReceiver is one running example receiver and what it printed.
type exampleReceiver struct {
	t    *testing.T
	name string
	url  string
	mu   sync.Mutex
	ok   []hookEvent
	bad  []string
}

// startExampleReceiver runs a receiver on a free port with WEBHOOK_SECRET
// set, and reads its "verified ID BODY" and "rejected ID: WHY" lines.
func startExampleReceiver(t *testing.T, name, secret string, argv ...string) *exampleReceiver {
	t.Helper()
	cmd := exec.Command(argv[0], append(argv[1:], "0")...)
	cmd.Dir = filepath.Dir(argv[len(argv)-1])
	cmd.Env = append(os.Environ(), "WEBHOOK_SECRET="+secret)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the %s receiver: %v", name, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	r := &exampleReceiver{t: t, name: name}
	listening := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if addr, ok := strings.CutPrefix(line, "listening on "); ok {
				listening <- addr
				continue
			}
			rest, ok := strings.CutPrefix(line, "verified ")
			var ev hookEvent
			if _, body, found := strings.Cut(rest, " "); !ok || !found || json.Unmarshal([]byte(body), &ev) != nil {
				r.add(nil, "unexpected output: "+line)
				continue
			}
			r.add(&ev, "")
		}
	}()
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			r.add(nil, sc.Text())
		}
	}()
	select {
	case addr := <-listening:
		r.url = "http://" + addr + "/hooks"
	case <-time.After(15 * time.Second):
		t.Fatalf("the %s receiver did not start: %q", name, r.rejected())
	}
	return r
}

func (r *exampleReceiver) add(ev *hookEvent, bad string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ev != nil {
		r.ok = append(r.ok, *ev)
	} else {
		r.bad = append(r.bad, bad)
	}
}

func (r *exampleReceiver) rejected() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.bad...)
}

// waitVerified waits for n verified events and returns them in arrival order.
func (r *exampleReceiver) waitVerified(n int) []hookEvent {
	deadline := time.Now().Add(20 * time.Second)
	for {
		r.mu.Lock()
		got := append([]hookEvent(nil), r.ok...)
		r.mu.Unlock()
		if len(got) >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// wantRefusesForgery posts an event signed with a key the receiver does not
// hold: it must answer 400 and say so.
func (r *exampleReceiver) wantRefusesForgery(t *testing.T) {
	body := []byte(`{"type":"session_state","session_id":"forged","data":{"state":"TERMINATED"}}`)
	ts := time.Now().Unix()
	req, _ := http.NewRequest(http.MethodPost, r.url, bytes.NewReader(body))
	req.Header.Set("webhook-id", "forged-1")
	req.Header.Set("webhook-timestamp", fmt.Sprint(ts))
	req.Header.Set("webhook-signature", webhook.Sign([]byte("not the receiver's key"), "forged-1", ts, body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("%s receiver: %v", r.name, err)
		return
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("%s receiver answered a forged event with %d, want 400", r.name, resp.StatusCode)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(strings.Join(r.rejected(), "\n"), "rejected forged-1") {
		if time.Now().After(deadline) {
			t.Errorf("%s receiver did not report the forged event: %q", r.name, r.rejected())
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}
