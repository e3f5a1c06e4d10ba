package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/rtmrec/rtmrec/internal/testclient"
	"github.com/rtmrec/rtmrec/rtm"
)

// config is what one run does.
type config struct {
	URLs         []string
	Sessions     int
	Concurrency  int
	Duration     time.Duration
	Media        string
	Record       bool
	UploadURL    string
	Supervisors  int
	Token        string
	PerConn      int
	SetupTimeout time.Duration
	StopTimeout  time.Duration
	MetricsURL   string
	ServerPID    int
	RunID        string
	VerifyFiles  bool
	ProfileDir   string
	// ProbeEvery, if set, starts one more session that often during the
	// hold, one at a time, and stops it once CONNECTED: the setup a new
	// call meets on a server already carrying every session.
	ProbeEvery time.Duration
	// CPUProfile, if set, is where rtmload writes its own CPU profile of
	// the hold: what the generator spends its share of the machine on.
	CPUProfile string
}

// Bounds that keep a mistyped flag from tying up the machine.
const (
	maxSessions    = 2000
	maxSupervisors = 100
	maxDuration    = time.Hour
)

func (c *config) validate() error {
	var errs []error
	if len(c.URLs) == 0 {
		errs = append(errs, errors.New("-url is required"))
	}
	for _, u := range c.URLs {
		if !strings.HasPrefix(u, "ws://") && !strings.HasPrefix(u, "wss://") {
			errs = append(errs, fmt.Errorf("-url %q: want ws:// or wss://", u))
		}
	}
	if c.Sessions < 1 || c.Sessions > maxSessions {
		errs = append(errs, fmt.Errorf("-sessions must be 1..%d", maxSessions))
	}
	if c.Supervisors < 0 || c.Supervisors > maxSupervisors {
		errs = append(errs, fmt.Errorf("-supervisors must be 0..%d", maxSupervisors))
	}
	if c.Duration < 0 || c.Duration > maxDuration {
		errs = append(errs, fmt.Errorf("-duration must be 0..%s", maxDuration))
	}
	if c.Media != "audio" && c.Media != "av" {
		errs = append(errs, fmt.Errorf("-media %q: want audio or av", c.Media))
	}
	if c.PerConn < 1 || c.PerConn > 16 {
		errs = append(errs, errors.New("-sessions-per-conn must be 1..16"))
	}
	if c.Concurrency < 1 {
		errs = append(errs, errors.New("-concurrency must be at least 1"))
	}
	if c.VerifyFiles && (!c.Record || c.UploadURL != "") {
		errs = append(errs, errors.New("-verify-files needs -record and rtmload's own upload sink (no -upload-url)"))
	}
	if c.ProfileDir != "" && !strings.HasSuffix(c.MetricsURL, "/metrics") {
		errs = append(errs, errors.New("-profile-dir needs -metrics-url ending in /metrics: the profiles are read beside it, from a server run with -pprof"))
	}
	if c.ProbeEvery < 0 || c.ProbeEvery > 0 && c.ProbeEvery < 10*time.Millisecond {
		errs = append(errs, errors.New("-probe-every must be 0 (off) or at least 10ms"))
	}
	if c.SetupTimeout <= 0 || c.StopTimeout <= 0 {
		errs = append(errs, errors.New("timeouts must be positive"))
	}
	return errors.Join(errs...)
}

// summary is the run's result, printed as JSON.
type summary struct {
	RunID        string         `json:"run_id"`
	Media        string         `json:"media"`
	Sessions     int            `json:"sessions"`
	Concurrency  int            `json:"concurrency"`
	OK           int            `json:"ok"`
	Failed       int            `json:"failed"`
	Errors       map[string]int `json:"errors,omitempty"`
	AnswerMS     dist           `json:"answer_ms"`
	ConnectedMS  dist           `json:"connected_ms"`
	SetupSeconds float64        `json:"setup_seconds"`
	SetupRate    float64        `json:"setup_rate_per_s"`
	Recording    *recSummary    `json:"recording,omitempty"`
	Supervisors  *supSummary    `json:"supervisors,omitempty"`
	Probes       *probeSummary  `json:"probes,omitempty"`
	// PacerMaxLagMS is the most a sample went out past its time during the
	// hold. Beyond a tick or two, rtmload fell behind for want of CPU and
	// sent its backlog in bursts no browser sends: the run then measures
	// an overloaded client, not the server.
	PacerMaxLagMS float64 `json:"pacer_max_lag_ms"`
	// GeneratorCores is rtmload's own CPU time during the hold, per second
	// of it: on a machine it shares with the server, what the server could
	// not have.
	GeneratorCores float64 `json:"generator_cpu_cores"`
	// Machine is how rtmload's machine spent the hold (Linux only).
	Machine *machineCPU    `json:"machine,omitempty"`
	Server  *serverSummary `json:"server,omitempty"`
}

