package session_test

// Benchmarks of session setup, per-session footprint and supervisor
// forwarding, against a real server on 127.0.0.1 with real pion clients in
// the same process. They report measurements (b.ReportMetric); they assert
// nothing about timing. Suggested runs on a small machine:
//
//	go test ./session -run '^$' -bench SessionSetup -benchtime 200x
//	go test ./session -run '^$' -bench SessionFootprint -benchtime 1x
//	go test ./session -run '^$' -bench SupervisorForwarding -benchtime 1x
//
// RTMREC_BENCH_SESSIONS sets the footprint's session count (default 20),
// RTMREC_BENCH_SUPERVISORS the supervisor counts (default 0,1,3,10), and
// RTMREC_BENCH_HEAPPROFILE=dir writes a heap profile per footprint case
// while its sessions are live.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rtmrec/rtmrec/internal/testclient"
	"github.com/rtmrec/rtmrec/rtm"
	"github.com/rtmrec/rtmrec/session"
)

// sideLabel marks the server's goroutines (pprof labels are inherited by
// the goroutines a goroutine starts), so that goroutines can be told apart
// from the clients' in one process.
const sideLabel = "rtmrec_side"

// benchRig is the harness for benchmarks: the same server as newHarness,
// which needs a *testing.T, started under a pprof label and torn down
// explicitly so that one benchmark iteration does not outlive itself.
type benchRig struct {
	tb      testing.TB
	srv     *session.Server
	url     string
	reg     *prometheus.Registry
	clients []*testclient.Client
	peers   []*testclient.Peer
	closers []func()
}

func newBenchRig(tb testing.TB) *benchRig { return newBenchRigWith(tb, nil) }

// newBenchRigWith is newBenchRig with the server's dependencies changed.
func newBenchRigWith(tb testing.TB, mutate func(*session.Deps)) *benchRig {
	tb.Helper()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	r := &benchRig{tb: tb, reg: prometheus.NewRegistry()}
	var hs *httptest.Server
	var wrtc *session.WebRTC
	var err error
	pprof.Do(context.Background(), pprof.Labels(sideLabel, "server"), func(context.Context) {
		wrtc, err = session.NewWebRTC(session.ICEConfig{DisconnectedTimeout: time.Second, FailedTimeout: 10 * time.Second}, log)
		if err != nil {
			return
		}
		deps := session.Deps{WebRTC: wrtc, Logger: log, Metrics: session.NewMetrics(r.reg)}
		if mutate != nil {
			mutate(&deps)
		}
		r.srv, err = session.New(session.Config{DataDir: tb.TempDir(), ConnectTimeout: 15 * time.Second, DisconnectTimeout: time.Second}, deps)
		if err != nil {
			return
		}
		mux := http.NewServeMux()
		mux.Handle("/rtm", r.srv)
		hs = httptest.NewServer(mux)
	})
	if err != nil {
		tb.Fatal(err)
	}
	r.url = "ws" + strings.TrimPrefix(hs.URL, "http") + "/rtm"
	r.closers = append(r.closers, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := errors.Join(r.srv.Shutdown(ctx), r.srv.CloseConnections(ctx)); err != nil {
			tb.Errorf("shutdown: %v", err)
		}
		hs.Close()
		_ = wrtc.Close()
	})
	return r
}

// close ends the clients, then the server.
func (r *benchRig) close() {
	for _, p := range r.peers {
		p.Close()
	}
	for _, c := range r.clients {
		c.Close()
	}
	for i := len(r.closers) - 1; i >= 0; i-- {
		r.closers[i]()
	}
	r.peers, r.clients, r.closers = nil, nil, nil
}

func (r *benchRig) dial() *testclient.Client {
	r.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := testclient.Dial(ctx, r.url, nil)
	if err != nil {
		r.tb.Fatal(err)
	}
	r.clients = append(r.clients, c)
	return c
}

// open starts a session and waits for CONNECTED; it returns the peer and
// the times from just before session_start to the applied answer and to
// CONNECTED. The peer is not streaming yet.
func (r *benchRig) open(c *testclient.Client, api *webrtc.API, id string, sources ...testclient.Source) (*testclient.Peer, time.Duration, time.Duration) {
	r.tb.Helper()
	p, err := testclient.NewPeer(api, sources...)
	if err != nil {
		r.tb.Fatal(err)
	}
	r.peers = append(r.peers, p)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	t0 := time.Now()
	if err := c.Start(ctx, p, "bench", id, ""); err != nil {
		r.tb.Fatalf("session %s: %v", id, err)
	}
	answer := time.Since(t0)
	if _, err := c.Wait(ctx, testclient.IsState(id, rtm.StateConnected)); err != nil {
		r.tb.Fatalf("session %s: %v", id, err)
	}
	return p, answer, time.Since(t0)
}

