package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/rtmrec/rtmrec/auth"
	"github.com/rtmrec/rtmrec/internal/compattest"
	"github.com/rtmrec/rtmrec/internal/ledger"
	"github.com/rtmrec/rtmrec/internal/testclient"
	"github.com/rtmrec/rtmrec/internal/testredis"
	"github.com/rtmrec/rtmrec/recorder"
	"github.com/rtmrec/rtmrec/rtm"
)

// The cluster tests run rtmrec nodes as processes sharing a real
// redis-server, each with its own HTTP port, ICE UDP port and data
// directory, all on 127.0.0.1. Nodes run with access control, so that
// tenants and the tokens carried between nodes are real.

// heartbeatExpiry is the cluster's default: a node silent this long is dead
// to the others.
const heartbeatExpiry = 5 * time.Second

// testCluster is a redis-server and the nodes using it.
type testCluster struct {
	t     *testing.T
	redis *testredis.Server
	nodes []*clusterNode
}

// clusterNode is one rtmrec process of a cluster.
type clusterNode struct {
	*rtmrecProcess
	id      string
	icePort int
}

// startCluster runs a redis-server and n nodes named n1..nN; extra gives
// node i (from 0) flags of its own. It returns once every node is ready.
func startCluster(t *testing.T, n int, opts testredis.Options, extra func(i int) []string) *testCluster {
	t.Helper()
	requireTool(t, "ffprobe", "checks that the cluster's recordings play")
	c := &testCluster{t: t, redis: testredis.Start(t, opts)}
	for i := range n {
		var more []string
		if extra != nil {
			more = extra(i)
		}
		c.nodes = append(c.nodes, c.startNode(fmt.Sprintf("n%d", i+1), t.TempDir(), more...))
	}
	c.waitFormed()
	return c
}