// probeSummary is what the -probe-every sessions met: setups on a server
// carrying every other session, one at a time.
type probeSummary struct {
	Every       string         `json:"every"`
	OK          int            `json:"ok"`
	Failed      int            `json:"failed"`
	Errors      map[string]int `json:"errors,omitempty"`
	AnswerMS    dist           `json:"answer_ms"`
	ConnectedMS dist           `json:"connected_ms"`
	// Server is the server's own timing of the same setups (request to
	// answer sent), from its histogram over the hold.
	Server *histSummary `json:"server_setup,omitempty"`
}

type recSummary struct {
	Started         int   `json:"started"`
	Stopped         int   `json:"stopped"`
	Failed          int   `json:"failed"`
	UploadsReceived int   `json:"uploads_received"`
	UploadBytes     int64 `json:"upload_bytes"`
	// With -verify-files: the uploads ffmpeg decoded cleanly, and the
	// others with the first error of each.
	FilesValid   int      `json:"files_valid,omitempty"`
	FilesInvalid []string `json:"files_invalid,omitempty"`
}

type supSummary struct {
	PerSession    int       `json:"per_session"`
	Joined        int       `json:"joined"`
	Failed        int       `json:"failed"`
	JoinMS        dist      `json:"join_ms"`
	LatencyMS     dist      `json:"latency_ms"`
	WindowSeconds float64   `json:"window_seconds"`
	Lossless      int       `json:"lossless"`
	WorstLossPct  float64   `json:"worst_loss_pct"`
	Each          []supStat `json:"each"`
}

// supStat compares what a monitored client sent during the hold window
// with what one of its supervisors received in it.
type supStat struct {
	Session    string  `json:"session"`
	Supervisor string  `json:"supervisor"`
	Sent       int64   `json:"sent"`
	Received   int64   `json:"received"`
	LossPct    float64 `json:"loss_pct"`
}

