// Command rtmload is a load generator and verifier for rtmrec. It opens
// sessions with real pion peers streaming the committed Opus/VP8 clips,
// optionally records them and attaches supervisors, holds them for a while,
// stops them, and prints what it measured: setup latencies, setup rate,
// errors by code, recordings finished, supervisor forwarding latency and
// loss, and (given -metrics-url or -server-pid) the server's heap,
// goroutines, CPU and resident memory per session, and what its recorder
// queues dropped. It reports its own CPU too, and how the machine's CPUs
// spent the hold, since a generator on the server's machine takes its share.
// With -verify-files every uploaded file is decoded with ffmpeg.
//
// It is a separate process so that the server's own numbers are not mixed
// with the clients'. Every phase is bounded in time; the exit status is 1
// if any session failed.
//
//	go run ./cmd/rtmload -url ws://127.0.0.1:8080/rtm -sessions 50 -media audio -duration 10s
//	go run ./cmd/rtmload -url ws://10.0.0.1:8080/rtm,ws://10.0.0.2:8080/rtm -sessions 200
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "rtmload:", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	sum, err := run(ctx, cfg, log)
	if sum != nil {
		printHuman(os.Stderr, sum)
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(sum)
	}
	if err != nil {
		log.Error("rtmload", "err", err)
		os.Exit(1)
	}
	if sum.Failed > 0 || sum.Recording != nil && len(sum.Recording.FilesInvalid) > 0 {
		os.Exit(1)
	}
}

// usage heads `rtmload -h`, before the flags.
const usage = `Usage: rtmload [flags]

rtmload opens sessions against a running rtmrec with real WebRTC peers that
stream Opus (and VP8) clips, optionally records them and attaches
supervisors, holds them, stops them, and prints what it measured: setup
latency and rate, errors by code, recordings finished, supervisor forwarding
latency and loss, its own CPU and the machine's, and with -metrics-url or
-server-pid the server's heap, goroutines and CPU. A summary for people goes
to stderr, the same figures as JSON to stdout. The exit status is 1 if any session failed.

Examples:
  rtmload -url ws://127.0.0.1:8080/rtm -sessions 50 -media audio -duration 10s
  rtmload -sessions 20 -media av -record -supervisors 1 -metrics-url http://127.0.0.1:8080/metrics

Flags:
`

// parseFlags reads the command line; -h writes the usage to help and
// returns flag.ErrHelp.
func parseFlags(args []string, help io.Writer) (config, error) {
	c := config{}
	fs := flag.NewFlagSet("rtmload", flag.ContinueOnError)
	fs.Func("url", "the server's /rtm WebSocket URL (default ws://127.0.0.1:8080/rtm); repeatable or comma-separated for the nodes of a cluster, which get the connections in turn", func(v string) error {
		for _, u := range strings.Split(v, ",") {
			if u = strings.TrimSpace(u); u != "" {
				c.URLs = append(c.URLs, u)
			}
		}
		return nil
	})
	fs.IntVar(&c.Sessions, "sessions", 10, "sessions to open")
	fs.IntVar(&c.Concurrency, "concurrency", 8, "session setups (start → CONNECTED) in flight at once")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "how long to hold the sessions once all are set up")
	fs.StringVar(&c.Media, "media", "audio", "audio (Opus) or av (Opus + VP8)")
	fs.BoolVar(&c.Record, "record", false, "record every session (recording_start) and wait for STOPPED at the end")
	fs.StringVar(&c.UploadURL, "upload-url", "", "upload_url for -record; a trailing / gets the session id appended (default: a sink served by rtmload on 127.0.0.1, which needs a server with -allow-private-urls or -dev)")
	fs.IntVar(&c.Supervisors, "supervisors", 0, "supervisors joining each session")
	fs.StringVar(&c.Token, "token", "", "bearer token for the WebSocket (Authorization header)")
	fs.IntVar(&c.PerConn, "sessions-per-conn", 8, "sessions multiplexed on one WebSocket (the server allows 16; its message rate limit is per connection)")
	fs.DurationVar(&c.SetupTimeout, "setup-timeout", 20*time.Second, "bound on one session's start → CONNECTED")
	fs.DurationVar(&c.StopTimeout, "stop-timeout", 60*time.Second, "bound on the stop phase (recordings' STOPPED, TERMINATED)")
	fs.StringVar(&c.MetricsURL, "metrics-url", "", "the server's /metrics, to report its heap, goroutines and supervisor drops (optional)")
	fs.IntVar(&c.ServerPID, "server-pid", 0, "the server's process id, to report its CPU time during the hold (Linux; optional)")
	fs.BoolVar(&c.VerifyFiles, "verify-files", false, "with -record and the built-in upload sink: keep every upload and decode it in full with ffmpeg afterwards (a file that does not decode fails the run)")
	fs.StringVar(&c.ProfileDir, "profile-dir", "", "at the end of the hold, save the server's heap (after a GC) and goroutine profiles here (a server run with -pprof; read beside -metrics-url), and with -verify-files a copy of every file that does not decode")
	fs.DurationVar(&c.ProbeEvery, "probe-every", 0, "during the hold, start one more session at most this often, one at a time, and stop it once CONNECTED: the setup latency a new call meets on a server carrying all the others (0: off)")
	fs.StringVar(&c.CPUProfile, "cpu-profile", "", "write rtmload's own CPU profile of the hold to this file: where the generator's share of the machine goes")
	fs.StringVar(&c.RunID, "run-id", "", "prefix of the session ids (default: random, so reruns do not collide)")
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(help)
			fmt.Fprint(help, usage)
			fs.PrintDefaults()
		}
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if len(c.URLs) == 0 {
		c.URLs = []string{"ws://127.0.0.1:8080/rtm"}
	}
	return c, c.validate()
}