// join adds a supervisor and waits for CONNECTED.
func (r *benchRig) join(c *testclient.Client, w *testclient.Watcher, id, monitored string) {
	r.tb.Helper()
	r.closers = append(r.closers, w.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Join(ctx, w, "bench-sup", id, monitored); err != nil {
		r.tb.Fatalf("supervisor %s: %v", id, err)
	}
	if _, err := c.Wait(ctx, testclient.IsState(id, rtm.StateConnected)); err != nil {
		r.tb.Fatalf("supervisor %s: %v", id, err)
	}
}

// packets is the number of RTP packets the server received for a session,
// over all its tracks, and the number of its tracks.
func (r *benchRig) packets(id string) (uint64, int) {
	for _, s := range r.srv.Sessions() {
		if s.SessionID == id {
			var n uint64
			for _, t := range s.Tracks {
				n += t.Packets
			}
			return n, len(s.Tracks)
		}
	}
	return 0, 0
}

// waitMedia waits until every session has the tracks and some packets.
func (r *benchRig) waitMedia(tracks int, ids ...string) {
	r.tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for _, id := range ids {
		for {
			n, tr := r.packets(id)
			if tr >= tracks && n >= uint64(10*tracks) {
				break
			}
			if time.Now().After(deadline) {
				r.tb.Fatalf("session %s: %d tracks, %d packets", id, tr, n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// counter reads a counter of the server's registry.
func (r *benchRig) counter(name string) float64 { return gatherCounter(r.tb, r.reg, name) }

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// percentile by nearest rank, in milliseconds.
func percentile(samples []time.Duration, p float64) float64 {
	if len(samples) == 0 {
		return 0
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	i := max(0, min(int(p*float64(len(s))+0.999999)-1, len(s)-1))
	return ms(s[i])
}

// BenchmarkSessionSetup opens b.N sessions one after the other (8 per
// WebSocket) and reports session_start → answer and → CONNECTED, for an
// audio offer and for an audio+video one (pion's, which lists every codec
// pion knows). The sessions do not stream: CONNECTED needs ICE and DTLS,
// not media, and an idle server isolates the signalling and handshake cost.
//
// With RTMREC_BENCH_HANGING_DNS=1, each connection first starts a session
// whose webhook host's DNS lookup never answers: the measured sessions
// share its connection.
func BenchmarkSessionSetup(b *testing.B) {
	for _, tc := range []struct {
		name    string
		sources []testclient.Source
	}{
		{"audio", []testclient.Source{testclient.Tone}},
		{"audio+video", []testclient.Source{testclient.Tone, testclient.Camera}},
	} {
		b.Run(tc.name, func(b *testing.B) { benchmarkSessionSetup(b, tc.sources) })
	}
}

func benchmarkSessionSetup(b *testing.B, sources []testclient.Source) {
	hanging := os.Getenv("RTMREC_BENCH_HANGING_DNS") == "1"
	dns := &hangingDNS{release: make(chan struct{})}
	r := newBenchRigWith(b, func(d *session.Deps) {
		if hanging {
			d.URLs = dns
		}
	})
	defer r.close()
	defer close(dns.release)
	api, err := testclient.NewAPI()
	if err != nil {
		b.Fatal(err)
	}
	var answers, connects []time.Duration
	var c *testclient.Client
	start := time.Now()
	b.ResetTimer()
	for i := range b.N {
		if i%8 == 0 {
			// Closing the previous connection ends its sessions, so the
			// server holds at most 16 at a time.
			if c != nil {
				c.Close()
			}
			c = r.dial()
			if hanging {
				p, err := testclient.NewPeer(api, testclient.Tone)
				if err != nil {
					b.Fatal(err)
				}
				r.peers = append(r.peers, p)
				ctx, cancel := context.WithCancel(context.Background())
				r.closers = append(r.closers, cancel)
				go func(c *testclient.Client) {
					_ = c.Start(ctx, p, "c", fmt.Sprintf("hang-%d", i), "https://hang.example/hook")
				}(c)
				for dns.hanging() < i/8+1 {
					time.Sleep(time.Millisecond)
				}
			}
		}
		_, a, cn := r.open(c, api, fmt.Sprintf("setup-%d", i), sources...)
		answers, connects = append(answers, a), append(connects, cn)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(percentile(answers, 0.50), "answer-p50-ms")
	b.ReportMetric(percentile(answers, 0.99), "answer-p99-ms")
	b.ReportMetric(percentile(connects, 0.50), "connected-p50-ms")
	b.ReportMetric(percentile(connects, 0.99), "connected-p99-ms")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "sessions/s")
}

// footprint is the process's live heap and goroutines, and the goroutines
// of the server alone.
type footprint struct {
	heap             uint64
	goroutines       int
	serverGoroutines int
	serverByFunc     map[string]int
}

func measureFootprint() footprint {
	// Two cycles: the first may only finish a sweep in progress.
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	f := footprint{heap: m.HeapAlloc, goroutines: runtime.NumGoroutine(), serverByFunc: map[string]int{}}
	f.serverGoroutines = serverGoroutines(f.serverByFunc)
	return f
}

// serverGoroutines counts the goroutines labelled as the server's, by the
// function each was started with, from the goroutine profile.
func serverGoroutines(byFunc map[string]int) int {
	var buf bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&buf, 1)
	total := 0
	sc := bufio.NewScanner(&buf)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	n, server, last := 0, false, ""
	flush := func() {
		if server {
			total += n
			byFunc[last] += n
		}
		n, server, last = 0, false, ""
	}
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.Contains(line, " @ 0x"):
			flush()
			n, _ = strconv.Atoi(strings.Fields(line)[0])
		case strings.HasPrefix(line, "# labels:"):
			server = strings.Contains(line, `"`+sideLabel+`":"server"`)
		case strings.HasPrefix(line, "#\t0x"):
			// The last frame of a stack is the goroutine's start function.
			if f := strings.Fields(line); len(f) >= 3 {
				last = f[2]
			}
		}
	}
	flush()
	return total
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkSessionFootprint opens N connected, streaming sessions and
// reports the growth of the live heap and of the goroutines per session.
// Clients and server share the process: heap-KiB/session includes the
// client peers; server-goroutines/session counts only goroutines started
// under the server's pprof label.
func BenchmarkSessionFootprint(b *testing.B) {
	n := envInt("RTMREC_BENCH_SESSIONS", 20)
	for _, tc := range []struct {
		name    string
		sources []testclient.Source
	}{
		{"audio", []testclient.Source{testclient.Tone}},
		{"av", []testclient.Source{testclient.Tone, testclient.Camera}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for range b.N {
				footprintOnce(b, n, tc.name, tc.sources)
			}
		})
	}
}

func footprintOnce(b *testing.B, n int, name string, sources []testclient.Source) {
	if os.Getenv("RTMREC_BENCH_HEAPPROFILE") != "" {
		// The default rate samples one allocation per 512 KiB: too coarse
		// for a few MiB of sessions.
		defer func(rate int) { runtime.MemProfileRate = rate }(runtime.MemProfileRate)
		runtime.MemProfileRate = 1024
	}
	r := newBenchRig(b)
	defer r.close()
	api, err := testclient.NewAPI()
	if err != nil {
		b.Fatal(err)
	}
	// A first session warms pion's and the runtime's lazily built state
	// up, so that it is not charged to the measured ones.
	warm := r.dial()
	p, _, _ := r.open(warm, api, "warm", sources...)
	p.Stream(context.Background())
	r.waitMedia(len(sources), "warm")
	time.Sleep(time.Second)
	before := measureFootprint()

	var ids []string
	var c *testclient.Client
	for i := range n {
		if i%8 == 0 {
			c = r.dial()
		}
		id := fmt.Sprintf("fp-%s-%d", name, i)
		p, _, _ := r.open(c, api, id, sources...)
		p.Stream(context.Background())
		ids = append(ids, id)
	}
	r.waitMedia(len(sources), ids...)
	// Steady state: jitter and send buffers have grown to their size.
	time.Sleep(3 * time.Second)
	after := measureFootprint()
	if dir := os.Getenv("RTMREC_BENCH_HEAPPROFILE"); dir != "" {
		f, err := os.Create(filepath.Join(dir, "heap-"+name+".pprof"))
		if err == nil {
			_ = pprof.WriteHeapProfile(f)
			_ = f.Close()
		}
	}
	per := func(a, b int) float64 { return float64(a-b) / float64(n) }
	b.ReportMetric(float64(int64(after.heap)-int64(before.heap))/1024/float64(n), "heap-KiB/session")
	b.ReportMetric(per(after.goroutines, before.goroutines), "goroutines/session")
	b.ReportMetric(per(after.serverGoroutines, before.serverGoroutines), "server-goroutines/session")
	// Which server goroutines a session adds, for the log (-v).
	var lines []string
	for fn, k := range after.serverByFunc {
		if d := k - before.serverByFunc[fn]; d > 0 {
			lines = append(lines, fmt.Sprintf("%6.2f %s", float64(d)/float64(n), fn))
		}
	}
	slices.Sort(lines)
	slices.Reverse(lines)
	b.Logf("%s: server goroutines per session by start function:\n%s", name, strings.Join(lines, "\n"))
}

// supervisorBaseline is the CPU of the K=0 case, for the per-supervisor
// difference of the others (sub-benchmarks run in order).
var supervisorBaseline float64

// BenchmarkSupervisorForwarding monitors one audio+video session with K
// supervisors and reports, over a fixed window: client send → supervisor
// receive latency, the process's CPU (client and server share it, so the
// cost of a supervisor is the difference to K=0, divided by K: it includes
// the supervisor client's own receiving), and packets lost per supervisor
// (received by the server for the session minus received by the
// supervisor).
func BenchmarkSupervisorForwarding(b *testing.B) {
	ks := []int{0, 1, 3, 10}
	if v := os.Getenv("RTMREC_BENCH_SUPERVISORS"); v != "" {
		ks = nil
		for _, f := range strings.Split(v, ",") {
			if k, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && k >= 0 && k <= 64 {
				ks = append(ks, k)
			}
		}
	}
	for _, k := range ks {
		b.Run(fmt.Sprintf("supervisors=%d", k), func(b *testing.B) {
			for range b.N {
				forwardingOnce(b, k)
			}
		})
	}
}

const forwardingWindow = 5 * time.Second

func forwardingOnce(b *testing.B, k int) {
	r := newBenchRig(b)
	defer r.close()
	sent := testclient.NewSendLog()
	api, err := testclient.APIWithSendLog(sent)
	if err != nil {
		b.Fatal(err)
	}
	agent := r.dial()
	p, _, _ := r.open(agent, api, "call", testclient.Tone, testclient.Camera)
	p.Stream(context.Background())
	r.waitMedia(2, "call")

	watchAPI, err := testclient.NewAPI()
	if err != nil {
		b.Fatal(err)
	}
	var ws []*testclient.Watcher
	var boss *testclient.Client
	for i := range k {
		if i%8 == 0 {
			boss = r.dial()
		}
		w, err := testclient.NewWatcher(watchAPI, 1, 1)
		if err != nil {
			b.Fatal(err)
		}
		w.MeasureLatency(sent)
		r.join(boss, w, fmt.Sprintf("sup%d", i), "call")
		ws = append(ws, w)
	}
	// Video reaches a supervisor from the next keyframe on; measure after.
	deadline := time.Now().Add(10 * time.Second)
	for _, w := range ws {
		for {
			got, _ := w.Stats()
			if got["audio"] > 0 && got["video"] > 0 {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("supervisor got %v", got)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	time.Sleep(time.Second)

	rx := func() []int {
		out := make([]int, len(ws))
		for i, w := range ws {
			got, _ := w.Stats()
			out[i] = got["audio"] + got["video"]
		}
		return out
	}
	dropped0 := r.counter("rtmrec_supervisor_packets_dropped_total")
	srv0, _ := r.packets("call")
	rx0 := rx()
	cpu0 := processCPU()
	t0 := time.Now()
	time.Sleep(forwardingWindow)
	cpu := processCPU() - cpu0
	window := time.Since(t0)
	srv1, _ := r.packets("call")
	rx1 := rx()
	dropped := r.counter("rtmrec_supervisor_packets_dropped_total") - dropped0

	received := int(srv1 - srv0)
	var lost, worst int
	for i := range ws {
		l := max(0, received-(rx1[i]-rx0[i]))
		lost += l
		worst = max(worst, l)
	}
	var lat []time.Duration
	for _, w := range ws {
		lat = append(lat, w.Latencies()...)
	}
	cpuPerSec := ms(cpu) / window.Seconds() // ms of CPU per second
	b.ReportMetric(cpuPerSec, "cpu-ms/s")
	b.ReportMetric(float64(received)/window.Seconds(), "pkts/s")
	if k == 0 {
		supervisorBaseline = cpuPerSec
		return
	}
	b.ReportMetric(percentile(lat, 0.50), "latency-p50-ms")
	b.ReportMetric(percentile(lat, 0.99), "latency-p99-ms")
	if supervisorBaseline > 0 {
		b.ReportMetric((cpuPerSec-supervisorBaseline)/float64(k), "cpu-ms/s/supervisor")
	}
	b.ReportMetric(float64(lost)/float64(k), "lost-pkts/supervisor")
	b.ReportMetric(float64(worst), "lost-pkts-worst")
	b.ReportMetric(dropped, "dropped-pkts")
}

// processCPU is the process's user+system CPU time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestStalledSupervisorDoesNotSlowTheCall adds a supervisor that never
// reads its tracks next to a healthy one: the monitored session's packet
// rate and the healthy supervisor's must stay at least 80% of what they
// were without it. pion's send path does not block on a peer that stops
// reading (its packets are lost past pion's own buffers), so rtmrec's
// forwarder queue does not fill here; TestForwarderDropsWhenItsQueueIsFull
// covers the queue-full path itself.
func TestStalledSupervisorDoesNotSlowTheCall(t *testing.T) {
	if testing.Short() {
		t.Skip("streams for about ten seconds")
	}
	reg := prometheus.NewRegistry()
	h := newHarness(t, func(_ *session.Config, d *session.Deps) { d.Metrics = session.NewMetrics(reg) })
	agent := h.dial()
	h.start(agent, "call", testclient.Tone, testclient.Camera)
	h.waitPackets("call", 2, 10)
	boss := h.dial()
	healthy := h.watcher(boss, "sup-ok", "call", 1, 1)

	callPackets := func() int {
		n := 0
		for _, tr := range h.waitPackets("call", 2, 0) {
			n += int(tr.Packets)
		}
		return n
	}
	watcherPackets := func(w *testclient.Watcher) int {
		got, _ := w.Stats()
		return got["audio"] + got["video"]
	}
	// rates measures packets/s of the call and of the healthy supervisor.
	rates := func() (call, sup float64) {
		c0, s0, t0 := callPackets(), watcherPackets(healthy), time.Now()
		time.Sleep(3 * time.Second)
		d := time.Since(t0).Seconds()
		return float64(callPackets()-c0) / d, float64(watcherPackets(healthy)-s0) / d
	}
	// Wait for the healthy supervisor's video to start on a keyframe.
	deadline := time.Now().Add(10 * time.Second)
	for got, _ := healthy.Stats(); got["video"] == 0; got, _ = healthy.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("healthy supervisor got %v", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
	callBefore, supBefore := rates()

	api, err := testclient.NewAPI()
	if err != nil {
		t.Fatal(err)
	}
	stalled, err := testclient.NewStalledWatcher(api, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stalled.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := boss.Join(ctx, stalled, "sup-stalled", "sup-stalled", "call"); err != nil {
		t.Fatal(err)
	}
	h.wait(boss, testclient.IsState("sup-stalled", rtm.StateConnected))
	for _, tracks := stalled.Stats(); tracks < 2; _, tracks = stalled.Stats() {
		if ctx.Err() != nil {
			t.Fatalf("the stalled supervisor was offered %d tracks, want 2", tracks)
		}
		time.Sleep(50 * time.Millisecond)
	}
	callAfter, supAfter := rates()
	t.Logf("call %.1f → %.1f packets/s; healthy supervisor %.1f → %.1f packets/s",
		callBefore, callAfter, supBefore, supAfter)
	if callAfter < 0.8*callBefore {
		t.Errorf("the call's packet rate fell from %.1f/s to %.1f/s with a stalled supervisor", callBefore, callAfter)
	}
	if supAfter < 0.8*supBefore {
		t.Errorf("the healthy supervisor's rate fell from %.1f/s to %.1f/s with a stalled one", supBefore, supAfter)
	}
	if got, _ := stalled.Stats(); len(got) != 0 {
		t.Errorf("the stalled supervisor read %v", got)
	}
	// The call keeps going after the stalled supervisor leaves.
	if err := boss.Send(rtm.TypeSessionStop, "", "sup-stalled", nil); err != nil {
		t.Fatal(err)
	}
	h.terminated(boss, "sup-stalled")
	n0 := callPackets()
	time.Sleep(time.Second)
	if n := callPackets(); n <= n0 {
		t.Errorf("the call stopped receiving after the stalled supervisor left (%d → %d packets)", n0, n)
	}
}

// gatherCounter sums a counter's series in a registry.
func gatherCounter(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var v float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				v += m.GetCounter().GetValue()
			}
		}
	}
	return v
}
