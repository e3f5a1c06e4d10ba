package session_test

import (
	"bytes"
	"runtime/pprof"
	"testing"

	"github.com/rtmrec/rtmrec/internal/testclient"
)

// TestAudioNeedsNoReaderGoroutine: a recorded client's audio track, on
// which no interceptor works, is taken as pion decrypts it, with no reader
// goroutine of its own; its video track keeps a reader, because the NACK
// and congestion-feedback interceptors work as it is read. Both get their
// packets (the feedback and recording tests check what is done with them).
func TestAudioNeedsNoReaderGoroutine(t *testing.T) {
	for _, tc := range []struct {
		name    string
		sources []testclient.Source
		readers int
	}{
		{"audio", []testclient.Source{testclient.Tone}, 0},
		{"audio and video", []testclient.Source{testclient.Tone, testclient.Camera}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.start(h.dial(), "s1", tc.sources...)
			h.waitPackets("s1", len(tc.sources), 100)
			var dump bytes.Buffer
			if err := pprof.Lookup("goroutine").WriteTo(&dump, 2); err != nil {
				t.Fatal(err)
			}
			if got := bytes.Count(dump.Bytes(), []byte("session.(*Session).readRTP(")); got != tc.readers {
				t.Errorf("%d track reader goroutines, want %d", got, tc.readers)
			}
		})
	}
}
