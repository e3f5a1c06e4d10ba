package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rtmrec/rtmrec/delivery"
	"github.com/rtmrec/rtmrec/internal/testclient"
	"github.com/rtmrec/rtmrec/internal/testrecording"
	"github.com/rtmrec/rtmrec/recorder"
	"github.com/rtmrec/rtmrec/rtm"
	"github.com/rtmrec/rtmrec/session"
)

// instantJourneys reports every finished recording STOPPED at once, as a
// journey with a local uploader would after its 200.
type instantJourneys struct {
	srv    func() *session.Server
	mu     sync.Mutex
	routes map[string]delivery.Route
}

func (d *instantJourneys) Begin(r delivery.Route, m *recorder.Manifest, announce func(rtm.Message)) error {
	d.mu.Lock()
	d.routes[m.RecordingID] = r
	d.mu.Unlock()
	msg, err := rtm.NewMessage(rtm.TypeRecordingState, r.ClientID, r.SessionID, rtm.RecordingStateData{RecordingID: m.RecordingID, State: rtm.RecordingStarted, Format: string(m.Format)})
	announce(msg)
	return err
}

func (d *instantJourneys) Paused(string, bool, []recorder.PauseSpan, func(rtm.Message)) {}
func (d *instantJourneys) Audit(string, recorder.AuditEvent)                            {}

func (d *instantJourneys) Finish(id string, m *recorder.Manifest, _ error) error {
	d.mu.Lock()
	r := d.routes[id]
	d.mu.Unlock()
	dur, size := m.DurationMS, m.SizeBytes
	msg, err := rtm.NewMessage(rtm.TypeRecordingState, r.ClientID, r.SessionID, rtm.RecordingStateData{RecordingID: id, State: rtm.RecordingStopped, Format: string(m.Format), DurationMS: &dur, SizeBytes: &size})
	d.srv().Announce(id, msg)
	return err
}

// startServer runs a real session server on 127.0.0.1 (the pattern of
// session/harness_test.go) and returns its /rtm and /metrics URLs.
func startServer(t *testing.T) (rtmURL, metricsURL string) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	wrtc, err := session.NewWebRTC(session.ICEConfig{DisconnectedTimeout: time.Second, FailedTimeout: 10 * time.Second}, log)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector())
	var srv *session.Server
	srv, err = session.New(session.Config{DataDir: t.TempDir(), ConnectTimeout: 5 * time.Second, DisconnectTimeout: time.Second},
		session.Deps{WebRTC: wrtc, Logger: log, Metrics: session.NewMetrics(reg), Journeys: &instantJourneys{srv: func() *session.Server { return srv }, routes: map[string]delivery.Route{}}})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/rtm", srv)
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	hs := httptest.NewServer(mux)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := errors.Join(srv.Shutdown(ctx), srv.CloseConnections(ctx)); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		hs.Close()
		_ = wrtc.Close()
	})
	base := strings.TrimPrefix(hs.URL, "http")
	return "ws" + base + "/rtm", hs.URL + "/metrics"
}

