package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rtmrec/rtmrec/internal/limits"
	"github.com/rtmrec/rtmrec/internal/netguard"
	"github.com/rtmrec/rtmrec/internal/s3allow"
	"github.com/rtmrec/rtmrec/recorder"
	"github.com/rtmrec/rtmrec/session"
	"github.com/rtmrec/rtmrec/upload"
	"github.com/rtmrec/rtmrec/webhook"
)

// listening reports the addresses the server bound, for tests and the log.
type listening struct {
	Addr      net.Addr
	AdminAddr net.Addr
	Server    *session.Server
}

// run starts the server and blocks until ctx is cancelled and the drain is
// over. ready, when not nil, receives the bound addresses once the server
// accepts sessions.
func run(ctx context.Context, cfg *config, log *slog.Logger, ready chan<- listening) error {
	dirs := struct{ recordings, uploads, webhooks string }{
		filepath.Join(cfg.DataDir, "recordings"),
		filepath.Join(cfg.DataDir, "uploads"),
		filepath.Join(cfg.DataDir, "webhooks"),
	}
	for _, d := range []string{dirs.recordings, dirs.uploads, dirs.webhooks} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	guard := netguard.New(netguard.Config{AllowPrivate: cfg.AllowPrivateURLs})
	var secrets [][]byte
	for _, s := range cfg.WebhookSecrets {
		secrets = append(secrets, []byte(s))
	}
	outbox, err := webhook.New(webhook.Config{
		Dir: dirs.webhooks, Guard: guard, Secrets: secrets, RetryPeriod: cfg.WebhookRetryPeriod,
		Logger: log.With("component", "webhook"), Metrics: reg,
	})
	if err != nil {
		return fmt.Errorf("webhook outbox: %w", err)
	}
	deliver := &delivery{log: log.With("component", "delivery"), dir: dirs.recordings}
	uploads, err := upload.New(upload.Config{
		Dir: dirs.uploads, Guard: guard, AcceptAny2xx: cfg.UploadAccept2xx,
		MaxAttempts: cfg.UploadMaxAttempts, Deadline: cfg.UploadDeadline, Retention: cfg.UploadRetention,
		S3:     upload.S3Config{Endpoint: cfg.S3Endpoint, Region: cfg.S3Region, PathStyle: cfg.S3PathStyle},
		Logger: log.With("component", "upload"), Metrics: reg,
		OnResult: deliver.onResult,
	})
	if err != nil {
		return fmt.Errorf("upload queue: %w", err)
	}
	deliver.uploads = uploads

	lim, err := limits.New(limits.Config{
		MaxConnsPerIP: cfg.MaxConnsPerIP, ConnRatePerIP: cfg.ConnRatePerIP, ConnBurstPerIP: max(1, int(2*cfg.ConnRatePerIP)),
		MaxAuthConnsPerIP: cfg.MaxAuthConnsPerIP,
		MaxSessions:       cfg.MaxSessions, MaxRecordings: cfg.MaxRecordings,
		MaxSessionsPerTenant: cfg.MaxSessionsPerTenant, MaxRecordingsPerTenant: cfg.MaxRecordingsPerTenant,
		DiskDir: cfg.DataDir, MinFreeDiskBytes: cfg.MinFreeDiskMB << 20, Metrics: reg,
	})
	if err != nil {
		return fmt.Errorf("limits: %w", err)
	}
	authn, err := newAuthenticator(cfg)
	if err != nil {
		return err
	}
	clients, err := cfg.clientAddrs()
	if err != nil {
		return err
	}
	s3List, err := s3allow.Parse(cfg.S3Allow)
	if err != nil {
		return fmt.Errorf("-s3-allow: %w", err)
	}
	var s3Policy session.S3Policy // nil refuses s3:// outright
	if s3List.Len() > 0 {
		s3Policy = s3List
	}

	iceServers, err := parseICEServers(cfg.ICEServers)
	if err != nil {
		return err
	}
	wrtc, err := session.NewWebRTC(session.ICEConfig{
		PortMin: uint16(cfg.ICEPortMin), PortMax: uint16(cfg.ICEPortMax),
		UDPPort: cfg.ICEUDPPort, TCPPort: cfg.ICETCPPort, PublicIPs: cfg.PublicIPs,
		Servers: iceServers, IncludeLoopback: cfg.ICELoopback,
	}, log)
	if err != nil {
		return fmt.Errorf("webrtc: %w", err)
	}
	defer wrtc.Close()

	srv, err := session.New(session.Config{
		ConnectTimeout: cfg.ConnectTimeout, DisconnectTimeout: cfg.DisconnectTimeout, MaxDuration: cfg.MaxDuration,
		DataDir: dirs.recordings, AllowedOrigins: cfg.AllowedOrigins,
	}, session.Deps{
		WebRTC: wrtc, Logger: log, Metrics: session.NewMetrics(reg),
		Notifier: webhookNotifier{outbox: outbox, log: log}, Delivery: deliver, URLs: guard, S3: s3Policy,
		Admission: lim, RecorderMetrics: recorder.NewMetrics(reg),
	})
	if err != nil {
		return err
	}
	deliver.srv = srv

	// Background workers run on their own context: they must outlive the
	// drain of the sessions and stop only after it.
	bgCtx, bgCancel := context.WithCancel(context.Background())
	defer bgCancel()
	var bg sync.WaitGroup
	bg.Go(func() {
		if err := uploads.Run(bgCtx); err != nil && !errors.Is(err, context.Canceled) {
			log.Error("upload queue stopped", "err", err)
		}
	})
	bg.Go(func() {
		if err := outbox.Run(bgCtx); err != nil && !errors.Is(err, context.Canceled) {
			log.Error("webhook outbox stopped", "err", err)
		}
	})
	// A crash left recordings behind: repair and deliver them before taking
	// new sessions, so their events keep their order.
	if err := deliver.recover(); err != nil {
		log.Error("recovering recordings of an earlier run", "err", err)
	}

	mux := http.NewServeMux()
	admin := mux
	if cfg.AdminListen != "" {
		admin = http.NewServeMux()
	}
	admin.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	admin.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if srv.Draining() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	admin.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.Handle("GET /rtm", (&gate{clients: clients, authn: authn, lim: lim, log: log}).wrap(srv))
	if cfg.Dev {
		if err := mountDev(mux, cfg, srv, authn, log); err != nil {
			return err
		}
	}

	var tlsCfg *tls.Config
	if cfg.TLSCert != "" {
		certs, err := newCertReloader(cfg.TLSCert, cfg.TLSKey, log)
		if err != nil {
			return err
		}
		stopReload := certs.watchSIGHUP()
		defer stopReload()
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.get}
	}
	servers := []*http.Server{}
	serve := func(addr string, h http.Handler) (net.Addr, error) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("listen %s: %w", addr, err)
		}
		hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, TLSConfig: tlsCfg,
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
		servers = append(servers, hs)
		bg.Go(func() {
			var err error
			if tlsCfg != nil {
				err = hs.ServeTLS(ln, "", "")
			} else {
				err = hs.Serve(ln)
			}
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("http server stopped", "addr", addr, "err", err)
			}
		})
		return ln.Addr(), nil
	}
	addr, err := serve(cfg.Listen, mux)
	if err != nil {
		return err
	}
	var adminAddr net.Addr
	if cfg.AdminListen != "" {
		if adminAddr, err = serve(cfg.AdminListen, admin); err != nil {
			return err
		}
	}
	logArgs := []any{"addr", addr.String(), "data_dir", cfg.DataDir, "dev", cfg.Dev, "auth", authn.enabled()}
	if adminAddr != nil {
		logArgs = append(logArgs, "admin_addr", adminAddr.String())
	}
	log.Info("rtmrec listening", logArgs...)
	if ready != nil {
		ready <- listening{Addr: addr, AdminAddr: adminAddr, Server: srv}
	}

	<-ctx.Done()
	log.Info("draining: finishing sessions, recordings, uploads and webhooks")
	shCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	var errs []error
	if err := srv.Shutdown(shCtx); err != nil {
		errs = append(errs, err)
	}
	for _, hs := range servers {
		if err := hs.Shutdown(shCtx); err != nil {
			errs = append(errs, fmt.Errorf("http shutdown: %w", err))
		}
	}
	// What is still queued stays on disk for the next start.
	uploads.Drain(shCtx)
	outbox.Drain(shCtx)
	bgCancel()
	bg.Wait()
	log.Info("rtmrec stopped")
	return errors.Join(errs...)
}

// parseICEServers turns -ice-server URLs into pion's form; TURN credentials
// may be given as user:pass@ before the host.
func parseICEServers(urls []string) ([]webrtc.ICEServer, error) {
	var out []webrtc.ICEServer
	for _, u := range urls {
		s := webrtc.ICEServer{URLs: []string{u}}
		scheme, rest, ok := cutScheme(u)
		if !ok {
			return nil, fmt.Errorf("-ice-server %q: want a stun, stuns, turn or turns URL", u)
		}
		if cred, host, found := cutLast(rest, "@"); found {
			user, pass, _ := cutLast(cred, ":")
			s = webrtc.ICEServer{URLs: []string{scheme + ":" + host}, Username: user, Credential: pass}
		}
		out = append(out, s)
	}
	return out, nil
}

func cutScheme(u string) (scheme, rest string, ok bool) {
	scheme, rest, ok = strings.Cut(u, ":")
	switch scheme {
	case "stun", "stuns", "turn", "turns":
		return scheme, rest, ok && rest != ""
	}
	return "", "", false
}

func cutLast(s, sep string) (before, after string, found bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}
