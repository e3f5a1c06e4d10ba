package integration

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rtmrec/rtmrec/auth"
	"github.com/rtmrec/rtmrec/internal/compattest"
	"github.com/rtmrec/rtmrec/internal/testclient"
	"github.com/rtmrec/rtmrec/rtm"
)

// Ant Media and WCS clients of the real binary, with access control on:
// their tokens come in the protocol; their publishes are recorded to the
// operator's template and reported to the operator's webhook exactly as
// /rtm sessions are; an RTM supervisor monitors an Ant Media publish, and
// an Ant Media player an RTM call.
func TestCompatEndpointsRecordAndMonitorAcrossProtocols(t *testing.T) {
	up := newUploadTarget(t)
	hooks := newHookReceiver(t, "")
	srv := runRTMRec(t, t.TempDir(), "-auth-hs256-secret", jwtSecret, "-allow-private-urls",
		"-compat-upload-url", up.srv.URL+"/{tenant}/{stream}/{recording_id}.{ext}",
		"-compat-webhook-url", hooks.url())
	agent := token(t, auth.Claims{Subject: "agent@acme", Role: auth.RoleClient, Tenant: "acme"})
	boss := token(t, auth.Claims{Subject: "boss@acme", Role: auth.RoleSupervisor, Tenant: "acme", Sessions: []string{auth.AnySession}})
	base := "ws://" + srv.addr

	// A bad token on the request is refused before the upgrade; none is
	// fine, since the protocol may bring one.
	for _, path := range []string{"/live/websocket", "/wcs"} {
		if _, resp, err := compattest.Dial(t, base+path+"?access_token=forged", nil); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%s with a bad access_token: %v, want HTTP 401", path, err)
		}
	}

	// An Ant Media publish, its token in publish: recorded from
	// publish_started.
	ams := compattest.MustDial(t, base+"/live/websocket?target=origin")
	compattest.PublishAMS(t, ams, "desk-1", map[string]any{"token": agent})

	// An RTM supervisor monitors it.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rtmBoss, _, err := testclient.Dial(ctx, srv.wsURL(), bearer(boss))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rtmBoss.Close)
	w := compattest.NewWatcher(t, 1, 1)
	if err := rtmBoss.Join(ctx, w, "boss", "sup-1", "desk-1"); err != nil {
		t.Fatal(err)
	}
	compattest.WaitPackets(t, w, "audio", "video")

	// An RTM call, monitored by an Ant Media player whose token is in play.
	startCall(t, srv.wsURL(), "rtm-1", "", bearer(agent), testclient.Tone, testclient.Camera)
	player := compattest.MustDial(t, base+"/live/websocket?target=edge")
	compattest.WaitPackets(t, compattest.PlayAMS(t, player, "rtm-1", map[string]any{"token": boss}), "audio", "video")

	// WCS publishes, the token in connection's custom: recorded when they
	// ask to be.
	wcs := compattest.MustDial(t, base+"/wcs")
	compattest.ConnectWCS(t, wcs, agent)
	recorded := compattest.PublishWCS(t, wcs, "m-2", "desk-2", true)
	if name, _ := recorded["recordName"].(string); !strings.HasSuffix(name, ".webm") {
		t.Errorf("PUBLISHING recordName %q, want the recording's id and format", name)
	}
	if ev := compattest.PublishWCS(t, wcs, "m-3", "desk-3", false); ev["recordName"] != nil {
		t.Errorf("an unrecorded publish has a recordName: %v", ev)
	}

	time.Sleep(2 * time.Second)
	ams.Send(map[string]any{"command": "stop", "streamId": "desk-1"})
	ams.Wait(compattest.AMS("notification", "publish_finished", "desk-1"))
	for _, id := range []string{"m-2", "m-3"} {
		compattest.SendWCS(wcs, "unPublishStream", map[string]any{"mediaSessionId": id})
		wcs.Wait(compattest.WCSStatus(id, "UNPUBLISHED"))
	}

	for _, tt := range []struct{ stream, client string }{{"desk-1", "antmedia"}, {"desk-2", "wcs"}} {
		events := hooks.waitFor(tt.stream, func(h hookEvent) bool { return h.Type == "recording_state" && h.state() == "STOPPED" })
		want := []string{"session_state:CONNECTING", "session_state:CONNECTED", "recording_state:STARTED", "session_state:TERMINATED/TERM_BY_CLIENT", "recording_state:STOPPED"}
		if got := states(events); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("webhooks of %s: %v, want %v", tt.stream, got, want)
		}
		var rec struct {
			ID     string `json:"recording_id"`
			Format string `json:"format"`
		}
		for _, e := range events {
			if e.Identity != "agent@acme" || e.ClientID != tt.client {
				t.Errorf("webhook of %s: identity %q, client_id %q; want agent@acme and %s", tt.stream, e.Identity, e.ClientID, tt.client)
			}
			if e.Type == "recording_state" {
				_ = json.Unmarshal(e.Data, &rec)
			}
		}
		u := up.wait("/acme/" + tt.stream + "/" + rec.ID + "." + rec.Format)
		p := ffprobe(t, u.File)
		p.wantCodecs(t, "audio/opus,video/vp8")
		if p.duration() < 1.5 {
			t.Errorf("%s: recording of %.2f s", tt.stream, p.duration())
		}
	}
	// What was not asked to be recorded was not.
	if got := up.paths("/acme/desk-3/"); len(got) != 0 {
		t.Errorf("uploads of the unrecorded publish: %v", got)
	}
	// The RTM supervisor of the Ant Media publish ended with it.
	m, err := rtmBoss.Wait(ctx, testclient.IsState("sup-1", rtm.StateTerminated))
	if err != nil {
		t.Fatal(err)
	}
	if cause := testclient.Data[rtm.SessionState](m).TerminationCause; cause != rtm.CauseMonitoredSessionEnd {
		t.Errorf("the RTM supervisor ended %s, want %s", cause, rtm.CauseMonitoredSessionEnd)
	}
}