// dist is a latency distribution in milliseconds.
type dist struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// newDist summarises samples by nearest rank.
func newDist(samples []time.Duration) dist {
	if len(samples) == 0 {
		return dist{}
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	at := func(p float64) float64 {
		i := int(p*float64(len(s))+0.999999) - 1
		i = max(0, min(i, len(s)-1))
		return float64(s[i]) / float64(time.Millisecond)
	}
	return dist{N: len(s), P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: float64(s[len(s)-1]) / float64(time.Millisecond)}
}

// session is one client session and what happened to it.
type loadSession struct {
	id     string
	conn   *testclient.Client
	peer   *testclient.Peer
	sent   *sentCounter // RTP packets the client wrote (supervised sessions)
	log    *testclient.SendLog
	answer time.Duration
	conned time.Duration
	start  time.Time
	ready  time.Time
	err    string // error class; empty while the session is fine
	sups   []*supervisor
}

type supervisor struct {
	id      string
	conn    *testclient.Client
	w       *testclient.Watcher
	join    time.Duration
	err     string
	startRx int64
}

// run opens the sessions, holds them for cfg.Duration, stops them and
// returns what it measured. The error is for the run itself (bad
// configuration, no server); failed sessions are counted in the summary.
func run(ctx context.Context, cfg config, log *slog.Logger) (*summary, error) {
	if cfg.RunID == "" {
		var b [4]byte
		_, _ = rand.Read(b[:])
		cfg.RunID = "load-" + hex.EncodeToString(b[:])
	}
	sum := &summary{RunID: cfg.RunID, Media: cfg.Media, Sessions: cfg.Sessions, Concurrency: cfg.Concurrency, Errors: map[string]int{}}

	var sink *uploadSink
	var ffmpeg string
	if cfg.Record && cfg.UploadURL == "" {
		dir := ""
		if cfg.VerifyFiles {
			var err error
			if ffmpeg, err = exec.LookPath("ffmpeg"); err != nil {
				return nil, fmt.Errorf("-verify-files: %w", err)
			}
			if dir, err = os.MkdirTemp("", "rtmload-uploads-"); err != nil {
				return nil, fmt.Errorf("-verify-files: %w", err)
			}
			defer os.RemoveAll(dir)
		}
		var err error
		if sink, err = startSink(dir); err != nil {
			return nil, fmt.Errorf("upload sink: %w", err)
		}
		defer sink.close()
		cfg.UploadURL = sink.url + "/" + cfg.RunID + "/"
	}
	probe := newServerProbe(cfg.MetricsURL, cfg.ServerPID)
	if err := probe.before(ctx); err != nil {
		return nil, fmt.Errorf("server probe: %w", err)
	}

	header := http.Header{}
	if cfg.Token != "" {
		header.Set("Authorization", "Bearer "+cfg.Token)
	}
	pool := &connPool{urls: cfg.URLs, header: header, perConn: cfg.PerConn, log: log}
	defer pool.closeAll()
	// Every session's media goes out from a few goroutines on a 10 ms
	// tick: a goroutine and a timer per track would cost the generator more
	// CPU than the server it measures, on the same machine.
	pacerCtx, stopPacer := context.WithCancel(context.Background())
	pacer := testclient.NewPacer(pacerCtx, runtime.GOMAXPROCS(0), 10*time.Millisecond)
	defer pacer.Wait()
	defer stopPacer()

	sources := []testclient.Source{testclient.Tone}
	if cfg.Media == "av" {
		sources = append(sources, testclient.Camera)
	}
	shared, err := generatorAPI(cfg.Media == "av")
	if err != nil {
		return nil, fmt.Errorf("pion api: %w", err)
	}

	// Phase 1: set up every session, cfg.Concurrency at a time.
	sessions := make([]*loadSession, cfg.Sessions)
	for i := range sessions {
		sessions[i] = &loadSession{id: fmt.Sprintf("%s-%04d", cfg.RunID, i)}
	}
	defer func() {
		for _, s := range sessions {
			for _, sv := range s.sups {
				if sv.w != nil {
					sv.w.Close()
				}
			}
			if s.peer != nil {
				s.peer.Close()
			}
		}
	}()
	log.Info("setting up sessions", "n", cfg.Sessions, "media", cfg.Media, "concurrency", cfg.Concurrency)
	forEach(cfg.Concurrency, len(sessions), func(i int) {
		s := sessions[i]
		api := shared
		if cfg.Supervisors > 0 {
			// A supervised session logs what it sends, for latency and loss.
			s.log, s.sent = testclient.NewSendLog(), &sentCounter{}
			if api, err = apiWith(s.log, s.sent); err != nil {
				s.err = "client"
				return
			}
		}
		setupSession(ctx, cfg, pool, pacer, api, s, sources)
	})
	up := live(sessions)
	sum.AnswerMS, sum.ConnectedMS = setupDists(up)
	var first, last time.Time
	for _, s := range up {
		if first.IsZero() || s.start.Before(first) {
			first = s.start
		}
		if s.ready.After(last) {
			last = s.ready
		}
	}
	if len(up) > 0 {
		sum.SetupSeconds = last.Sub(first).Seconds()
		sum.SetupRate = float64(len(up)) / sum.SetupSeconds
	}
	log.Info("sessions set up", "ok", len(up), "of", cfg.Sessions, "seconds", sum.SetupSeconds)

	// Phase 2: supervisors and recordings.
	if cfg.Supervisors > 0 {
		sum.Supervisors = &supSummary{PerSession: cfg.Supervisors}
		// Let every monitored track reach the server first. A supervisor
		// that joins while they first appear gets them through a server
		// offer sent right after the answer, and testclient may apply that
		// offer before the answer (glare), drop it, and receive nothing:
		// a client race, not what this measures.
		time.Sleep(time.Second)
		var jobs []func()
		for _, s := range live(sessions) {
			for k := range cfg.Supervisors {
				sv := &supervisor{id: fmt.Sprintf("%s-sup%02d", s.id, k)}
				s.sups = append(s.sups, sv)
				jobs = append(jobs, func() { joinSupervisor(ctx, cfg, pool, shared, s, sv) })
			}
		}
		forEach(cfg.Concurrency, len(jobs), func(i int) { jobs[i]() })
	}
	if cfg.Record {
		sum.Recording = &recSummary{}
		var started atomic.Int64
		ls := live(sessions)
		forEach(cfg.Concurrency, len(ls), func(i int) {
			if startRecording(ctx, cfg, ls[i]) == nil {
				started.Add(1)
			}
		})
		sum.Recording.Started = int(started.Load())
	}

	// Phase 3: hold. Supervisors are first given time to see video start
	// (the server holds it back until a keyframe), so the window measures
	// steady forwarding, not the join.
	if cfg.Supervisors > 0 {
		warmUp(ctx, sessions, cfg.Media == "av", 5*time.Second)
	}
	windowStart := time.Now()
	for _, s := range live(sessions) {
		s.sent.mark()
		for _, sv := range s.sups {
			sv.startRx = received(sv.w)
		}
	}
	probe.startWindow(ctx)
	pacer.ResetLag()
	cpu0 := ownCPU()
	ticks0, haveTicks := readCPUTicks()
	stopProfile := func() error { return nil }
	if cfg.CPUProfile != "" {
		if stopProfile, err = startCPUProfile(cfg.CPUProfile); err != nil {
			return nil, err
		}
	}
	log.Info("holding", "duration", cfg.Duration.String())
	holdCtx, endHold := context.WithTimeout(ctx, cfg.Duration)
	var probes []*loadSession
	var probing sync.WaitGroup
	if cfg.ProbeEvery > 0 {
		probing.Go(func() { probes = probeSetups(holdCtx, cfg, pool, pacer, shared, sources) })
	}
	tick := time.NewTicker(250 * time.Millisecond)
	func() {
		defer tick.Stop()
		for {
			select {
			case <-holdCtx.Done():
				return
			case <-tick.C:
				probe.sample(ctx)
			}
		}
	}()
	endHold()
	probing.Wait()
	window := time.Since(windowStart)
	sum.PacerMaxLagMS = float64(pacer.MaxLag()) / 1e6
	sum.GeneratorCores = (ownCPU() - cpu0).Seconds() / window.Seconds()
	if ticks1, ok := readCPUTicks(); ok && haveTicks {
		sum.Machine = split(ticks0, ticks1, window, runtime.NumCPU())
	}
	if err := stopProfile(); err != nil {
		log.Warn("rtmload's CPU profile", "err", err)
	}
	probe.endWindow(ctx)
	if cfg.ProbeEvery > 0 {
		sum.Probes = summariseProbes(cfg.ProbeEvery, probes, probe.holdSetups())
	}
	if cfg.ProfileDir != "" {
		// The sessions are still up: the profiles show what they hold.
		base := strings.TrimSuffix(cfg.MetricsURL, "/metrics") + "/debug/pprof/"
		if err := saveProfiles(ctx, base, cfg.ProfileDir); err != nil {
			log.Warn("profiles", "err", err)
		}
	}
	if sum.Supervisors != nil {
		summariseSupervisors(sum.Supervisors, sessions, window)
	}
	// A session that ended on its own during the hold failed.
	for _, s := range live(sessions) {
		for _, m := range s.conn.Messages() {
			if testclient.IsState(s.id, rtm.StateTerminated)(m) {
				s.err = "terminated:" + string(testclient.Data[rtm.SessionState](m).TerminationCause)
			}
		}
	}

	// Phase 4: stop, bounded as a whole.
	stopCtx, cancel := context.WithTimeout(context.Background(), cfg.StopTimeout)
	defer cancel()
	ls := live(sessions)
	var stopped, failedRec atomic.Int64
	forEach(cfg.Concurrency, len(ls), func(i int) {
		st := stopSession(stopCtx, cfg, ls[i])
		switch st {
		case rtm.RecordingStopped:
			stopped.Add(1)
		case rtm.RecordingFailed:
			failedRec.Add(1)
		}
	})
	if sum.Recording != nil {
		sum.Recording.Stopped, sum.Recording.Failed = int(stopped.Load()), int(failedRec.Load())
		if sink != nil {
			sum.Recording.UploadsReceived, sum.Recording.UploadBytes = sink.stats()
		}
	}
	probe.after(ctx)
	sum.Server = probe.summary(len(live(sessions)) + countSups(sessions))
	if ffmpeg != "" {
		files := sink.kept()
		log.Info("decoding the uploaded files", "n", len(files))
		sum.Recording.FilesValid, sum.Recording.FilesInvalid = verifyFiles(ctx, ffmpeg, files, 2, cfg.ProfileDir)
	}

	for _, s := range sessions {
		if s.err != "" {
			sum.Failed++
			sum.Errors[s.err]++
		} else {
			sum.OK++
		}
	}
	if ctx.Err() != nil {
		return sum, fmt.Errorf("interrupted: %w", ctx.Err())
	}
	return sum, nil
}

// probeSetups starts a session every cfg.ProbeEvery until ctx ends, one at
// a time (a probe due while one is still setting up waits for it), and
// stops each once CONNECTED, so the load stays what the run holds (its
// teardown overlaps the next probe, as calls end while others start). A
// probe cut off by the end of the hold is left out rather than counted
// failed.
func probeSetups(ctx context.Context, cfg config, pool *connPool, pacer *testclient.Pacer, api *webrtc.API, sources []testclient.Source) []*loadSession {
	var done []*loadSession
	tick := time.NewTicker(cfg.ProbeEvery)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return done
		case <-tick.C:
		}
		s := &loadSession{id: fmt.Sprintf("%s-probe%04d", cfg.RunID, i)}
		setupSession(ctx, cfg, pool, pacer, api, s, sources)
		if ctx.Err() != nil {
			if s.peer != nil {
				s.peer.Close()
			}
			return done
		}
		if s.err == "" {
			// Not waiting for TERMINATED: calls end while others start.
			_ = s.conn.Send(rtm.TypeSessionStop, "load", s.id, nil)
		}
		if s.peer != nil {
			s.peer.Close()
		}
		done = append(done, s)
	}
}

