package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rtmrec/rtmrec/antmedia"
	"github.com/rtmrec/rtmrec/compat"
	"github.com/rtmrec/rtmrec/internal/limits"
	"github.com/rtmrec/rtmrec/recorder"
	"github.com/rtmrec/rtmrec/session"
	"github.com/rtmrec/rtmrec/wcs"
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
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	if err := prepareDev(cfg); err != nil {
		return err
	}
	st, err := openState(cfg, log, reg)
	if err != nil {
		return err
	}
	defer st.close()

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
	mem, err := joinCluster(cfg, log, reg, authn)
	if err != nil {
		return err
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

	recMetrics := recorder.NewMetrics(reg)
	// Every recording's file I/O on a few shared goroutines, made durable
	// together once a second (recorder.Writers).
	writers := recorder.NewWriters(recorder.WritersConfig{Logger: log, Metrics: recMetrics})
	defer func() {
		if err := writers.Close(); err != nil {
			log.Warn("recorder writers", "err", err)
		}
	}()
	deps := session.Deps{
		WebRTC: wrtc, Logger: log, Metrics: session.NewMetrics(reg),
		Events: st.outbox, Journeys: st.journeys, URLs: st.guard, S3: st.s3,
		Admission: lim, RecorderMetrics: recMetrics, RecorderWriters: writers,
	}
	if authn.enabled() {
		deps.Tokens = authn
	}
	mem.sessionDeps(&deps)
	srv, err := session.New(session.Config{
		ConnectTimeout: cfg.ConnectTimeout, DisconnectTimeout: cfg.DisconnectTimeout, MaxDuration: cfg.MaxDuration,
		MaxTracks: cfg.MaxTracksPerSession, MaxPauses: cfg.MaxPausesPerRecording,
		DataDir: st.recordings, AllowedOrigins: cfg.AllowedOrigins, SignsManifests: st.evidenceKey != nil,
	}, deps)
	if err != nil {
		return err
	}
	if mem != nil {
		mem.start(srv)
		// Whatever happens below, the node leaves the cluster.
		defer mem.leave()
	}
	announce := srv.Announce
	st.announce.Store(&announce)

	// The durable queues run on their own context: they must outlive the
	// drain of the sessions and stop only after it.
	bgCtx, bgCancel := context.WithCancel(context.Background())
	defer bgCancel()
	var bg sync.WaitGroup
	st.run(bgCtx, &bg)

	mux := http.NewServeMux()
	admin := mux
	if cfg.AdminListen != "" {
		admin = http.NewServeMux()
	}
	admin.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	admin.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		switch {
		case !srv.Ready():
			http.Error(w, "draining", http.StatusServiceUnavailable)
		case !mem.ready():
			http.Error(w, "not registered in the cluster: Redis is unreachable (or the node id is in use)", http.StatusServiceUnavailable)
		default:
			_, _ = w.Write([]byte("ready\n"))
		}
	})
	admin.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mountAdmin(admin, st, authn, log)
	if cfg.Pprof {
		mountPprof(admin)
	}
	mux.Handle("GET /rtm", (&gate{clients: clients, authn: authn, lim: lim, log: log}).wrap(srv))
	// The compatibility endpoints take a token in their protocol too.
	compatGate := &gate{clients: clients, authn: authn, lim: lim, log: log, protocolTokens: true}
	compatCfg := compat.Config{
		Sessions: srv, Tokens: authn.tokens(), Logger: log,
		UploadURL: cfg.CompatUploadURL, WebhookURL: cfg.CompatWebhookURL,
	}
	mux.Handle("GET /wcs", compatGate.wrap(wcs.New(wcs.Config{Config: compatCfg})))
	handler := withAntMedia(mux, compatGate.wrap(antmedia.New(antmedia.Config{Config: compatCfg, ICEServers: iceServers})))
	// drained is set once the recordings and their reports are out: the
	// dev console's live streams end then, not before.
	var drained atomic.Bool
	if cfg.Dev {
		if err := mountDev(mux, cfg, srv, authn, st.journeys, drained.Load, log); err != nil {
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
	addr, err := serve(cfg.Listen, handler)
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
	if mem != nil {
		logArgs = append(logArgs, "node_id", mem.node.ID())
	}
	if adminAddr != nil {
		logArgs = append(logArgs, "admin_addr", adminAddr.String())
	}
	log.Info("rtmrec listening", logArgs...)
	if cfg.Dev {
		log.Info("dev console: open it in a browser", "url", devConsoleURL(addr, tlsCfg != nil))
	}
	if ready != nil {
		ready <- listening{Addr: addr, AdminAddr: adminAddr, Server: srv}
	}

	<-ctx.Done()
	begun := time.Now()
	mem.refuseNew(srv)
	if cfg.DrainTimeout > 0 {
		mem.waitIdle(srv, cfg.DrainTimeout, log)
	}
	log.Info("draining: finishing sessions, recordings, uploads and webhooks", "timeout", cfg.ShutdownTimeout.String())
	shCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	// Sessions end and their recordings are handed to their journeys; then
	// the uploads and their STOPPED/FAILED go out while the HTTP servers
	// still serve (the dev console's upload and webhook sinks are among
	// them). What cannot finish in time stays in the ledger for the next
	// start: that is the promise, not a failure, so the exit is still 0.
	if err := srv.Shutdown(shCtx); err != nil {
		log.Warn("drain: sessions did not all end in time", "err", err)
	}
	st.drain(shCtx)
	drained.Store(true)
	if err := srv.CloseConnections(shCtx); err != nil {
		log.Warn("drain: connections did not all close in time", "err", err)
	}
	if mem != nil {
		// Until now the relay carried the outcomes of recordings made here
		// for clients connected elsewhere, and this node's connections to
		// their sessions on other nodes: those closed with the connections.
		mem.leave()
	}
	for _, hs := range servers {
		if err := hs.Shutdown(shCtx); err != nil {
			_ = hs.Close()
		}
	}
	bgCancel()
	bg.Wait()
	log.Info("rtmrec stopped", "drain", time.Since(begun).Round(time.Millisecond).String())
	return nil
}

// withAntMedia sends Ant Media's /{app}/websocket, for any app, to ams
// and the rest to mux (whose patterns cannot express it beside /dev/).
func withAntMedia(mux, ams http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && antmedia.IsPath(r.URL.Path) {
			ams.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
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