// waitFormed waits until every node is ready and sees all of the others
// (placement reads their heartbeats, one a second).
func (c *testCluster) waitFormed() {
	c.t.Helper()
	for _, n := range c.nodes {
		n.waitReady(true)
		deadline := time.Now().Add(15 * time.Second)
		for {
			_, body := n.get("/metrics")
			if metricValue(body, "rtmrec_cluster_nodes") == float64(len(c.nodes)) {
				break
			}
			if time.Now().After(deadline) {
				c.t.Fatalf("%s does not see the %d nodes of the cluster", n.id, len(c.nodes))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// startNode runs one node on dir with the cluster's common flags. Media is
// advertised on 127.0.0.1 and the node's own ICE UDP port.
func (c *testCluster) startNode(id, dir string, extra ...string) *clusterNode {
	c.t.Helper()
	port := freeUDPPort(c.t)
	args := append([]string{
		"-redis-url", c.redis.URL, "-node-id", id,
		"-ice-udp-port", strconv.Itoa(port), "-ice-loopback", "-public-ip", "127.0.0.1",
		"-auth-hs256-secret", jwtSecret, "-allow-private-urls",
	}, extra...)
	return &clusterNode{rtmrecProcess: runRTMRec(c.t, dir, args...), id: id, icePort: port}
}

// byPort names the node whose ICE port is port.
func (c *testCluster) byPort(port int) string {
	for _, n := range c.nodes {
		if n.icePort == port {
			return n.id
		}
	}
	return fmt.Sprintf("no node (port %d)", port)
}

func freeUDPPort(t *testing.T) int {
	t.Helper()
	l, err := net.ListenPacket("udp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.LocalAddr().(*net.UDPAddr).Port
}

// waitReady waits until /readyz answers 200 (ready) or 503 (not ready).
func (n *clusterNode) waitReady(ready bool) {
	n.t.Helper()
	want := http.StatusOK
	if !ready {
		want = http.StatusServiceUnavailable
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, body := n.get("/readyz")
		if code == want {
			return
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("%s: /readyz = %d %q, want %d", n.id, code, body, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// signal sends SIGTERM without waiting for the exit.
func (n *clusterNode) signal() {
	n.t.Helper()
	if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		n.t.Fatal(err)
	}
}

// waitExit waits for the process to end by itself and returns its code.
func (n *clusterNode) waitExit(timeout time.Duration) int {
	n.t.Helper()
	select {
	case <-n.exited:
		return n.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		n.t.Fatalf("%s did not exit within %v", n.id, timeout)
		return -1
	}
}

func agentOf(t *testing.T, tenant string) http.Header {
	return bearer(token(t, auth.Claims{Subject: "agent@" + tenant, Role: auth.RoleClient, Tenant: tenant}))
}

func supervisorOf(t *testing.T, tenant string) http.Header {
	return bearer(token(t, auth.Claims{Subject: "boss@" + tenant, Role: auth.RoleSupervisor, Tenant: tenant, Sessions: []string{"*"}}))
}

// remotePort is the port of the server's candidate in the peer
// connection's selected candidate pair: where its media comes from.
func remotePort(t *testing.T, pc *webrtc.PeerConnection) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, tr := range pc.GetTransceivers() {
			var dtls *webrtc.DTLSTransport
			if r := tr.Receiver(); r != nil && r.Transport() != nil {
				dtls = r.Transport()
			} else if s := tr.Sender(); s != nil && s.Transport() != nil {
				dtls = s.Transport()
			}
			if dtls == nil {
				continue
			}
			if pair, err := dtls.ICETransport().GetSelectedCandidatePair(); err == nil && pair != nil {
				return int(pair.Remote.Port)
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no selected candidate pair")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitFor waits for a message on c.
func waitFor(t *testing.T, c *testclient.Client, match func(rtm.Message) bool) rtm.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := c.Wait(ctx, match)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func terminationCause(m rtm.Message) rtm.Cause {
	return testclient.Data[rtm.SessionState](m).TerminationCause
}

// waitMedia waits until the watcher got at least min packets of each kind.
func waitMedia(t *testing.T, w *testclient.Watcher, min int, kinds ...string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		got, _ := w.Stats()
		ok := true
		for _, k := range kinds {
			ok = ok && got[k] >= min
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("supervisor received %v, want ≥%d of each of %v", got, min, kinds)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// journalManifests reads the recordings' manifests from a data directory
// whose process has exited: the durable journeys (package delivery) keep
// them, with the supervisors' visits, until the upload retention passes.
func journalManifests(t *testing.T, dir string) map[string]recorder.Manifest {
	t.Helper()
	l, err := ledger.Open(dir, ledger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	out := map[string]recorder.Manifest{}
	err = l.View(func(tx *ledger.Tx) error {
		b := tx.Bucket([]byte("recordings"))
		if b == nil {
			return fmt.Errorf("no recordings in the ledger of %s", dir)
		}
		return b.ForEach(func(k, v []byte) error {
			var j struct {
				Manifest recorder.Manifest `json:"manifest"`
			}
			if err := json.Unmarshal(v, &j); err != nil {
				return err
			}
			out[string(k)] = j.Manifest
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestClusterSessionIDs: ids are unique per tenant across the nodes, and
// free again when their session ends.
func TestClusterSessionIDs(t *testing.T) {
	c := startCluster(t, 3, testredis.Options{}, nil)
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	acme := agentOf(t, "acme")
	api, err := testclient.NewAPI()
	if err != nil {
		t.Fatal(err)
	}

	// The same id started on two nodes at once: exactly one is refused,
	// with session_exists.
	for round := range 4 {
		id := fmt.Sprintf("dup-%d", round)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, n := range []*clusterNode{n1, n2} {
			wg.Go(func() { _, _, errs[i] = start(t, api, n.wsURL(), id, "", acme, testclient.Tone) })
		}
		wg.Wait()
		refused := 0
		for _, err := range errs {
			switch {
			case err == nil:
			case strings.Contains(err.Error(), string(rtm.CodeSessionExists)):
				refused++
			default:
				t.Fatalf("%s: unexpected refusal: %v", id, err)
			}
		}
		if refused != 1 {
			t.Fatalf("%s started on two nodes at once: %d refused with session_exists, want exactly 1 (%v)", id, refused, errs)
		}
	}

	// The same id in two tenants: two sessions, on two nodes.
	call := startCall(t, n1.wsURL(), "call", "", acme, testclient.Tone)
	startCall(t, n2.wsURL(), "call", "", agentOf(t, "globex"), testclient.Tone)
	if err := tryStartCall(t, n3.wsURL(), "call", acme); err == nil || !strings.Contains(err.Error(), string(rtm.CodeSessionExists)) {
		t.Fatalf("acme's running id on a third node: %v, want session_exists", err)
	}

	// Ended, the id is free on any node.
	call.send(rtm.TypeSessionStop, nil)
	call.wait(testclient.IsState("call", rtm.StateTerminated))
	eventually(t, func() (struct{}, error) { return struct{}{}, tryStartCall(t, n3.wsURL(), "call", acme) })
}

// TestClusterSupervisorOnAnotherNode: an agent records on node 1; a
// supervisor connected to node 2 monitors the call. Node 1 serves the
// supervisor (its media comes from node 1's port, unchanged), a track the
// call gains later reaches it, the end of the call ends it, and the visit
// is in the recording's manifest on node 1.
func TestClusterSupervisorOnAnotherNode(t *testing.T) {
	c := startCluster(t, 3, testredis.Options{}, func(i int) []string {
		if i == 0 {
			return []string{"-upload-retention", "1h"} // the journey (and its manifest) stays
		}
		return nil
	})
	n1, n2 := c.nodes[0], c.nodes[1]
	target := newUploadTarget(t)

	sent := testclient.NewSendLog()
	api, err := testclient.APIWithSendLog(sent)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	agent, _, err := testclient.Dial(ctx, n1.wsURL(), agentOf(t, "acme"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(agent.Close)
	p, err := testclient.NewPeer(api, testclient.Tone, testclient.Camera)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	if err := agent.Start(ctx, p, "agent-7", "call", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, agent, testclient.IsState("call", rtm.StateConnected))
	p.Stream(context.Background())
	if port := remotePort(t, p.PC); port != n1.icePort {
		t.Fatalf("the agent's media goes to %s, want n1", c.byPort(port))
	}
	if err := agent.Send(rtm.TypeRecordingStart, "agent-7", "call", rtm.RecordingStart{UploadURL: target.url("/rec/call.webm")}); err != nil {
		t.Fatal(err)
	}
	started := testclient.Data[rtm.RecordingStateData](waitFor(t, agent, testclient.IsRecording("call", rtm.RecordingStarted)))

	boss, w := supervise(t, n2.wsURL(), supervisorOf(t, "acme"), "sup", "call")
	if port := remotePort(t, w.PC); port != n1.icePort {
		t.Fatalf("the supervisor's media comes from %s, want n1 (port %d)", c.byPort(port), n1.icePort)
	}
	waitMedia(t, w, 50, "audio", "video")
	if matched, total := w.Matches(sent); total == 0 || matched != total {
		t.Fatalf("%d of %d payloads the supervisor received match what the agent sent", matched, total)
	}

	// A screen share added mid-call reaches the supervisor through a server
	// offer relayed by node 2.
	if _, err := p.AddSource(testclient.Screen, "screen"); err != nil {
		t.Fatal(err)
	}
	if err := agent.Renegotiate(ctx, p, "agent-7", "call"); err != nil {
		t.Fatal(err)
	}
	p.StreamLast()
	deadline := time.Now().Add(15 * time.Second)
	for _, tracks := w.Stats(); tracks < 3; _, tracks = w.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("the supervisor has %d tracks after the screen share, want 3", tracks)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The end of the call ends the supervisor, as on one node.
	if err := agent.Send(rtm.TypeSessionStop, "agent-7", "call", nil); err != nil {
		t.Fatal(err)
	}
	if cause := terminationCause(waitFor(t, boss, testclient.IsState("sup", rtm.StateTerminated))); cause != rtm.CauseMonitoredSessionEnd {
		t.Fatalf("supervisor ended with %s, want %s", cause, rtm.CauseMonitoredSessionEnd)
	}
	waitFor(t, agent, testclient.IsRecording("call", rtm.RecordingStopped))
	ffprobe(t, target.wait("/rec/call.webm").File).wantCodecs(t, "audio/opus,video/vp8,video/vp8")

	// The visit is in node 1's manifest of the recording.
	if code := n1.terminate(30 * time.Second); code != 0 {
		t.Fatalf("n1 exited with %d", code)
	}
	m, ok := journalManifests(t, n1.dataDir)[started.RecordingID]
	if !ok {
		t.Fatalf("no journey of recording %s on n1", started.RecordingID)
	}
	if !slices.ContainsFunc(m.Audit, func(e recorder.AuditEvent) bool {
		return e.Kind == "supervisor_joined" && e.SessionID == "sup" && e.Identity == "boss@acme"
	}) {
		t.Fatalf("the supervisor's join is not in the manifest: %+v", m.Audit)
	}
}

// TestClusterSupervisorTokenRefresh: a supervisor on node 2 monitoring a
// call on node 1 refreshes its token on node 2; node 1, which ends the
// supervisor session at its token's expiry, gets the new token too.
func TestClusterSupervisorTokenRefresh(t *testing.T) {
	c := startCluster(t, 2, testredis.Options{}, func(int) []string { return []string{"-auth-leeway", leeway.String()} })
	n1, n2 := c.nodes[0], c.nodes[1]
	startCall(t, n1.wsURL(), "call", "", agentOf(t, "acme"), testclient.Tone)
	boss := auth.Claims{Subject: "boss@acme", Role: auth.RoleSupervisor, Tenant: "acme", Sessions: []string{"*"}}
	tok, until := shortToken(t, boss, 3*time.Second)
	sup, w := supervise(t, n2.wsURL(), bearer(tok), "sup", "call")

	fresh, _ := shortToken(t, boss, time.Hour)
	if m := refresh(t, sup, fresh); m.Type != rtm.TypeTokenRefreshed {
		t.Fatalf("token_refresh answered %s %s", m.Type, m.Data)
	}
	sleepUntil(until.Add(2 * time.Second))
	if terminatedIn(sup.Messages(), "sup") {
		t.Fatal("the supervisor ended at the old token's expiry on the node serving it, despite token_refresh")
	}
	before, _ := w.Stats()
	time.Sleep(500 * time.Millisecond)
	if after, _ := w.Stats(); after["audio"] <= before["audio"] {
		t.Fatal("the refreshed supervisor no longer receives audio")
	}
	for _, m := range sup.Messages() {
		if m.Type == rtm.TypeTokenRefreshed {
			t.Fatal("the client heard token_refreshed twice: node 1's answer was passed on")
		}
	}
}

// TestClusterAntMedia: the compatibility front ends use the cluster as
// /rtm does. An Ant Media player on node 2 plays a stream published on
// node 1, its media from node 1; a publish sent to node 1 once it is full
// is served and recorded by node 2, to the operator's upload template.
func TestClusterAntMedia(t *testing.T) {
	up := newUploadTarget(t)
	c := startCluster(t, 2, testredis.Options{}, func(i int) []string {
		args := []string{"-compat-upload-url", up.srv.URL + "/{tenant}/{stream}/{recording_id}.{ext}"}
		if i == 0 {
			args = append(args, "-soft-capacity", "1")
		}
		return args
	})
	n1, n2 := c.nodes[0], c.nodes[1]
	agent := token(t, auth.Claims{Subject: "agent@acme", Role: auth.RoleClient, Tenant: "acme"})
	boss := token(t, auth.Claims{Subject: "boss@acme", Role: auth.RoleSupervisor, Tenant: "acme", Sessions: []string{auth.AnySession}})

	publisher := compattest.MustDial(t, "ws://"+n1.addr+"/live/websocket")
	p1 := compattest.PublishAMS(t, publisher, "desk-1", map[string]any{"token": agent})
	if port := remotePort(t, p1.PC); port != n1.icePort {
		t.Fatalf("the first publish went to %s, want n1", c.byPort(port))
	}
	player := compattest.MustDial(t, "ws://"+n2.addr+"/live/websocket")
	w := compattest.PlayAMS(t, player, "desk-1", map[string]any{"token": boss})
	compattest.WaitPackets(t, w, "audio", "video")
	if port := remotePort(t, w.PC); port != n1.icePort {
		t.Fatalf("the player's media comes from %s, want n1", c.byPort(port))
	}

	p2 := compattest.PublishAMS(t, publisher, "desk-2", map[string]any{"token": agent})
	if port := remotePort(t, p2.PC); port != n2.icePort {
		t.Fatalf("a publish sent to a full n1 went to %s, want n2", c.byPort(port))
	}
	time.Sleep(1500 * time.Millisecond)
	for _, id := range []string{"desk-1", "desk-2"} {
		publisher.Send(map[string]any{"command": "stop", "streamId": id})
		publisher.Wait(compattest.AMS("notification", "publish_finished", id))
	}
	player.Wait(compattest.AMS("notification", "play_finished", "desk-1"))
	for _, id := range []string{"desk-1", "desk-2"} {
		deadline := time.Now().Add(30 * time.Second)
		for len(up.paths("/acme/"+id+"/")) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("no recording of %s was uploaded to the template's path", id)
			}
			time.Sleep(50 * time.Millisecond)
		}
		u, _ := up.get(up.paths("/acme/" + id + "/")[0])
		ffprobe(t, u.File).wantCodecs(t, "audio/opus,video/vp8")
	}
}

// TestClusterBalancing: a node at its soft capacity places a new session
// on another node, and only when no node has room is it server_busy.
func TestClusterBalancing(t *testing.T) {
	c := startCluster(t, 3, testredis.Options{}, func(int) []string { return []string{"-soft-capacity", "1"} })
	acme := agentOf(t, "acme")
	n1 := c.nodes[0]

	a := startCall(t, n1.wsURL(), "a", "", acme, testclient.Tone)
	if port := remotePort(t, a.p.PC); port != n1.icePort {
		t.Fatalf("n1 had room, yet the session went to %s", c.byPort(port))
	}
	b := startCall(t, n1.wsURL(), "b", "", acme, testclient.Tone)
	served := c.byPort(remotePort(t, b.p.PC))
	if served != "n2" && served != "n3" {
		t.Fatalf("n1 was full, yet the session went to %s", served)
	}
	// The relayed session answers to its client as a local one would.
	b.send(rtm.TypeSessionStop, nil)
	if cause := terminationCause(b.wait(testclient.IsState("b", rtm.StateTerminated))); cause != rtm.CauseClient {
		t.Fatalf("relayed session ended with %s", cause)
	}

	// Every node full: server_busy.
	startCall(t, c.nodes[1].wsURL(), "c2", "", acme, testclient.Tone)
	startCall(t, c.nodes[2].wsURL(), "c3", "", acme, testclient.Tone)
	// Placement reads the others' load from their heartbeats (one a
	// second): two of them make every node's view current.
	time.Sleep(2500 * time.Millisecond)
	if err := tryStartCall(t, n1.wsURL(), "d", acme); err == nil || !strings.Contains(err.Error(), string(rtm.CodeServerBusy)) {
		t.Fatalf("a start with every node full: %v, want server_busy", err)
	}
}

// TestClusterDrain: SIGTERM with -drain-timeout makes node 1 unready; new
// sessions sent to it are served elsewhere, while its recording goes on
// until the call ends, and is uploaded; then node 1 exits by itself. On
// node 2 the drain times out and its session ends as at a shutdown.
func TestClusterDrain(t *testing.T) {
	c := startCluster(t, 3, testredis.Options{}, func(i int) []string {
		switch i {
		case 0:
			return []string{"-drain-timeout", "60s"}
		case 1:
			return []string{"-drain-timeout", "1s"}
		}
		return nil
	})
	n1, n2 := c.nodes[0], c.nodes[1]
	target := newUploadTarget(t)
	hooks := newHookReceiver(t, "")
	acme := agentOf(t, "acme")

	call := startCall(t, n1.wsURL(), "call", hooks.url(), acme, testclient.Tone, testclient.Camera)
	call.record(target.url("/rec/drained.webm"), "")
	begin := time.Now()
	time.Sleep(1500 * time.Millisecond)

	n1.signal()
	n1.waitReady(false)
	during := startCall(t, n1.wsURL(), "during", "", acme, testclient.Tone)
	if served := c.byPort(remotePort(t, during.p.PC)); served == "n1" {
		t.Fatal("a draining node took a new session")
	}
	during.send(rtm.TypeSessionStop, nil)
	during.wait(testclient.IsState("during", rtm.StateTerminated))

	// The call and its recording go on through the drain.
	time.Sleep(1500 * time.Millisecond)
	select {
	case <-n1.exited:
		t.Fatalf("n1 exited while its call was running:\n%s", n1.log())
	default:
	}
	call.send(rtm.TypeSessionStop, nil)
	stopped := time.Now()
	if cause := terminationCause(call.wait(testclient.IsState("call", rtm.StateTerminated))); cause != rtm.CauseClient {
		t.Fatalf("the call ended with %s, want %s", cause, rtm.CauseClient)
	}
	if code := n1.waitExit(30 * time.Second); code != 0 {
		t.Fatalf("n1 exited with %d", code)
	}
	p := ffprobe(t, target.wait("/rec/drained.webm").File)
	if d, wall := p.duration(), stopped.Sub(begin).Seconds(); math.Abs(d-wall) > 0.6 {
		t.Fatalf("the recording lasts %.2f s, the call was recorded for %.2f s", d, wall)
	}
	hooks.waitFor("call", func(e hookEvent) bool { return e.Type == "recording_state" && e.state() == "STOPPED" })

	// A drain that times out ends what is left as a shutdown does.
	left := startCall(t, n2.wsURL(), "left", "", acme, testclient.Tone)
	n2.signal()
	if cause := terminationCause(left.wait(testclient.IsState("left", rtm.StateTerminated))); cause != rtm.CauseServerShutdown {
		t.Fatalf("a session left at the drain timeout ended with %s, want %s", cause, rtm.CauseServerShutdown)
	}
	if code := n2.waitExit(30 * time.Second); code != 0 {
		t.Fatalf("n2 exited with %d", code)
	}
}

// TestClusterNodeDeath: kill -9 of node 1. The supervisor it served
// through node 2 ends with TERM_BY_ERROR within the heartbeat expiry, the
// call's id is free, and `rtmrec recover` on node 1's data directory
// uploads its recording.
func TestClusterNodeDeath(t *testing.T) {
	c := startCluster(t, 3, testredis.Options{}, nil)
	n1, n2 := c.nodes[0], c.nodes[1]
	target := newUploadTarget(t)
	hooks := newHookReceiver(t, "")
	acme := agentOf(t, "acme")

	call := startCall(t, n1.wsURL(), "call", hooks.url(), acme, testclient.Tone, testclient.Camera)
	started := call.record(target.url("/rec/dead.webm"), "")
	recording := time.Now()
	boss, w := supervise(t, n2.wsURL(), supervisorOf(t, "acme"), "sup", "call")
	waitMedia(t, w, 20, "audio")
	// As in TestRecordingSurvivesAKill: the last second or so the
	// recorder had not written yet dies with the process.
	time.Sleep(time.Until(recording.Add(4 * time.Second)))

	n1.kill()
	died := time.Now()
	m := waitFor(t, boss, testclient.IsState("sup", rtm.StateTerminated))
	took := time.Since(died)
	t.Logf("node death → supervisor TERMINATED: %v", took.Round(time.Millisecond))
	if cause := terminationCause(m); cause != rtm.CauseError {
		t.Fatalf("supervisor ended with %s, want %s", cause, rtm.CauseError)
	}
	if took > heartbeatExpiry+2*time.Second {
		t.Fatalf("the supervisor ended %v after its node died; the heartbeat expiry is %v", took, heartbeatExpiry)
	}

	// The dead node's ids are free.
	startCall(t, n2.wsURL(), "call", "", acme, testclient.Tone)

	out, err := exec.Command(rtmrecBinary(t), "recover", "-data-dir", n1.dataDir, "-allow-private-urls").CombinedOutput()
	if err != nil {
		t.Fatalf("rtmrec recover: %v\n%s", err, out)
	}
	p := ffprobe(t, target.wait("/rec/dead.webm").File)
	if p.codecs() != "audio/opus,video/vp8" || p.duration() < 2.5 {
		t.Fatalf("recovered file: %s, %.2f s", p.codecs(), p.duration())
	}
	events := hooks.waitFor("call", func(e hookEvent) bool { return e.Type == "recording_state" && e.state() == "STOPPED" })
	want := []string{"session_state:CONNECTING", "session_state:CONNECTED", "recording_state:STARTED", "session_state:TERMINATED/TERM_BY_ERROR", "recording_state:STOPPED"}
	if got := states(events); !slices.Equal(got, want) {
		t.Fatalf("webhooks = %v, want %v", got, want)
	}
	if id := testclient.Data[rtm.RecordingStateData](rtm.Message{Data: events[len(events)-1].Data}).RecordingID; id != started.RecordingID {
		t.Fatalf("STOPPED for %s, want %s", id, started.RecordingID)
	}
}

// TestClusterRedisOutage: redis-server killed (without persistence, so it
// comes back empty) and restarted while two nodes record. Running sessions
// and recordings go on untouched; while Redis is away new sessions get
// server_busy and /readyz 503; when it is back the nodes register again and
// claim their running sessions again, and new sessions work.
func TestClusterRedisOutage(t *testing.T) {
	c := startCluster(t, 3, testredis.Options{}, nil)
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	target := newUploadTarget(t)
	acme := agentOf(t, "acme")

	calls := []*call{
		startCall(t, n1.wsURL(), "r1", "", acme, testclient.Tone, testclient.Camera),
		startCall(t, n2.wsURL(), "r2", "", acme, testclient.Tone),
	}
	begin := time.Now()
	calls[0].record(target.url("/rec/r1.webm"), "")
	calls[1].record(target.url("/rec/r2.ogg"), "")
	time.Sleep(time.Second)

	c.redis.Kill()
	if err := tryStartCall(t, n1.wsURL(), "new", acme); err == nil || !strings.Contains(err.Error(), string(rtm.CodeServerBusy)) {
		t.Fatalf("a new session without Redis: %v, want server_busy", err)
	}
	for _, n := range c.nodes {
		n.waitReady(false)
	}
	c.redis.Restart()
	c.waitFormed()
	// Redis came back empty: n1 has claimed its running session again.
	if err := tryStartCall(t, n3.wsURL(), "r1", acme); err == nil || !strings.Contains(err.Error(), string(rtm.CodeSessionExists)) {
		t.Fatalf("r1 started again elsewhere after the outage: %v, want session_exists", err)
	}
	startCall(t, n3.wsURL(), "after", "", acme, testclient.Tone)

	for _, cl := range calls {
		cl.send(rtm.TypeRecordingStop, nil)
	}
	stopped := time.Now()
	wall := stopped.Sub(begin).Seconds()
	for i, path := range []string{"/rec/r1.webm", "/rec/r2.ogg"} {
		calls[i].wait(testclient.IsRecording(calls[i].id, rtm.RecordingStopped))
		p := ffprobe(t, target.wait(path).File)
		// Recording began just after begin; stopped a moment after stopped.
		if d := p.duration(); d < wall-1 || d > wall+0.5 {
			t.Fatalf("%s lasts %.2f s, recorded for about %.2f s across the outage", path, d, wall)
		}
	}
}

// TestClusterJoinLatency measures what a cross-node supervisor join costs
// over a same-node one (RTMREC_MEASURE_CLUSTER=1; it asserts nothing).
// Each join is timed from supervisor_join_session to the answer and to
// CONNECTED.
func TestClusterJoinLatency(t *testing.T) {
	if os.Getenv("RTMREC_MEASURE_CLUSTER") != "1" {
		t.Skip("a measurement: set RTMREC_MEASURE_CLUSTER=1 to run it")
	}
	joins := 40
	if v, err := strconv.Atoi(os.Getenv("RTMREC_MEASURE_JOINS")); err == nil && v > 0 {
		joins = v
	}
	c := startCluster(t, 2, testredis.Options{}, nil)
	startCall(t, c.nodes[0].wsURL(), "call", "", agentOf(t, "acme"), testclient.Tone, testclient.Camera)
	h := supervisorOf(t, "acme")
	// Each join comes on a connection of its own, as from a supervisor's
	// browser tab: one connection's message rate would otherwise pace the
	// loop.
	measure := func(n *clusterNode) (answer, connected []time.Duration) {
		api, err := testclient.NewAPI()
		if err != nil {
			t.Fatal(err)
		}
		for i := range joins {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			cl, _, err := testclient.Dial(ctx, n.wsURL(), h)
			if err != nil {
				t.Fatal(err)
			}
			w, err := testclient.NewWatcher(api, 1, 1)
			if err != nil {
				t.Fatal(err)
			}
			id := fmt.Sprintf("%s-sup-%d", n.id, i)
			begin := time.Now()
			if err := cl.Join(ctx, w, "boss", id, "call"); err != nil {
				t.Fatal(err)
			}
			answer = append(answer, time.Since(begin))
			if _, err := cl.Wait(ctx, testclient.IsState(id, rtm.StateConnected)); err != nil {
				t.Fatal(err)
			}
			connected = append(connected, time.Since(begin))
			_ = cl.Send(rtm.TypeSessionStop, "boss", id, nil)
			if _, err := cl.Wait(ctx, testclient.IsState(id, rtm.StateTerminated)); err != nil {
				t.Fatal(err)
			}
			w.Close()
			cl.Close()
			cancel()
		}
		return answer, connected
	}
	pct := func(d []time.Duration, p int) time.Duration {
		s := slices.Clone(d)
		slices.Sort(s)
		return s[min(len(s)-1, len(s)*p/100)].Round(10 * time.Microsecond)
	}
	for _, run := range []struct {
		name string
		node *clusterNode
	}{{"same node", c.nodes[0]}, {"cross node", c.nodes[1]}} {
		ans, conn := measure(run.node)
		t.Logf("%s: %d joins; join → answer p50 %v p99 %v; join → CONNECTED p50 %v p99 %v",
			run.name, joins, pct(ans, 50), pct(ans, 99), pct(conn, 50), pct(conn, 99))
	}
}
