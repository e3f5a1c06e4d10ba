package session_test

import (
	"testing"
	"time"

	"github.com/rtmrec/rtmrec/internal/testclient"
)

// TestClientHearsTheFeedbackItNeeds: a recorded client's connection only
// receives, and sends back the RTCP the client's sender uses: receiver
// reports always; NACKs for lost video packets and transport-wide
// congestion feedback when there is video. An audio-only session, which
// negotiates neither, gets neither (their loops never start).
func TestClientHearsTheFeedbackItNeeds(t *testing.T) {
	for _, tc := range []struct {
		name       string
		sources    []testclient.Source
		nack, twcc bool
	}{
		{"audio only", []testclient.Source{testclient.Tone}, false, false},
		{"audio and video with losses", []testclient.Source{testclient.Tone, testclient.Camera}, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			log := &testclient.FeedbackLog{DropVideoEvery: 20}
			api, err := testclient.NewAPIWithFeedbackLog(log)
			if err != nil {
				t.Fatal(err)
			}
			c := h.dial()
			h.startWith(c, api, "s1", tc.sources...)
			h.waitPackets("s1", len(tc.sources), 100)
			// Receiver reports go out every second, and echo the client's
			// Sender Reports (also one a second) from the next one on;
			// feedback comes sooner.
			echoed := func() bool {
				reports := log.Reports()
				for _, r := range reports {
					if r.LastSenderReport == 0 {
						return false
					}
				}
				return len(reports) == len(tc.sources)
			}
			deadline := time.Now().Add(10 * time.Second)
			for time.Now().Before(deadline) {
				if echoed() && (!tc.nack || log.Count("TransportLayerNack") > 0) && (!tc.twcc || log.Count("TransportLayerCC") > 0) {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if !echoed() {
				t.Errorf("want a receiver report on each of the %d streams, echoing a Sender Report; got %+v (%s)", len(tc.sources), log.Reports(), log)
			}
			// Only video loses packets (and they are dropped before the
			// client's NACK responder keeps them, so they stay lost).
			lossy := 0
			for _, r := range log.Reports() {
				if r.TotalLost > 0 {
					lossy++
				}
				if r.Delay > 2*65536 {
					t.Errorf("stream %d: %.1f s since the echoed Sender Report, want at most 2 s", r.SSRC, float64(r.Delay)/65536)
				}
			}
			if want := map[bool]int{false: 0, true: 1}[tc.nack]; lossy != want {
				t.Errorf("%d streams report losses, want %d: %+v", lossy, want, log.Reports())
			}
			if got := log.Count("TransportLayerNack") > 0; got != tc.nack {
				t.Errorf("NACKs received: %v, want %v (%s)", got, tc.nack, log)
			}
			if got := log.Count("TransportLayerCC") > 0; got != tc.twcc {
				t.Errorf("transport-wide feedback received: %v, want %v (%s)", got, tc.twcc, log)
			}
		})
	}
}