func TestRunAgainstARealServer(t *testing.T) {
	if testing.Short() {
		t.Skip("streams media for several seconds")
	}
	rtmURL, metricsURL := startServer(t)
	tests := []struct {
		name string
		cfg  config
	}{
		{"audio recorded, probed", config{Sessions: 3, Media: "audio", Record: true, ProbeEvery: 200 * time.Millisecond}},
		{"av supervised", config{Sessions: 1, Media: "av", Supervisors: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			// The server runs in this process: its resident memory is the
			// test's, but it is read as rtmload reads a server's.
			cfg.URLs, cfg.MetricsURL, cfg.ServerPID = []string{rtmURL}, metricsURL, os.Getpid()
			cfg.Concurrency, cfg.PerConn, cfg.Duration = 3, 8, 2*time.Second
			cfg.SetupTimeout, cfg.StopTimeout = 15*time.Second, 20*time.Second
			if cfg.Record {
				cfg.CPUProfile = filepath.Join(t.TempDir(), "rtmload.pprof")
			}
			if err := cfg.validate(); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			sum, err := run(ctx, cfg, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			printHuman(&b, sum)
			t.Log("\n" + b.String())
			if sum.OK != cfg.Sessions || sum.Failed != 0 {
				t.Fatalf("ok=%d failed=%d errors=%v", sum.OK, sum.Failed, sum.Errors)
			}
			if sum.AnswerMS.N != cfg.Sessions || sum.AnswerMS.P50 <= 0 || sum.ConnectedMS.P50 < sum.AnswerMS.P50 {
				t.Fatalf("answer %+v, connected %+v", sum.AnswerMS, sum.ConnectedMS)
			}
			if sum.PacerMaxLagMS <= 0 {
				t.Fatalf("pacer lag %v ms: not measured", sum.PacerMaxLagMS)
			}
			if sum.GeneratorCores <= 0 {
				t.Fatalf("rtmload's own CPU %v cores: not measured", sum.GeneratorCores)
			}
			if m := sum.Machine; runtime.GOOS == "linux" {
				// Every CPU-second of the hold is in one column or another
				// (to the precision of the kernel's 10 ms ticks).
				total := m.Process + m.Softirq + m.Steal + m.Idle
				if m.CPUs == 0 || total < 0.75*float64(m.CPUs) || total > 1.25*float64(m.CPUs) || m.Process <= 0 {
					t.Fatalf("machine %+v: %.2f cores accounted of %d", m, total, m.CPUs)
				}
			}
			if cfg.CPUProfile != "" {
				// A pprof profile is gzipped protobuf.
				if b, err := os.ReadFile(cfg.CPUProfile); err != nil || len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
					t.Fatalf("rtmload's CPU profile: %d bytes, %v", len(b), err)
				}
			}
			if cfg.Record && (sum.Recording == nil || sum.Recording.Started != cfg.Sessions || sum.Recording.Stopped != cfg.Sessions) {
				t.Fatalf("recording %+v, want %d started and STOPPED", sum.Recording, cfg.Sessions)
			}
			if cfg.Supervisors > 0 {
				sv := sum.Supervisors
				if sv == nil || sv.Joined != cfg.Supervisors || sv.LatencyMS.N == 0 || len(sv.Each) != cfg.Supervisors {
					t.Fatalf("supervisors %+v", sv)
				}
				for _, e := range sv.Each {
					if e.Sent == 0 || e.Received == 0 {
						t.Fatalf("supervisor %+v saw nothing", e)
					}
				}
			}
			if sv := sum.Server; sv == nil || sv.GoroutinesBefore == 0 || sv.RTPReceivedDelta == 0 || sv.RSSPeak <= 0 || sv.RSSPerSessionKiB <= 0 || sv.CPUPerSessionMinute <= 0 {
				t.Fatalf("server probe %+v", sum.Server)
			}
			// Every session, supervisor and probe is a setup the server timed.
			if st := sum.Server.Setup; st == nil || st.N < float64(cfg.Sessions*(1+cfg.Supervisors)) || st.P50MS <= 0 {
				t.Fatalf("server setup %+v", st)
			}
			if cfg.ProbeEvery > 0 {
				// A 2 s hold fits several probes; the server timed each (and
				// perhaps one the hold's end cut off before CONNECTED).
				p := sum.Probes
				if p == nil {
					t.Fatal("no probe summary")
				}
				if p.OK < 3 || p.Failed != 0 || p.AnswerMS.N != p.OK || p.ConnectedMS.P50 < p.AnswerMS.P50 ||
					p.Server == nil || p.Server.N < float64(p.OK) || p.Server.N > float64(p.OK+1) {
					t.Fatalf("probes %+v, server %+v", p, p.Server)
				}
			}
		})
	}
}

