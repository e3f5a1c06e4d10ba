package upload

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rtmrec/rtmrec/internal/netguard"
)

func TestUploadOutcomes(t *testing.T) {
	tests := []struct {
		name     string
		script   []string
		any2xx   bool
		ok       bool
		attempts int
		status   int
	}{
		{"200", []string{"200"}, false, true, 1, 200},
		{"500 then 200", []string{"500", "503", "200"}, false, true, 3, 200},
		{"403 fails at once", []string{"403", "200"}, false, false, 1, 403},
		{"404 fails at once", []string{"404"}, false, false, 1, 404},
		{"201 is not 200", []string{"201", "200"}, false, false, 1, 201},
		{"201 with AcceptAny2xx", []string{"201"}, true, true, 1, 201},
		{"connection reset", []string{"reset", "reset", "200"}, false, true, 3, 200},
		{"partial body then close", []string{"partial", "200"}, false, true, 2, 200},
		{"200 before whole body", []string{"partial200", "200"}, false, true, 2, 200},
		{"slow answer times out", []string{"slow", "200"}, false, true, 2, 200},
		{"stalled body times out", []string{"stall", "200"}, false, true, 2, 200},
		{"307 is followed with the body", []string{"307", "200"}, false, true, 1, 200},
		{"301 would turn PUT into GET", []string{"301", "200"}, false, false, 1, 301},
		{"always 500 gives up", []string{"500"}, false, false, 5, 500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := newReceiver(t, tt.script...)
			cfg := testConfig(t, t.TempDir())
			cfg.AcceptAny2xx = tt.any2xx
			cfg.RequestTimeout = 300 * time.Millisecond
			h := start(t, cfg)
			file, sum := writeFile(t, t.TempDir(), 4<<20)
			job := Job{ID: "rec-1", File: file, ContentType: "video/webm", URL: rc.url("/bucket/rec-1.webm")}
			if err := h.q.Enqueue(job); err != nil {
				t.Fatal(err)
			}
			res := h.result(t)
			if res.OK != tt.ok || res.Attempts != tt.attempts || res.Status != tt.status {
				t.Fatalf("result ok=%v attempts=%d status=%d reason=%q, want ok=%v attempts=%d status=%d",
					res.OK, res.Attempts, res.Status, res.Reason, tt.ok, tt.attempts, tt.status)
			}
			if res.Job.ID != job.ID || res.Job.URL != job.URL {
				t.Errorf("result job = %+v", res.Job)
			}
			reqs := rc.requests()
			last := reqs[len(reqs)-1]
			if tt.ok {
				if last.sum != sum || last.n != 4<<20 {
					t.Errorf("received %d bytes, hash match %v", last.n, last.sum == sum)
				}
				if last.method != "PUT" || last.contentType != "video/webm" || last.contentLength != 4<<20 {
					t.Errorf("request %s type %q length %d", last.method, last.contentType, last.contentLength)
				}
				if res.Size != 4<<20 {
					t.Errorf("size = %d", res.Size)
				}
				if res.Reason != "" {
					t.Errorf("reason on success: %q", res.Reason)
				}
				h.stop()
				if exists(file) {
					t.Error("file not deleted after success")
				}
			} else {
				if res.Reason == "" {
					t.Error("no reason on failure")
				}
				h.stop()
				if !exists(file) {
					t.Error("file deleted after failure")
				}
				if r := readRecord(t, cfg.Dir, job.ID); r.State != stateFailed || !r.Acked {
					t.Errorf("record state %q acked %v", r.State, r.Acked)
				}
			}
			if len(reqs) != tt.attempts && !strings.HasPrefix(tt.script[0], "30") {
				t.Errorf("receiver saw %d requests, want %d", len(reqs), tt.attempts)
			}
			if l := h.logs.String(); strings.Contains(l, "topsecret") {
				t.Errorf("log leaks query:\n%s", l)
			}
			if strings.Contains(res.Reason, "topsecret") {
				t.Errorf("reason leaks query: %s", res.Reason)
			}
		})
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	for _, b := range []string{"429", "429date"} {
		t.Run(b, func(t *testing.T) {
			rc := newReceiver(t, b, "200")
			h := start(t, testConfig(t, t.TempDir()))
			file, _ := writeFile(t, t.TempDir(), 1000)
			if err := h.q.Enqueue(Job{ID: "r", File: file, URL: rc.url("/x")}); err != nil {
				t.Fatal(err)
			}
			res := h.result(t)
			if !res.OK || res.Attempts != 2 {
				t.Fatalf("result %+v", res)
			}
			reqs := rc.requests()
			// One second at least; an HTTP date has one-second resolution.
			if gap := reqs[1].at.Sub(reqs[0].at); gap < 900*time.Millisecond {
				t.Fatalf("retried after %v, Retry-After ignored", gap)
			}
		})
	}
}

