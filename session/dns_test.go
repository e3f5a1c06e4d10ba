package session_test

import (
	"context"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rtmrec/rtmrec/internal/testclient"
	"github.com/rtmrec/rtmrec/rtm"
	"github.com/rtmrec/rtmrec/session"
)

// hangingDNS is a URL checker whose lookups of hang.example never answer
// until released (or the caller gives up); every other host resolves.
type hangingDNS struct {
	release chan struct{}
	once    sync.Once
	mu      sync.Mutex
	waiting int
}

func (d *hangingDNS) CheckURL(ctx context.Context, raw string, _ ...string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	if u.Hostname() == "hang.example" {
		d.mu.Lock()
		d.waiting++
		d.mu.Unlock()
		select {
		case <-d.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return u, nil
}

func (d *hangingDNS) hanging() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.waiting
}

// TestHangingDNSHoldsOnlyItsOwnSession: a webhook or upload URL whose DNS
// lookup hangs holds the session that gave it, and nothing else: other
// sessions on the same connection start, answer and record meanwhile.
func TestHangingDNSHoldsOnlyItsOwnSession(t *testing.T) {
	dns := &hangingDNS{release: make(chan struct{})}
	h := newHarness(t, func(_ *session.Config, d *session.Deps) { d.URLs = dns })
	t.Cleanup(func() { dns.once.Do(func() { close(dns.release) }) })
	c := h.dial()

	// Session "slow" waits for its webhook URL's DNS.
	api, err := testclient.NewAPI()
	if err != nil {
		t.Fatal(err)
	}
	slowPeer, err := testclient.NewPeer(api, testclient.Tone)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(slowPeer.Close)
	slowStarted := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go func() { slowStarted <- c.Start(ctx, slowPeer, "c", "slow", "https://hang.example/hook") }()
	waitHanging := func(n int) {
		// A ping a round trip proves the connection is served meanwhile;
		// paced, so as not to run into its message rate limit on a slow run.
		for dns.hanging() < n {
			_ = c.Send(rtm.TypePing, "c", "", nil)
			h.wait(c, testclient.Is(rtm.TypePong, ""))
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitHanging(1)

	// Meanwhile another session on the same connection starts and records;
	// a recording_start whose upload host hangs holds only that recording.
	h.start(c, "fast", testclient.Tone)
	h.waitPackets("fast", 1, 5)
	_ = c.Send(rtm.TypeRecordingStart, "c", "fast", rtm.RecordingStart{UploadURL: "https://uploads.example.com/a.ogg"})
	h.wait(c, testclient.IsRecording("fast", rtm.RecordingStarted))
	h.start(c, "other", testclient.Tone)
	h.waitPackets("other", 1, 5)
	_ = c.Send(rtm.TypeRecordingStart, "c", "other", rtm.RecordingStart{UploadURL: "https://hang.example/b.ogg"})
	waitHanging(2)
	_ = c.Send(rtm.TypeRecordingStop, "c", "fast", nil)
	h.wait(c, testclient.IsRecording("fast", rtm.RecordingStopped))
	for _, m := range c.Messages() {
		if m.SessionID == "slow" || (m.SessionID == "other" && m.Type == rtm.TypeRecordingState) {
			t.Fatalf("the hanging lookups were not waited for: %s %s", m.Type, m.Data)
		}
	}

	// The lookups answer: both waiting requests go on.
	dns.once.Do(func() { close(dns.release) })
	if err := <-slowStarted; err != nil {
		t.Fatal(err)
	}
	h.wait(c, testclient.IsState("slow", rtm.StateConnecting))
	h.wait(c, testclient.IsRecording("other", rtm.RecordingStarted))
	if !strings.HasPrefix(h.webhookStates("slow")[0], "CONNECTING") {
		t.Fatalf("slow session's webhook: %v", h.webhookStates("slow"))
	}
}