// printHuman writes the summary as a few lines for a person.
func printHuman(w io.Writer, s *summary) {
	fmt.Fprintf(w, "sessions: %d ok, %d failed of %d (%s)\n", s.OK, s.Failed, s.Sessions, s.Media)
	for code, n := range s.Errors {
		fmt.Fprintf(w, "  error %s: %d\n", code, n)
	}
	fmt.Fprintf(w, "session_start → answer: p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms\n", s.AnswerMS.P50, s.AnswerMS.P90, s.AnswerMS.P99, s.AnswerMS.Max)
	fmt.Fprintf(w, "session_start → CONNECTED: p50 %.1f ms, p99 %.1f ms, max %.1f ms\n", s.ConnectedMS.P50, s.ConnectedMS.P99, s.ConnectedMS.Max)
	fmt.Fprintf(w, "setup: %d sessions in %.2f s = %.1f sessions/s (concurrency %d)\n", s.OK, s.SetupSeconds, s.SetupRate, s.Concurrency)
	fmt.Fprintf(w, "rtmload's own pacing during the hold: samples went out at most %.0f ms late", s.PacerMaxLagMS)
	if s.PacerMaxLagMS > 100 {
		fmt.Fprint(w, " (rtmload fell behind for want of CPU and sent its backlog in bursts, as no browser does: the server was fed an overloaded client)")
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "rtmload's own CPU during the hold: %.2f cores", s.GeneratorCores)
	if sv := s.Server; sv != nil && sv.CPUSeconds > 0 && sv.WindowSeconds > 0 {
		fmt.Fprintf(w, "; with the server's, %.2f cores", s.GeneratorCores+sv.CPUSeconds/sv.WindowSeconds)
	}
	fmt.Fprintln(w)
	if m := s.Machine; m != nil {
		fmt.Fprintf(w, "this machine's %d CPUs during the hold, in cores: %.2f processes, %.2f interrupts and softirq (the kernel's packet work, charged to no process), %.2f stolen, %.2f idle\n",
			m.CPUs, m.Process, m.Softirq, m.Steal, m.Idle)
	}
	if p := s.Probes; p != nil {
		fmt.Fprintf(w, "probe setups during the hold (at most one every %s): %d ok, %d failed; answer p50 %.1f ms, p99 %.1f ms, max %.1f ms; CONNECTED p50 %.1f ms, p99 %.1f ms\n",
			p.Every, p.OK, p.Failed, p.AnswerMS.P50, p.AnswerMS.P99, p.AnswerMS.Max, p.ConnectedMS.P50, p.ConnectedMS.P99)
		if st := p.Server; st != nil {
			fmt.Fprintf(w, "  server's own time for them: p50 %.1f ms, p99 %.1f ms (interpolated within buckets); %.1f%% within 50 ms\n", st.P50MS, st.P99MS, 100*st.Within50MS)
		}
	}
	if r := s.Recording; r != nil {
		fmt.Fprintf(w, "recordings: %d started, %d STOPPED, %d FAILED, %d uploads received (%d bytes)\n", r.Started, r.Stopped, r.Failed, r.UploadsReceived, r.UploadBytes)
		if r.FilesValid > 0 || len(r.FilesInvalid) > 0 {
			fmt.Fprintf(w, "files: %d decode cleanly, %d do not\n", r.FilesValid, len(r.FilesInvalid))
			for i, e := range r.FilesInvalid {
				if i == 5 {
					fmt.Fprintf(w, "  ... and %d more\n", len(r.FilesInvalid)-i)
					break
				}
				fmt.Fprintf(w, "  %s\n", e)
			}
		}
	}
	if sv := s.Supervisors; sv != nil {
		fmt.Fprintf(w, "supervisors: %d joined, %d failed (%d per session); join p50 %.1f ms\n", sv.Joined, sv.Failed, sv.PerSession, sv.JoinMS.P50)
		fmt.Fprintf(w, "forwarding latency (client send → supervisor receive): p50 %.2f ms, p99 %.2f ms (%d packets)\n", sv.LatencyMS.P50, sv.LatencyMS.P99, sv.LatencyMS.N)
		fmt.Fprintf(w, "forwarding loss over %.1f s: %d of %d supervisors lossless, worst %.2f%%\n", sv.WindowSeconds, sv.Lossless, sv.Joined, sv.WorstLossPct)
	}
	if sv := s.Server; sv != nil {
		if sv.CPUSeconds > 0 {
			fmt.Fprintf(w, "server CPU during hold: %.2f s over %.1f s = %.1f%% of a core = %.4f CPU-s per session-minute\n", sv.CPUSeconds, sv.WindowSeconds, 100*sv.CPUSeconds/sv.WindowSeconds, sv.CPUPerSessionMinute)
		}
		if sv.RSSPeak > 0 {
			fmt.Fprintf(w, "server RSS: %.1f MiB idle, %.1f MiB peak during hold = %.0f KiB/session (%.0f KiB/session above idle)\n",
				sv.RSSBefore/(1<<20), sv.RSSPeak/(1<<20), sv.RSSPerSessionKiB, sv.RSSGrowthPerSessionKiB)
		}
		if st := sv.Setup; st != nil {
			fmt.Fprintf(w, "server's own setup time (request → answer sent, %.0f setups): p50 %.1f ms, p99 %.1f ms (interpolated within buckets); %.1f%% within 50 ms\n",
				st.N, st.P50MS, st.P99MS, 100*st.Within50MS)
		}
		if s.Recording != nil && sv.HeapAfter > 0 {
			fmt.Fprintf(w, "recorder queue drops: %.0f\n", sv.RecorderDropped)
		}
		if sv.HeapAfter > 0 {
			fmt.Fprintf(w, "server heap: %.1f → %.1f MiB = %.0f KiB/session; goroutines %.0f → %.0f = %.1f/session; supervisor drops %+.0f\n",
				sv.HeapBefore/(1<<20), sv.HeapAfter/(1<<20), sv.HeapPerSessionKiB, sv.GoroutinesBefore, sv.GoroutinesAfter, sv.GoroutinesPerSession, sv.DroppedDelta)
			// The heap is read from outside, without forcing a GC: an idle
			// server keeps the garbage of an earlier run, and a hold
			// without a GC measures garbage too.
			if sv.HeapAfter < sv.HeapBefore || sv.GCs == 0 {
				fmt.Fprintf(w, "  (heap per session is not meaningful here: %.0f GCs during the hold; use a freshly started server and a longer -duration)\n", sv.GCs)
			}
		}
	}
}