func summariseProbes(every time.Duration, probes []*loadSession, server *histSummary) *probeSummary {
	p := &probeSummary{Every: every.String(), Errors: map[string]int{}, Server: server}
	for _, s := range probes {
		if s.err != "" {
			p.Failed++
			p.Errors[s.err]++
		}
	}
	p.OK = len(probes) - p.Failed
	p.AnswerMS, p.ConnectedMS = setupDists(probes)
	return p
}

// setupDists are the answer and CONNECTED latencies of the sessions that
// set up.
func setupDists(sessions []*loadSession) (answer, connected dist) {
	var answers, connects []time.Duration
	for _, s := range live(sessions) {
		answers, connects = append(answers, s.answer), append(connects, s.conned)
	}
	return newDist(answers), newDist(connects)
}

// forEach runs f(0..n-1) with at most conc calls at once.
func forEach(conc, n int, f func(i int)) {
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			f(i)
		})
	}
	wg.Wait()
}

func live(all []*loadSession) []*loadSession {
	var out []*loadSession
	for _, s := range all {
		if s.err == "" {
			out = append(out, s)
		}
	}
	return out
}

func countSups(all []*loadSession) int {
	n := 0
	for _, s := range live(all) {
		for _, sv := range s.sups {
			if sv.err == "" {
				n++
			}
		}
	}
	return n
}