func TestEmptyFile(t *testing.T) {
	rc := newReceiver(t, "200")
	h := start(t, testConfig(t, t.TempDir()))
	file, _ := writeFile(t, t.TempDir(), 0)
	if err := h.q.Enqueue(Job{ID: "empty", File: file, ContentType: "audio/ogg", URL: rc.url("/e")}); err != nil {
		t.Fatal(err)
	}
	if res := h.result(t); !res.OK {
		t.Fatalf("result %+v", res)
	}
	if r := rc.requests()[0]; r.contentLength != 0 || r.n != 0 {
		t.Fatalf("content length %d, body %d", r.contentLength, r.n)
	}
}

// fakeResolver answers from a table; each call to a name moves to its next
// answer (the last repeats), to play DNS rebinding.
type fakeResolver struct {
	mu    sync.Mutex
	hosts map[string][]string
	calls map[string]int
}

func (r *fakeResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a, ok := r.hosts[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	i := min(r.calls[host], len(a)-1)
	r.calls[host]++
	return []net.IPAddr{{IP: net.ParseIP(a[i])}}, nil
}

func TestGuard(t *testing.T) {
	rc := newReceiver(t, "200")
	_, port, _ := net.SplitHostPort(rc.srv.Listener.Addr().String())
	res := &fakeResolver{calls: map[string]int{}, hosts: map[string][]string{
		"rebind.example": {"93.184.216.34", "127.0.0.1"},
	}}
	cfg := testConfig(t, t.TempDir())
	cfg.Guard = netguard.New(netguard.Config{Resolver: res})
	h := start(t, cfg)
	file, _ := writeFile(t, t.TempDir(), 1000)

	for i, u := range []string{
		rc.url("/direct"), // 127.0.0.1
		"http://[::1]:" + port + "/x?sig=topsecret",
		"ftp://example.com/x",
		"https://user:pw@example.com/x",
	} {
		err := h.q.Enqueue(Job{ID: "bad-" + strconv.Itoa(i), File: file, URL: u})
		if !netguard.IsRefused(err) {
			t.Errorf("Enqueue(%s) = %v, want refusal", netguard.Redact(u), err)
		}
		if err != nil && strings.Contains(err.Error(), "topsecret") {
			t.Errorf("error leaks query: %v", err)
		}
	}
	// Public when enqueued, loopback when dialled: fails at once at dial.
	job := Job{ID: "rebind", File: file, URL: "http://rebind.example:" + port + "/x?sig=topsecret"}
	if err := h.q.Enqueue(job); err != nil {
		t.Fatal(err)
	}
	r := h.result(t)
	if r.OK || r.Attempts != 1 || !strings.Contains(r.Reason, "not allowed") {
		t.Fatalf("result %+v, want refusal at dial", r)
	}
	if len(rc.requests()) != 0 {
		t.Fatal("the loopback receiver was reached")
	}
	if strings.Contains(r.Reason, "topsecret") {
		t.Fatalf("reason leaks query: %s", r.Reason)
	}
	if !exists(file) {
		t.Fatal("file deleted after refusal")
	}
}

func TestEnqueueValidation(t *testing.T) {
	h := start(t, testConfig(t, t.TempDir()))
	file, _ := writeFile(t, t.TempDir(), 10)
	for name, job := range map[string]Job{
		"no id":         {File: file, URL: "http://127.0.0.1/x"},
		"relative file": {ID: "a", File: "rec.webm", URL: "http://127.0.0.1/x"},
		"no url":        {ID: "a", File: file},
		"missing file":  {ID: "a", File: file + ".nope", URL: "http://127.0.0.1/x"},
		"s3 no key":     {ID: "a", File: file, URL: "s3://bucket"},
	} {
		if err := h.q.Enqueue(job); err == nil {
			t.Errorf("%s: Enqueue accepted %+v", name, job)
		}
	}
	if err := h.q.Enqueue(Job{ID: "a", File: file, URL: "http://127.0.0.1/x"}); err != nil || errors.Is(err, netguard.ErrForbidden) {
		t.Errorf("valid job refused: %v", err)
	}
}
