// Command rtmrec is the RTM recording server: clients open a WebSocket on
// /rtm, send media over WebRTC, and rtmrec records it, uploads the file to
// the URL they gave and reports to their webhook.
//
// `rtmrec verify` checks a recording against its signed manifest and `rtmrec redact`
// silences a span of one (see docs/evidence.md).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/redis/go-redis/v9"

	"github.com/rtmrec/rtmrec/cluster"
	"github.com/rtmrec/rtmrec/internal/memlimit"
)

func main() {
	if len(os.Args) > 1 {
		if cmd, ok := subcommands[os.Args[1]]; ok {
			os.Exit(cmd(os.Args[2:], os.Stdout, os.Stderr))
		}
	}
	args := os.Args[1:]
	recovering := len(args) > 0 && args[0] == "recover"
	if recovering {
		args = args[1:]
	}
	cfg, err := parseConfig(args, os.Getenv)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "rtmrec:", err)
		os.Exit(2)
	}
	logger := newLogger(os.Stderr, cfg.LogLevel)
	// go-redis logs through a global; route it into the structured log.
	redis.SetLogger(cluster.RedisLogger(logger))
	tuneGC(logger)
	// The first signal drains; a second one, caught below, forces the exit.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
		force := make(chan os.Signal, 1)
		signal.Notify(force, syscall.SIGINT, syscall.SIGTERM)
		<-force
		logger.Error("second signal: exiting without finishing the drain")
		os.Exit(1)
	}()
	if recovering {
		if err := recoverDir(ctx, cfg, logger); err != nil {
			logger.Error("rtmrec recover", "err", err)
			os.Exit(1)
		}
		return
	}
	if err := run(ctx, cfg, logger, nil); err != nil {
		logger.Error("rtmrec stopped", "err", err)
		os.Exit(1)
	}
}

// defaultGCPercent is the garbage collector's target unless GOGC is set:
// the heap may grow to 1.5 times what is live between collections, not
// Go's default of twice. A recording server's live heap is mostly
// per-session buffers that stay for the call, so collecting more often
// costs little CPU (a few more collections a minute) and saves about a
// quarter of the resident memory per session.
const defaultGCPercent = 50

// tuneGC sets the collector's target (defaultGCPercent) and a soft memory
// limit of 90% of the container's, unless the operator set GOGC or
// GOMEMLIMIT: near its ceiling the process then collects garbage harder
// instead of being killed by the kernel with every recording open.
func tuneGC(log *slog.Logger) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	limit, err := memlimit.Container("/")
	if err != nil {
		log.Warn("no memory limit for the Go runtime", "err", err)
		return
	}
	if limit > 0 {
		debug.SetMemoryLimit(memlimit.Default(limit))
		log.Info("memory limit from the container", "container_bytes", limit, "gomemlimit_bytes", memlimit.Default(limit))
	}
}

func newLogger(w *os.File, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}