// setupSession starts one session and waits for CONNECTED. Latencies are
// taken from just before Start, which includes creating the client's offer
// (a millisecond or two) as a browser's would.
func setupSession(ctx context.Context, cfg config, pool *connPool, pacer *testclient.Pacer, api *webrtc.API, s *loadSession, sources []testclient.Source) {
	ctx, cancel := context.WithTimeout(ctx, cfg.SetupTimeout)
	defer cancel()
	c, err := pool.get(ctx)
	if err != nil {
		s.err = classify(err, "dial")
		return
	}
	s.conn = c
	p, err := testclient.NewPeer(api, sources...)
	if err != nil {
		s.err = "client"
		return
	}
	s.peer = p
	s.start = time.Now()
	if err := c.Start(ctx, p, "load", s.id, ""); err != nil {
		s.err = classify(err, "answer")
		return
	}
	s.answer = time.Since(s.start)
	if err := waitConnected(ctx, c, s.id); err != nil {
		s.err = classify(err, "connected")
		return
	}
	s.ready = time.Now()
	s.conned = s.ready.Sub(s.start)
	// The peer streams for the rest of the run; Close stops it.
	if err := p.StreamOn(pacer); err != nil {
		s.err = "client"
	}
}

// waitConnected waits for CONNECTED, failing early on TERMINATED.
func waitConnected(ctx context.Context, c *testclient.Client, id string) error {
	m, err := c.Wait(ctx, func(m rtm.Message) bool {
		return testclient.IsState(id, rtm.StateConnected)(m) || testclient.IsState(id, rtm.StateTerminated)(m)
	})
	if err != nil {
		return err
	}
	if d := testclient.Data[rtm.SessionState](m); d.State == rtm.StateTerminated {
		return terminatedError(d.TerminationCause)
	}
	return nil
}

