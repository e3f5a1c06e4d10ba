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
			// Receiver reports go out every second; feedback sooner.
			deadline := time.Now().Add(10 * time.Second)
			for time.Now().Before(deadline) {
				if log.Count("ReceiverReport") > 0 && (!tc.nack || log.Count("TransportLayerNack") > 0) && (!tc.twcc || log.Count("TransportLayerCC") > 0) {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if log.Count("ReceiverReport") == 0 {
				t.Errorf("no receiver report; received %s", log)
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