func TestRefusedSessionsAreCountedByCode(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a server")
	}
	rtmURL, _ := startServer(t)
	// Two runs with the same ids: the second one's sessions already exist
	// while the first holds them.
	cfg := config{URLs: []string{rtmURL}, Sessions: 2, Media: "audio", Concurrency: 2, PerConn: 8, Duration: 3 * time.Second,
		SetupTimeout: 10 * time.Second, StopTimeout: 10 * time.Second, RunID: "dup"}
	first := make(chan *summary, 1)
	go func() {
		s, _ := run(context.Background(), cfg, slog.New(slog.DiscardHandler))
		first <- s
	}()
	time.Sleep(1500 * time.Millisecond)
	second := cfg
	second.Duration = 0
	sum, err := run(context.Background(), second, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if got := sum.Errors[string(rtm.CodeSessionExists)]; got != 2 || sum.OK != 0 {
		t.Fatalf("second run: ok=%d errors=%v, want 2 × %s", sum.OK, sum.Errors, rtm.CodeSessionExists)
	}
	if s := <-first; s == nil || s.OK != 2 {
		t.Fatalf("first run: %+v", s)
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{fmt.Errorf("server refused: %s", `{"code":"server_busy","message":"full"}`), "server_busy"},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), "timeout_answer"},
		{testclient.ErrClosed, "ws_closed_answer"},
		{terminatedError(rtm.CauseConnectTimeout), "terminated:" + string(rtm.CauseConnectTimeout)},
		{fmt.Errorf("%w: %w", &httpError{401}, errors.New("bad handshake")), "http_401"},
		{errors.New("other"), "error_answer"},
	}
	for _, tt := range tests {
		if got := classify(tt.err, "answer"); got != tt.want {
			t.Errorf("classify(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

func TestNewDist(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var out []time.Duration
		for _, x := range v {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	tests := []struct {
		in   []time.Duration
		want dist
	}{
		{nil, dist{}},
		{ms(5), dist{N: 1, P50: 5, P90: 5, P99: 5, Max: 5}},
		{ms(10, 1, 9, 2, 8, 3, 7, 4, 6, 5), dist{N: 10, P50: 5, P90: 9, P99: 10, Max: 10}},
	}
	for _, tt := range tests {
		if got := newDist(tt.in); got != tt.want {
			t.Errorf("newDist(%v) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestParseMetrics(t *testing.T) {
	in := `# HELP go_goroutines x
# TYPE go_goroutines gauge
go_goroutines 42
rtmrec_rtp_packets_received_total{kind="audio"} 10
rtmrec_rtp_packets_received_total{kind="video",x="a b}"} 5
go_gc_duration_seconds_count 3 1700000000
`
	m, err := parseMetrics(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]float64{"go_goroutines": 42, "rtmrec_rtp_packets_received_total": 15, "go_gc_duration_seconds_count": 3} {
		if m[name] != want {
			t.Errorf("%s = %v, want %v", name, m[name], want)
		}
	}
}

func TestParseRSS(t *testing.T) {
	tests := []struct {
		status string
		want   float64
		ok     bool
	}{
		{"Name:\trtmrec\nVmPeak:\t  900 kB\nVmRSS:\t  123456 kB\nRssAnon:\t 100 kB\n", 123456 * 1024, true},
		{"Name:\trtmrec\n", 0, false},
		{"VmRSS:\t12 MB\n", 0, false},
	}
	for _, tt := range tests {
		got, err := parseRSS(tt.status)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseRSS(%q) = %v, %v; want %v", tt.status, got, err, tt.want)
		}
	}
	if rss, err := procRSS(os.Getpid()); err != nil || rss < 1<<20 {
		t.Errorf("own RSS = %v, %v", rss, err)
	}
}

// TestVerifyFilesTellsAPlayableFileFromABrokenOne decodes a real Ogg
// recording and the same file with its middle overwritten.
func TestVerifyFilesTellsAPlayableFileFromABrokenOne(t *testing.T) {
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		if os.Getenv("RTMREC_REQUIRE_TOOLS") == "1" {
			t.Fatal("ffmpeg not installed: run scripts/install-tools.sh")
		}
		t.Skip("ffmpeg not installed (decodes the files): run scripts/install-tools.sh")
	}
	dir := t.TempDir()
	m := testrecording.Record(t, dir, testrecording.Options{ID: "good", Format: recorder.FormatOgg, Length: 3 * time.Second})
	b, err := os.ReadFile(m.Path)
	if err != nil {
		t.Fatal(err)
	}
	for i := len(b) / 3; i < len(b)/3+200; i++ {
		b[i] ^= 0x5a
	}
	broken := filepath.Join(dir, "broken.ogg")
	if err := os.WriteFile(broken, b, 0o600); err != nil {
		t.Fatal(err)
	}
	keep := t.TempDir()
	valid, invalid := verifyFiles(context.Background(), ffmpeg, []string{m.Path, broken}, 2, keep)
	if valid != 1 || len(invalid) != 1 || !strings.HasPrefix(invalid[0], "broken.ogg: ") {
		t.Fatalf("valid %d, invalid %q; want the good file valid and broken.ogg not", valid, invalid)
	}
	// The file that does not decode is kept, byte for byte, for whoever looks into it.
	kept, err := os.ReadFile(filepath.Join(keep, "undecodable-broken.ogg"))
	if err != nil || !bytes.Equal(kept, b) {
		t.Fatalf("undecodable file not kept as it was (err %v, %d bytes of %d)", err, len(kept), len(b))
	}
	if entries, _ := os.ReadDir(keep); len(entries) != 1 {
		t.Errorf("kept %d files, want only the undecodable one", len(entries))
	}
}

func TestFlags(t *testing.T) {
	tests := []struct {
		args []string
		ok   bool
	}{
		{[]string{"-sessions", "3", "-media", "av", "-duration", "2s"}, true},
		{[]string{"-media", "video"}, false},
		{[]string{"-sessions", "0"}, false},
		{[]string{"-url", "http://x/rtm"}, false},
		{[]string{"-url", "ws://a/rtm,ws://b/rtm", "-url", "wss://c/rtm"}, true},
		{[]string{"-url", "ws://a/rtm,http://b/rtm"}, false},
		{[]string{"-supervisors", "1000"}, false},
		{[]string{"extra"}, false},
		{[]string{"-record", "-verify-files"}, true},
		{[]string{"-verify-files"}, false},
		{[]string{"-record", "-verify-files", "-upload-url", "http://store/"}, false},
	}
	for _, tt := range tests {
		_, err := parseFlags(tt.args, io.Discard)
		if (err == nil) != tt.ok {
			t.Errorf("parseFlags(%v): %v", tt.args, err)
		}
	}
	c, err := parseFlags([]string{"-url", "ws://a/rtm, ws://b/rtm", "-url", "ws://c/rtm"}, io.Discard)
	if err != nil || strings.Join(c.URLs, " ") != "ws://a/rtm ws://b/rtm ws://c/rtm" {
		t.Errorf("URLs = %q, %v", c.URLs, err)
	}
	if d, _ := parseFlags(nil, io.Discard); len(d.URLs) != 1 || d.URLs[0] != "ws://127.0.0.1:8080/rtm" {
		t.Errorf("default URLs = %q", d.URLs)
	}
}

func TestHelp(t *testing.T) {
	var out strings.Builder
	if _, err := parseFlags([]string{"-h"}, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("parseFlags(-h): %v, want flag.ErrHelp", err)
	}
	for _, want := range []string{"Usage: rtmload [flags]", "Examples:", "rtmload -url ws://", "  -sessions int", "  -record"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("rtmload -h does not say %q:\n%s", want, out.String())
		}
	}
}

// TestServerSetupFromHistogram: the server's setup histogram, scraped before
// and after, gives the run's own setups: quantiles interpolated within
// buckets and the share within 50 ms.
func TestServerSetupFromHistogram(t *testing.T) {
	exposition := func(counts ...int) string {
		var b strings.Builder
		for i, le := range []string{"0.01", "0.05", "0.1", "+Inf"} {
			// Two roles; their buckets add up.
			fmt.Fprintf(&b, "rtmrec_session_setup_seconds_bucket{role=\"client\",le=\"%s\"} %d\n", le, counts[i])
			fmt.Fprintf(&b, "rtmrec_session_setup_seconds_bucket{role=\"supervisor\",le=\"%s\"} 0\n", le)
		}
		return b.String()
	}
	parse := func(s string) map[float64]float64 {
		m, err := parseMetrics(strings.NewReader(s))
		if err != nil {
			t.Fatal(err)
		}
		return buckets(m, setupMetric)
	}
	tests := []struct {
		name          string
		before, after []int
		want          *histSummary
	}{
		{"nothing observed", []int{1, 2, 3, 3}, []int{1, 2, 3, 3}, nil},
		// 100 setups: 50 under 10 ms, 40 more under 50 ms, 10 under 100 ms.
		{"spread", []int{0, 0, 0, 0}, []int{50, 90, 100, 100}, &histSummary{N: 100, P50MS: 10, P99MS: 95, Within50MS: 0.9}},
		// Setups of an earlier run are left out.
		{"after an earlier run", []int{100, 100, 100, 100}, []int{150, 190, 200, 200}, &histSummary{N: 100, P50MS: 10, P99MS: 95, Within50MS: 0.9}},
		// Beyond the last bound, the bound is all a histogram can say.
		{"beyond the buckets", []int{0, 0, 0, 0}, []int{0, 0, 0, 10}, &histSummary{N: 10, P50MS: 100, P99MS: 100}},
	}
	for _, tt := range tests {
		got := summarise(parse(exposition(tt.before...)), parse(exposition(tt.after...)))
		if (got == nil) != (tt.want == nil) || got != nil && (got.N != tt.want.N || math.Abs(got.P50MS-tt.want.P50MS) > 1e-9 || math.Abs(got.P99MS-tt.want.P99MS) > 1e-9 || got.Within50MS != tt.want.Within50MS) {
			t.Errorf("%s: %+v, want %+v", tt.name, got, tt.want)
		}
	}
}