type terminatedError rtm.Cause

func (e terminatedError) Error() string { return "terminated: " + string(e) }

// classify names an error for the errors-by-code table: the server's code
// when it refused, else the phase and what went wrong.
func classify(err error, phase string) string {
	var te terminatedError
	if errors.As(err, &te) {
		return "terminated:" + string(te)
	}
	msg := err.Error()
	if i := strings.Index(msg, "server refused: "); i >= 0 {
		var d rtm.ErrorData
		if json.Unmarshal([]byte(msg[i+len("server refused: "):]), &d) == nil && d.Code != "" {
			return string(d.Code)
		}
	}
	var he *httpError
	if errors.As(err, &he) {
		return fmt.Sprintf("http_%d", he.status)
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout_" + phase
	case errors.Is(err, testclient.ErrClosed):
		return "ws_closed_" + phase
	}
	return "error_" + phase
}

func joinSupervisor(ctx context.Context, cfg config, pool *connPool, api *webrtc.API, s *loadSession, sv *supervisor) {
	ctx, cancel := context.WithTimeout(ctx, cfg.SetupTimeout)
	defer cancel()
	c, err := pool.get(ctx)
	if err != nil {
		sv.err = classify(err, "dial")
		return
	}
	sv.conn = c
	video := 0
	if cfg.Media == "av" {
		video = 1
	}
	w, err := testclient.NewWatcher(api, 1, video)
	if err != nil {
		sv.err = "client"
		return
	}
	sv.w = w
	w.MeasureLatency(s.log)
	start := time.Now()
	if err := c.Join(ctx, w, "load-sup", sv.id, s.id); err != nil {
		sv.err = classify(err, "answer")
		return
	}
	if err := waitConnected(ctx, c, sv.id); err != nil {
		sv.err = classify(err, "connected")
		return
	}
	sv.join = time.Since(start)
}

