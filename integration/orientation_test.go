package integration

import (
	"context"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/rtmrec/rtmrec/internal/testclient"
	"github.com/rtmrec/rtmrec/rtm"
)

// TestOrientationReachesSupervisorAndRecording: a phone-like sender that
// negotiated CVO and says "turn 90° clockwise" reaches a pion supervisor
// with the extension intact under the id the supervisor negotiated (not
// the client's), and the recording carries the rotation (ffprobe's display
// matrix).
func TestOrientationReachesSupervisorAndRecording(t *testing.T) {
	target := newUploadTarget(t)
	srv := runRTMRec(t, t.TempDir(), "-allow-private-urls")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	phone, err := testclient.NewAPIWithOrientation(90)
	if err != nil {
		t.Fatal(err)
	}
	call := startCallWith(t, phone, srv.wsURL(), "call", "", nil, testclient.Tone, testclient.Camera)
	call.record(target.url("/rec/phone.webm"), "webm")

	sc, _, err := testclient.Dial(ctx, srv.wsURL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sc.Close)
	supervisorAPI, err := testclient.NewAPIWithExtensionsFirst(testclient.VideoOrientation)
	if err != nil {
		t.Fatal(err)
	}
	w, err := testclient.NewWatcher(supervisorAPI, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	if err := sc.Join(ctx, w, "boss", "sup", "call"); err != nil {
		t.Fatal(err)
	}

	clientID := videoExtensionID(call.p.PC, testclient.VideoOrientation, true)
	supervisorID := videoExtensionID(w.PC, testclient.VideoOrientation, false)
	if clientID == 0 || supervisorID == 0 || clientID == supervisorID {
		t.Fatalf("CVO id %d with the client, %d with the supervisor: the test needs two different negotiated ids", clientID, supervisorID)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		rotations, foreign := w.Orientation()
		if foreign != 0 {
			t.Fatalf("%d packets reached the supervisor with extension ids it never negotiated", foreign)
		}
		if rotations[90] >= 30 {
			if len(rotations) != 1 {
				t.Fatalf("rotations seen by the supervisor: %v, want only 90", rotations)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the supervisor saw rotations %v, want 90° on the frames' last packets", rotations)
		}
		time.Sleep(100 * time.Millisecond)
	}

	time.Sleep(2 * time.Second)
	call.send(rtm.TypeRecordingStop, nil)
	call.wait(testclient.IsRecording("call", rtm.RecordingStopped))
	pr := ffprobe(t, target.wait("/rec/phone.webm").File)
	if got := pr.rotation(); got != -90 {
		t.Fatalf("the recording's display rotation is %v°, want -90 (90° clockwise)", got)
	}
}

// videoExtensionID is the id pc negotiated for uri on its video sender (or
// receiver), 0 if none.
func videoExtensionID(pc *webrtc.PeerConnection, uri string, sender bool) int {
	for _, tr := range pc.GetTransceivers() {
		if tr.Kind() != webrtc.RTPCodecTypeVideo {
			continue
		}
		var exts []webrtc.RTPHeaderExtensionParameter
		switch {
		case sender && tr.Sender() != nil:
			exts = tr.Sender().GetParameters().HeaderExtensions
		case !sender && tr.Receiver() != nil:
			exts = tr.Receiver().GetParameters().HeaderExtensions
		}
		for _, e := range exts {
			if e.URI == uri {
				return e.ID
			}
		}
	}
	return 0
}
