package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// recoverDir is `rtmrec recover`: it finishes what a data directory holds
// (repairs, uploads, webhooks) without serving anything, for a node that
// will not come back, and returns once everything is decided and
// delivered, or -shutdown-timeout has passed (an error then says what is
// left, still safe in the directory).
func recoverDir(ctx context.Context, cfg *config, log *slog.Logger) error {
	begun := time.Now()
	st, err := openState(cfg, log, prometheus.NewRegistry())
	if err != nil {
		return err
	}
	defer st.close()
	bgCtx, cancel := context.WithCancel(context.Background())
	var bg sync.WaitGroup
	st.run(bgCtx, &bg)
	dctx, stop := context.WithTimeout(ctx, cfg.ShutdownTimeout)
	st.drain(dctx)
	stop()
	cancel()
	bg.Wait()
	left, events := len(st.journeys.Unfinished()), st.outbox.Pending()
	if left > 0 || events > 0 {
		return fmt.Errorf("recover: %d recordings and %d webhook events are still pending after %s; they stay in %s for the next run (raise -shutdown-timeout to wait longer)",
			left, events, cfg.ShutdownTimeout, cfg.DataDir)
	}
	log.Info("recover: everything in the data directory is delivered", "took", time.Since(begun).Round(time.Millisecond).String())
	return nil
}
