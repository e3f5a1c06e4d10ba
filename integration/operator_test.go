package integration

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/rtmrec/rtmrec/internal/testclient"
)

func TestOperatorEndpoints(t *testing.T) {
	srv := runRTMRec(t, t.TempDir())
	if code, _ := srv.get("/healthz"); code != 200 {
		t.Fatalf("healthz = %d", code)
	}
	c := startCall(t, srv.wsURL(), "m1", "", nil, testclient.Tone)
	_ = c.c.SendRaw(websocket.TextMessage, []byte(`{"type":"nonsense"}`))
	// Wait until audio has arrived, so the counters have moved.
	var body string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		_, body = srv.get("/metrics")
		if metricValue(body, `rtmrec_rtp_packets_received_total{kind="audio"}`) > 0 {
			break
		}
	}
	if v := metricValue(body, `rtmrec_rtp_packets_received_total{kind="audio"}`); v <= 0 {
		t.Errorf("audio packets received = %v, want the call's packets counted", v)
	}
	for _, want := range []string{
		`rtmrec_sessions{state="CONNECTED"} 1`,
		`rtmrec_messages_received_total{type="session_start"} 1`,
		`rtmrec_websocket_connections 1`,
		`rtmrec_rtp_packets_received_total{kind="audio"}`,
		"go_goroutines", "process_cpu_seconds_total",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	c.wait(testclient.IsError("unknown_type"))
	if _, body = srv.get("/metrics"); !strings.Contains(body, `rtmrec_errors_sent_total{code="unknown_type"} 1`) {
		t.Error("errors by code not counted")
	}
}

func TestAdminListenKeepsMetricsOffThePublicPort(t *testing.T) {
	srv := runRTMRec(t, t.TempDir(), "-admin-listen", "127.0.0.1:0")
	if srv.admin == "" {
		t.Fatal("no admin address logged")
	}
	if code, _ := srv.get("/metrics"); code != 404 {
		t.Fatalf("/metrics on the public port = %d, want 404", code)
	}
	if code, body := srv.getFrom("http://"+srv.admin, "/metrics"); code != 200 || !strings.Contains(body, "rtmrec_sessions") {
		t.Fatalf("/metrics on the admin port = %d", code)
	}
	if code, _ := srv.getFrom("http://"+srv.admin, "/readyz"); code != 200 {
		t.Fatalf("/readyz on the admin port = %d", code)
	}
}

func TestPprofOnlyWhenAskedAndOnlyOnTheAdminListener(t *testing.T) {
	off := runRTMRec(t, t.TempDir(), "-admin-listen", "127.0.0.1:0")
	if code, _ := off.getFrom("http://"+off.admin, "/debug/pprof/goroutine"); code != 404 {
		t.Errorf("profiles without -pprof = %d, want 404", code)
	}
	on := runRTMRec(t, t.TempDir(), "-admin-listen", "127.0.0.1:0", "-pprof")
	if code, _ := on.get("/debug/pprof/goroutine"); code != 404 {
		t.Errorf("profiles on the public port = %d, want 404", code)
	}
	if code, body := on.getFrom("http://"+on.admin, "/debug/pprof/goroutine?debug=1"); code != 200 || !strings.Contains(body, "goroutine profile:") {
		t.Errorf("goroutine profile on the admin port = %d", code)
	}
	if code, body := on.getFrom("http://"+on.admin, "/debug/pprof/heap?gc=1"); code != 200 || len(body) == 0 {
		t.Errorf("heap profile on the admin port = %d, %d bytes", code, len(body))
	}
	if code, _ := on.getFrom("http://"+on.admin, "/debug/pprof/nosuch"); code != 404 {
		t.Errorf("an unknown profile = %d, want 404", code)
	}
}

// metricValue is the value of one series in a Prometheus text exposition
// (-1 when absent).
func metricValue(body, series string) float64 {
	for _, line := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}