// warmUp waits (bounded) until every supervisor receives every kind.
func warmUp(ctx context.Context, sessions []*loadSession, video bool, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		all := true
		for _, s := range live(sessions) {
			for _, sv := range s.sups {
				if sv.err != "" {
					continue
				}
				got, _ := sv.w.Stats()
				all = all && got["audio"] > 0 && (!video || got["video"] > 0)
			}
		}
		if all {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	// One more second, so queues and jitter settle.
	time.Sleep(time.Second)
}

func received(w *testclient.Watcher) int64 {
	got, _ := w.Stats()
	var n int64
	for _, v := range got {
		n += int64(v)
	}
	return n
}

func summariseSupervisors(out *supSummary, sessions []*loadSession, window time.Duration) {
	out.WindowSeconds = window.Seconds()
	var joins, lat []time.Duration
	for _, s := range sessions {
		for _, sv := range s.sups {
			if sv.err != "" || s.err != "" {
				out.Failed++
				continue
			}
			out.Joined++
			joins = append(joins, sv.join)
			lat = append(lat, sv.w.Latencies()...)
			st := supStat{Session: s.id, Supervisor: sv.id, Sent: s.sent.sinceMark(), Received: received(sv.w) - sv.startRx}
			if st.Sent > 0 {
				st.LossPct = max(0, 100*float64(st.Sent-st.Received)/float64(st.Sent))
			}
			// A packet or two in flight at either edge of the window is not
			// loss.
			if st.Received+2 >= st.Sent {
				out.Lossless++
			}
			out.WorstLossPct = max(out.WorstLossPct, st.LossPct)
			out.Each = append(out.Each, st)
		}
	}
	out.JoinMS, out.LatencyMS = newDist(joins), newDist(lat)
}

func startRecording(ctx context.Context, cfg config, s *loadSession) error {
	ctx, cancel := context.WithTimeout(ctx, cfg.SetupTimeout)
	defer cancel()
	u := cfg.UploadURL
	if strings.HasSuffix(u, "/") {
		u += s.id
	}
	if err := s.conn.Send(rtm.TypeRecordingStart, "load", s.id, rtm.RecordingStart{UploadURL: u}); err != nil {
		return fmt.Errorf("recording_start %s: %w", s.id, err)
	}
	m, err := s.conn.Wait(ctx, func(m rtm.Message) bool {
		return testclient.IsRecording(s.id, rtm.RecordingStarted)(m) || (m.Type == rtm.TypeError && m.SessionID == s.id)
	})
	if err != nil {
		return fmt.Errorf("recording_start %s: %w", s.id, err)
	}
	if m.Type == rtm.TypeError {
		return fmt.Errorf("recording_start %s: server refused: %s", s.id, m.Data)
	}
	return nil
}

// stopSession stops the recording (waiting for its final state) and the
// session (waiting for TERMINATED); it returns the recording's final state.
func stopSession(ctx context.Context, cfg config, s *loadSession) rtm.RecordingState {
	var final rtm.RecordingState
	if cfg.Record {
		_ = s.conn.Send(rtm.TypeRecordingStop, "load", s.id, nil)
		m, err := s.conn.Wait(ctx, func(m rtm.Message) bool {
			return testclient.IsRecording(s.id, rtm.RecordingStopped)(m) || testclient.IsRecording(s.id, rtm.RecordingFailed)(m) ||
				(m.Type == rtm.TypeError && m.SessionID == s.id)
		})
		if err == nil && m.Type == rtm.TypeRecordingState {
			final = testclient.Data[rtm.RecordingStateData](m).State
		}
	}
	_ = s.conn.Send(rtm.TypeSessionStop, "load", s.id, nil)
	_, _ = s.conn.Wait(ctx, testclient.IsState(s.id, rtm.StateTerminated))
	for _, sv := range s.sups {
		if sv.err == "" {
			_, _ = sv.conn.Wait(ctx, testclient.IsState(sv.id, rtm.StateTerminated))
		}
	}
	return final
}

// connPool hands out WebSockets, each carrying up to perConn sessions, so
// that the server's per-IP connection limits are not what is measured.
// With several URLs (the nodes of a cluster) each new connection goes to
// the next one.
type connPool struct {
	urls    []string
	next    int // guarded by dials
	header  http.Header
	perConn int
	log     *slog.Logger

	mu    sync.Mutex
	cur   *testclient.Client
	used  int
	all   []*testclient.Client
	dials sync.Mutex // one dial at a time: they are few and rate-limited
}

type httpError struct{ status int }

func (e *httpError) Error() string { return fmt.Sprintf("HTTP %d", e.status) }

func (p *connPool) get(ctx context.Context) (*testclient.Client, error) {
	p.dials.Lock()
	defer p.dials.Unlock()
	p.mu.Lock()
	if p.cur != nil && p.used < p.perConn {
		p.used++
		c := p.cur
		p.mu.Unlock()
		return c, nil
	}
	p.mu.Unlock()
	c, err := p.dial(ctx)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.cur, p.used = c, 1
	p.all = append(p.all, c)
	p.mu.Unlock()
	return c, nil
}

// refusedFor is how long dial retries refusals (429).
const refusedFor = 10 * time.Second

// dial retries what the server's per-IP rate limit refuses (429), within
// ctx, for at most refusedFor: a server that still refuses then is at its
// per-address connection limit, which waiting does not lift.
func (p *connPool) dial(ctx context.Context) (*testclient.Client, error) {
	url := p.urls[p.next%len(p.urls)]
	p.next++
	giveUp := time.Now().Add(refusedFor)
	for {
		c, resp, err := testclient.Dial(ctx, url, p.header)
		if err == nil {
			return c, nil
		}
		if resp == nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusTooManyRequests {
			return nil, fmt.Errorf("%w: %w", &httpError{resp.StatusCode}, err)
		}
		if time.Now().After(giveUp) {
			return nil, fmt.Errorf("%w: the server refused connections from this address for %s (run it with -max-conns-per-ip 0 -conn-rate-per-ip 0 for a load test): %w",
				&httpError{resp.StatusCode}, refusedFor, err)
		}
		select {
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %w", &httpError{resp.StatusCode}, ctx.Err())
		}
	}
}

func (p *connPool) closeAll() {
	p.mu.Lock()
	all := p.all
	p.all = nil
	p.mu.Unlock()
	for _, c := range all {
		c.CloseGracefully()
	}
}

// sentCounter counts the RTP packets a client writes, through a pion
// interceptor, with a mark for the start of the measuring window.
type sentCounter struct {
	interceptor.NoOp
	n     atomic.Int64
	mark0 atomic.Int64
}

func (c *sentCounter) BindLocalStream(_ *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		c.n.Add(1)
		return w.Write(h, payload, a)
	})
}

