package upload

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rtmrec/rtmrec/internal/netguard"
	"github.com/rtmrec/rtmrec/internal/wording"
)

// TestAttemptOutcomes: one attempt per receiver behaviour, and what it
// means: success only for 200 with the whole body (any 2xx if allowed),
// worth retrying for what may pass, a refusal for what will not.
func TestAttemptOutcomes(t *testing.T) {
	tests := []struct {
		name      string
		behaviour string
		any2xx    bool
		ok, retry bool
		status    int
		reason    string // a part of the reason; "" on success
	}{
		{"200", "200", false, true, false, 200, ""},
		{"201 is not 200", "201", false, false, false, 201, "HTTP 201 Created"},
		{"201 with AcceptAny2xx", "201", true, true, false, 201, ""},
		{"403 is a refusal", "403", false, false, false, 403, "HTTP 403 Forbidden"},
		{"404 is a refusal", "404", false, false, false, 404, "HTTP 404 Not Found"},
		{"500 may pass", "500", false, false, true, 500, "HTTP 500 Internal Server Error"},
		{"503 may pass", "503", false, false, true, 503, "HTTP 503"},
		{"connection reset", "reset", false, false, true, 0, "connection reset"},
		{"partial body then close", "partial", false, false, true, 0, "connection reset"},
		{"200 before the whole body", "partial200", false, false, true, 200, "HTTP 200 after"},
		{"slow answer times out", "slow", false, false, true, 0, "timed out"},
		{"stalled body times out", "stall", false, false, true, 0, "timed out"},
		{"307 is followed with the body", "307", false, true, false, 200, ""},
		{"301 would turn PUT into GET", "301", false, false, false, 301, "redirect not followed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := newReceiver(t, tt.behaviour, "200")
			u, logs := testUploader(t, func(c *Config) { c.AcceptAny2xx = tt.any2xx })
			file, sum := writeFile(t, t.TempDir(), 4<<20)
			out := put(u, Job{File: file, ContentType: "video/webm", URL: rc.url("/bucket/rec-1.webm")})
			if out.OK != tt.ok || out.Retry != tt.retry || out.Status != tt.status || !strings.Contains(out.Reason, tt.reason) {
				t.Fatalf("outcome %+v, want ok=%v retry=%v status=%d reason ~%q", out, tt.ok, tt.retry, tt.status, tt.reason)
			}
			reqs := rc.requests()
			last := reqs[len(reqs)-1]
			if tt.ok {
				if last.sum != sum || last.n != 4<<20 || out.Size != 4<<20 {
					t.Errorf("received %d bytes, hash match %v, size %d", last.n, last.sum == sum, out.Size)
				}
				if last.method != "PUT" || last.contentType != "video/webm" || last.contentLength != 4<<20 {
					t.Errorf("request %s type %q length %d", last.method, last.contentType, last.contentLength)
				}
				if out.Reason != "" {
					t.Errorf("reason on success: %q", out.Reason)
				}
			} else if tt.reason == "" {
				t.Error("no reason on failure")
			}
			if err := wording.Check(out.Reason); err != nil || strings.Contains(out.Reason, "topsecret") {
				t.Errorf("reason %q is not for a customer: %v", out.Reason, err)
			}
			if strings.Contains(logs.String(), "topsecret") {
				t.Errorf("log leaks the query:\n%s", logs)
			}
		})
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	for _, b := range []string{"429", "429date"} {
		t.Run(b, func(t *testing.T) {
			rc := newReceiver(t, b)
			u, _ := testUploader(t, nil)
			file, _ := writeFile(t, t.TempDir(), 1000)
			out := put(u, Job{File: file, URL: rc.url("/x")})
			if out.OK || !out.Retry || out.Status != 429 || out.RetryAfter < 900*time.Millisecond {
				t.Fatalf("outcome %+v, want a retry after about a second or more", out)
			}
		})
	}
}

func TestEmptyFile(t *testing.T) {
	rc := newReceiver(t, "200")
	u, _ := testUploader(t, nil)
	file, _ := writeFile(t, t.TempDir(), 0)
	if out := put(u, Job{File: file, ContentType: "audio/ogg", URL: rc.url("/e")}); !out.OK {
		t.Fatalf("outcome %+v", out)
	}
	if r := rc.requests()[0]; r.contentLength != 0 || r.n != 0 {
		t.Fatalf("content length %d, body %d", r.contentLength, r.n)
	}
}

func TestMissingFileIsARefusal(t *testing.T) {
	rc := newReceiver(t, "200")
	u, _ := testUploader(t, nil)
	file, _ := writeFile(t, t.TempDir(), 10)
	out := put(u, Job{File: file + ".gone", URL: rc.url("/x")})
	if out.OK || out.Retry || !strings.Contains(out.Reason, "missing") {
		t.Fatalf("outcome %+v, want a final failure naming the missing file", out)
	}
	if len(rc.requests()) != 0 {
		t.Fatal("the receiver was reached")
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

// TestGuardAtDial: a host that resolves to a loopback address when the
// upload dials is refused there (DNS rebinding), and a closed port is a
// network error worth retrying.
func TestGuardAtDial(t *testing.T) {
	rc := newReceiver(t, "200")
	_, port, _ := net.SplitHostPort(rc.srv.Listener.Addr().String())
	res := &fakeResolver{calls: map[string]int{}, hosts: map[string][]string{
		"rebind.example": {"127.0.0.1"},
	}}
	u, _ := testUploader(t, func(c *Config) { c.Guard = netguard.New(netguard.Config{Resolver: res}) })
	file, _ := writeFile(t, t.TempDir(), 1000)
	out := put(u, Job{File: file, URL: "http://rebind.example:" + port + "/x?sig=topsecret"})
	if out.OK || out.Retry || !strings.Contains(out.Reason, "not allowed") || strings.Contains(out.Reason, "topsecret") {
		t.Fatalf("outcome %+v, want a refusal at dial without the query", out)
	}
	if len(rc.requests()) != 0 {
		t.Fatal("the loopback receiver was reached")
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	open, _ := testUploader(t, nil)
	out = put(open, Job{File: file, URL: "http://" + closed + "/x"})
	if out.OK || !out.Retry || out.Reason != "connection refused" {
		t.Fatalf("outcome %+v, want a retry because the connection was refused", out)
	}
}
