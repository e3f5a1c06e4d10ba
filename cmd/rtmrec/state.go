package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rtmrec/rtmrec/delivery"
	"github.com/rtmrec/rtmrec/evidence"
	"github.com/rtmrec/rtmrec/internal/ledger"
	"github.com/rtmrec/rtmrec/internal/netguard"
	"github.com/rtmrec/rtmrec/internal/s3allow"
	"github.com/rtmrec/rtmrec/internal/upgrade"
	"github.com/rtmrec/rtmrec/rtm"
	"github.com/rtmrec/rtmrec/session"
	"github.com/rtmrec/rtmrec/upload"
	"github.com/rtmrec/rtmrec/webhook"
)

// state is what the data directory holds and what works on it: the
// ledger, the webhook outbox and the recordings' journeys. The server and
// `rtmrec recover` open it the same way.
type state struct {
	log        *slog.Logger
	recordings string
	guard      *netguard.Guard
	// evidenceKey signs the recordings' manifests (nil: unsigned).
	evidenceKey ed25519.PrivateKey
	s3          session.S3Policy
	ledger      *ledger.Ledger
	outbox      *webhook.Outbox
	journeys    *delivery.Journeys
	// announce tells the client that started a recording its outcome; the
	// session server sets it once it exists.
	announce atomic.Pointer[func(string, rtm.Message)]
}

// openState takes the data directory (one process at a time), loads what
// an earlier process left, and schedules it: the TERMINATED of sessions it
// left open first, then the repair and upload of its recordings. What the
// first release left in its own files is handed over to the ledger first
// (package upgrade).
func openState(cfg *config, log *slog.Logger, reg prometheus.Registerer) (*state, error) {
	s3List, err := s3allow.Parse(cfg.S3Allow)
	if err != nil {
		return nil, fmt.Errorf("-s3-allow: %w", err)
	}
	l, err := ledger.Open(cfg.DataDir, ledger.Options{})
	if err != nil {
		return nil, err
	}
	st := &state{log: log, ledger: l, recordings: filepath.Join(cfg.DataDir, "recordings")}
	if cfg.EvidenceKey != "" {
		if st.evidenceKey, err = evidence.LoadPrivateKey(cfg.EvidenceKey); err != nil {
			return nil, errors.Join(fmt.Errorf("-evidence-key: %w", err), l.Close())
		}
	}
	if s3List.Len() > 0 {
		st.s3 = s3List // without any rule s3:// is refused outright (nil policy)
	}
	st.guard = netguard.New(netguard.Config{AllowPrivate: cfg.AllowPrivateURLs})
	secrets, err := parseSecrets(cfg.WebhookSecrets)
	if err != nil {
		return nil, errors.Join(err, l.Close())
	}
	st.outbox, err = webhook.New(webhook.Config{
		Ledger: l, Guard: st.guard, Secrets: secrets, RetryPeriod: cfg.WebhookRetryPeriod,
		Logger: log.With("component", "webhook"), Metrics: reg,
	})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("webhook outbox: %w", err), l.Close())
	}
	// Before the journeys: they move aside media files no journey knows,
	// and the first release's queued uploads have none yet.
	if _, err := upgrade.Run(upgrade.Config{
		DataDir: cfg.DataDir, Ledger: l, Outbox: st.outbox,
		Logger: log.With("component", "upgrade"), AfterCommit: upgradeKillSwitch(),
	}); err != nil {
		return nil, errors.Join(err, l.Close())
	}
	up, err := upload.New(upload.Config{
		Guard: st.guard, AcceptAny2xx: cfg.UploadAccept2xx,
		S3:     upload.S3Config{Endpoint: cfg.S3Endpoint, Region: cfg.S3Region, PathStyle: cfg.S3PathStyle},
		Logger: log.With("component", "upload"), Metrics: reg,
	})
	if err != nil {
		return nil, errors.Join(err, l.Close())
	}
	st.journeys, err = delivery.New(delivery.Config{
		Ledger: l, Outbox: st.outbox, Uploader: up, Dir: st.recordings,
		MaxAttempts: cfg.UploadMaxAttempts, Deadline: cfg.UploadDeadline, Retention: cfg.UploadRetention,
		Logger: log.With("component", "delivery"), Metrics: reg,
		Allow: st.allowUpload, EvidenceKey: st.evidenceKey,
		Announce: func(id string, m rtm.Message) {
			if f := st.announce.Load(); f != nil {
				(*f)(id, m)
			}
		},
	})
	if err != nil {
		return nil, errors.Join(err, l.Close())
	}
	return st, nil
}

// upgradeKillEnv names the test seam that kills the process with SIGKILL
// right after the upgrade from the first release has committed that many
// hand-overs and before it removes their old files: the integration test
// of a kill -9 in the middle of the upgrade sets it. Never set it anywhere
// else.
const upgradeKillEnv = "RTMREC_TEST_UPGRADE_KILL_AFTER"

// upgradeKillSwitch is the upgrade's AfterCommit for upgradeKillEnv (nil
// when it is not set).
func upgradeKillSwitch() func(int) {
	n, err := strconv.Atoi(os.Getenv(upgradeKillEnv))
	if err != nil || n <= 0 {
		return nil
	}
	return func(done int) {
		if done == n {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			time.Sleep(time.Hour) // never over: the signal is on its way
		}
	}
}

// allowUpload applies the S3 allow-list again before each upload attempt.
func (st *state) allowUpload(tenant, raw string) error {
	if !strings.HasPrefix(raw, "s3://") {
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("malformed s3 URL")
	}
	if st.s3 == nil {
		return errors.New("s3:// uploads are not enabled on this server")
	}
	return st.s3.AllowS3(tenant, u)
}

// parseSecrets turns -webhook-secret values into HMAC keys.
func parseSecrets(in []string) ([][]byte, error) {
	var out [][]byte
	for _, s := range in {
		k, err := webhook.ParseSecret(s)
		if err != nil {
			return nil, fmt.Errorf("-webhook-secret: %w", err)
		}
		out = append(out, k)
	}
	return out, nil
}

// run starts the outbox and the journeys on ctx, in wg.
func (st *state) run(ctx context.Context, wg *sync.WaitGroup) {
	wg.Go(func() {
		if err := st.outbox.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			st.log.Error("webhook outbox stopped", "err", err)
		}
	})
	wg.Go(func() {
		if err := st.journeys.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			st.log.Error("recording journeys stopped", "err", err)
		}
	})
}

// drain finishes, by ctx's deadline, the uploads and then the webhooks
// (STOPPED comes from an upload); what is left stays for the next start.
func (st *state) drain(ctx context.Context) {
	st.journeys.Drain(ctx)
	st.outbox.Drain(ctx)
	if n := st.outbox.Pending(); n > 0 {
		st.log.Info("webhook events left for the next start", "count", n)
	}
}

// close closes the ledger and releases the data directory.
func (st *state) close() {
	if err := st.ledger.Close(); err != nil {
		st.log.Error("close ledger", "err", err)
	}
}