func (c *sentCounter) mark() {
	if c != nil {
		c.mark0.Store(c.n.Load())
	}
}

func (c *sentCounter) sinceMark() int64 { return c.n.Load() - c.mark0.Load() }

type factory struct{ i interceptor.Interceptor }

func (f factory) NewInterceptor(string) (interceptor.Interceptor, error) { return f.i, nil }

// generatorAPI is the sending half of a browser, as the server sees it:
// sender reports (the recorder's A/V sync reads them) and, with video,
// NACKs answered and transport-wide sequence numbers (the server sends
// feedback for them). A browser's receiving half (its stats, receiver
// reports and NACK generator for media it never gets) is left out, so that
// the generator spends its share of the machine's CPU on sending, not on
// loops the server never notices.
//
// It keeps a browser's intervals too, where pion's defaults are shorter:
// libwebrtc reports on an audio-only connection every 5 s (pion: every
// second, which cost the generator 4% of the machine at 1,500 sessions)
// and checks a working ICE pair every 2.5 s (pion: 2 s).
func generatorAPI(video bool) (*webrtc.API, error) {
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		return nil, fmt.Errorf("codecs: %w", err)
	}
	ir := &interceptor.Registry{}
	interval := browserAudioReportInterval
	if video {
		interval = browserVideoReportInterval
	}
	sr, err := report.NewSenderInterceptor(report.SenderInterval(interval))
	if err != nil {
		return nil, fmt.Errorf("interceptors: %w", err)
	}
	ir.Add(sr)
	if video {
		responder, err := nack.NewResponderInterceptor()
		if err != nil {
			return nil, fmt.Errorf("interceptors: %w", err)
		}
		ir.Add(responder)
		me.RegisterFeedback(webrtc.RTCPFeedback{Type: "nack"}, webrtc.RTPCodecTypeVideo)
		me.RegisterFeedback(webrtc.RTCPFeedback{Type: "nack", Parameter: "pli"}, webrtc.RTPCodecTypeVideo)
		if err := webrtc.ConfigureTWCCHeaderExtensionSender(me, ir); err != nil {
			return nil, fmt.Errorf("interceptors: %w", err)
		}
	}
	se := webrtc.SettingEngine{}
	se.SetICETimeouts(browserDisconnectedTimeout, browserFailedTimeout, browserKeepalive)
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}

// A browser's intervals (libwebrtc's): RTCP reports of an audio-only and of
// a video connection, and the ping of a working ICE pair. The two
// timeouts are pion's defaults, which SetICETimeouts needs restated.
const (
	browserAudioReportInterval = 5 * time.Second
	browserVideoReportInterval = time.Second
	browserKeepalive           = 2500 * time.Millisecond
	browserDisconnectedTimeout = 5 * time.Second
	browserFailedTimeout       = 25 * time.Second
)

// apiWith is testclient.NewAPI plus the send log and the packet counter.
func apiWith(l *testclient.SendLog, c *sentCounter) (*webrtc.API, error) {
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		return nil, fmt.Errorf("codecs: %w", err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(me, ir); err != nil {
		return nil, fmt.Errorf("interceptors: %w", err)
	}
	ir.Add(factory{l})
	ir.Add(factory{c})
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir)), nil
}
