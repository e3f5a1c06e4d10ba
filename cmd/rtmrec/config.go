package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/rtmrec/rtmrec/auth"
	"github.com/rtmrec/rtmrec/cluster"
	"github.com/rtmrec/rtmrec/internal/clientaddr"
	"github.com/rtmrec/rtmrec/internal/s3allow"
	"github.com/rtmrec/rtmrec/recorder"
	"github.com/rtmrec/rtmrec/session"
)

// config is everything an operator can set. Each flag may also come from
// the environment as RTMREC_<NAME> (upper case, dashes as underscores); a
// flag on the command line wins.
type config struct {
	Listen           string
	AdminListen      string
	Pprof            bool
	DataDir          string
	AllowPrivateURLs bool
	Dev              bool
	LogLevel         string
	ShutdownTimeout  time.Duration
	DrainTimeout     time.Duration

	RedisURL     string
	NodeID       string
	SoftCapacity int

	TLSCert, TLSKey string
	AllowedOrigins  list

	AuthHS256Secrets secrets
	AuthPublicKeys   list
	AuthLeeway       time.Duration
	InsecureNoAuth   bool

	TrustedProxies list
	ClientIPHeader string

	ConnectTimeout    time.Duration
	DisconnectTimeout time.Duration
	MaxDuration       time.Duration
	MaxSessions       int
	MaxRecordings     int
	MaxConnsPerIP     int
	ConnRatePerIP     float64
	MinFreeDiskMB     uint64

	MaxAuthConnsPerIP      int
	MaxSessionsPerTenant   int
	MaxRecordingsPerTenant int

	MaxTracksPerSession   int
	MaxPausesPerRecording int

	ICEPortMin, ICEPortMax int
	ICEUDPPort, ICETCPPort int
	PublicIPs              list
	ICEServers             list
	ICELoopback            bool

	UploadAccept2xx   bool
	UploadMaxAttempts int
	UploadDeadline    time.Duration
	UploadRetention   time.Duration
	S3Endpoint        string
	S3Region          string
	S3PathStyle       bool
	S3Allow           list

	WebhookSecrets     secrets
	WebhookRetryPeriod time.Duration

	EvidenceKey string

	CompatUploadURL  string
	CompatWebhookURL string

	// devWebhookSecret is the webhook secret -dev made at start (see
	// prepareDev); not a flag.
	devWebhookSecret string
}

// list is a repeatable flag; from the environment it is comma-separated.
type list []string

// secrets is a repeatable flag of secrets. A secret may contain a comma, so
// one given on the command line is taken whole; from the environment the
// values are comma-separated like every list (a secret with a comma goes
// on the command line, or in a -flag=value of a settings file).
type secrets []string

func (s *secrets) String() string { return strings.Repeat("*", len(*s)) }
func (s *secrets) Set(v string) error {
	if v == "" {
		return errors.New("empty secret")
	}
	*s = append(*s, v)
	return nil
}

func (l *list) String() string { return strings.Join(*l, ",") }
func (l *list) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

func parseConfig(args []string, getenv func(string) string) (*config, error) {
	c := &config{}
	fs := c.flags()
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return c.complete(fs, getenv)
}

// flags binds every flag of the server to c; each may also come from the
// environment as RTMREC_<NAME>.
func (c *config) flags() *flag.FlagSet {
	fs := flag.NewFlagSet("rtmrec", flag.ContinueOnError)
	fs.StringVar(&c.Listen, "listen", "127.0.0.1:8080", "HTTP/WebSocket address")
	fs.StringVar(&c.AdminListen, "admin-listen", "", "separate address for /metrics, /healthz and /readyz (default: on -listen)")
	fs.BoolVar(&c.Pprof, "pprof", false, "serve Go's profiles (heap, goroutine, CPU) under /debug/pprof/ on -admin-listen, which it requires: they reveal the process's internals, so never on the client-facing listener")
	fs.StringVar(&c.DataDir, "data-dir", "./data", "where recordings are spooled and durable job state lives")
	fs.BoolVar(&c.AllowPrivateURLs, "allow-private-urls", false, "let upload_url/webhook_url point at loopback and private addresses")
	fs.BoolVar(&c.Dev, "dev", false, "serve the development console, upload and webhook sinks (implies -allow-private-urls; only on a loopback -listen, since it hands out tokens)")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 60*time.Second, "how long a graceful shutdown may take before exiting anyway")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", 0, "on SIGTERM, first drain: /readyz answers 503, new sessions go to other nodes (or get server_busy without a cluster), and running sessions go on until they end or this much time has passed; then the shutdown as with 0 (sessions end with TERM_BY_SERVER_SHUTDOWN, everything is finished, uploaded and reported within -shutdown-timeout)")
	hostname, _ := os.Hostname()
	fs.StringVar(&c.RedisURL, "redis-url", "", "the Redis shared by the nodes of a cluster (redis://, rediss://, unix://, redis+sentinel://; see docs/cluster.md); without it the node runs alone")
	fs.StringVar(&c.NodeID, "node-id", hostname, "this node's name in the cluster, unique and stable across restarts (letters, digits, '.', '_', '-')")
	fs.IntVar(&c.SoftCapacity, "soft-capacity", 0, "in a cluster, sessions above which new sessions are placed on other nodes with room (0: no limit; -max-sessions stays the hard limit)")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "PEM certificate for https/wss (re-read on SIGHUP)")
	fs.StringVar(&c.TLSKey, "tls-key", "", "PEM key for -tls-cert")
	fs.Var(&c.AllowedOrigins, "allowed-origins", "browser origins allowed on /rtm (repeatable; default any)")
	fs.Var(&c.AuthHS256Secrets, "auth-hs256-secret", "JWT HS256 secret (repeatable, for rotation)")
	fs.Var(&c.AuthPublicKeys, "auth-public-key", "PEM file with an RS256/ES256 JWT public key (repeatable)")
	fs.DurationVar(&c.AuthLeeway, "auth-leeway", auth.DefaultLeeway, "clock skew tolerated on a token's exp, nbf and iat, at the upgrade and for the rest of the connection: a connection can start nothing, and its supervisor sessions end, this long after its token's exp")
	fs.BoolVar(&c.InsecureNoAuth, "insecure-no-auth", false, "run without authentication on a non-loopback address")
	fs.DurationVar(&c.ConnectTimeout, "connect-timeout", 15*time.Second, "time for ICE/DTLS to reach CONNECTED")
	fs.DurationVar(&c.DisconnectTimeout, "disconnect-timeout", 10*time.Second, "time DISCONNECTED may last before TERM_BY_MEDIA_TIMEOUT")
	fs.DurationVar(&c.MaxDuration, "max-duration", 0, "end sessions older than this (0: no limit)")
	fs.IntVar(&c.MaxSessions, "max-sessions", 1000, "sessions on the server at once (0: no limit)")
	fs.IntVar(&c.MaxRecordings, "max-recordings", 500, "recordings being written at once (0: no limit)")
	fs.Var(&c.TrustedProxies, "trusted-proxies", "CIDR or address of a load balancer or proxy in front of rtmrec (repeatable). Only from these peers is the client address read from -client-ip-header (from the right, skipping trusted hops); from any other peer the header is ignored, since a client can write it")
	fs.StringVar(&c.ClientIPHeader, "client-ip-header", string(clientaddr.XForwardedFor), "the header the -trusted-proxies write: X-Forwarded-For or Forwarded (RFC 7239). Only this one is read: a proxy that writes one passes the other through from the client")
	// Per-IP limits guard what cannot be attributed to anyone; a verified
	// token is attributable, and its work is bounded per tenant.
	fs.IntVar(&c.MaxConnsPerIP, "max-conns-per-ip", 50, "unauthenticated WebSocket connections open at once per client IP; applies when rtmrec runs without auth, since with auth an unauthenticated connection is refused (0: no limit)")
	fs.Float64Var(&c.ConnRatePerIP, "conn-rate-per-ip", 10, "unauthenticated or failed connection attempts per second per client IP, with bursts of twice that; beyond it they get 429 (floods, clients retrying a bad token). Connections whose token verifies spend none of it, so a contact center's agents behind one NAT address are not throttled by their number (0: no limit)")
	fs.IntVar(&c.MaxAuthConnsPerIP, "max-auth-conns-per-ip", 2000, "connections with a valid token open at once per client IP. High, because a contact center's agents leave through one NAT address (1,000 agents, each reconnecting once, fit), yet a bound on what one leaked token can hold open (0: no limit)")
	fs.IntVar(&c.MaxSessionsPerTenant, "max-sessions-per-tenant", 0, "sessions of one tenant at once, so that on a server shared by several tenants one cannot take every slot (0: only -max-sessions)")
	fs.IntVar(&c.MaxRecordingsPerTenant, "max-recordings-per-tenant", 0, "recordings of one tenant at once (0: only -max-recordings)")
	fs.IntVar(&c.MaxTracksPerSession, "max-tracks-per-session", session.DefaultMaxTracks, fmt.Sprintf("media sections in a session's offers, and tracks it receives over its life (each renegotiated screen share is one more); an offer with more is refused with invalid_sdp. A call has a microphone, a camera and a screen; at most %d, what one recording file holds", recorder.MaxTracks))
	fs.IntVar(&c.MaxPausesPerRecording, "max-pauses-per-recording", recorder.DefaultMaxPauses, "recording_pause requests one recording accepts; after them a pause is refused with server_busy and the recording goes on. Each pause is kept in the manifest and the recording's durable journey")
	fs.Uint64Var(&c.MinFreeDiskMB, "min-free-disk-mb", 1024, "refuse new recordings when the data directory has less free space")
	fs.IntVar(&c.ICEPortMin, "ice-port-min", 0, "lowest UDP port for ICE (0: any)")
	fs.IntVar(&c.ICEPortMax, "ice-port-max", 0, "highest UDP port for ICE (0: any)")
	fs.IntVar(&c.ICEUDPPort, "ice-udp-port", 0, "one UDP port shared by every session (0: ephemeral ports)")
	fs.IntVar(&c.ICETCPPort, "ice-tcp-port", 0, "accept ICE over TCP on this port (0: off)")
	fs.Var(&c.PublicIPs, "public-ip", "public address to advertise in ICE candidates (repeatable)")
	fs.Var(&c.ICEServers, "ice-server", "STUN/TURN URL, e.g. stun:stun.example.com:3478 or turn:user:pass@host:3478 (repeatable)")
	fs.BoolVar(&c.ICELoopback, "ice-loopback", false, "gather loopback candidates (tests in a loopback-only namespace)")
	fs.BoolVar(&c.UploadAccept2xx, "upload-accept-2xx", false, "treat any 2xx upload answer as success (the protocol says only 200)")
	fs.IntVar(&c.UploadMaxAttempts, "upload-max-attempts", 10, "upload attempts before a recording is FAILED")
	fs.DurationVar(&c.UploadDeadline, "upload-deadline", 24*time.Hour, "how long an upload may keep retrying")
	fs.DurationVar(&c.UploadRetention, "upload-retention", 0, "keep uploaded files this long (0: delete after the 200)")
	fs.StringVar(&c.S3Endpoint, "s3-endpoint", "", "endpoint for s3:// uploads to an S3-compatible store")
	fs.StringVar(&c.S3Region, "s3-region", "", "region for s3:// uploads (default from the AWS config)")
	fs.BoolVar(&c.S3PathStyle, "s3-path-style", false, "path-style S3 addressing (most S3-compatible stores)")
	fs.Var(&c.S3Allow, "s3-allow", "bucket or bucket/prefix that s3:// upload URLs may write to with the server's credentials (repeatable; {tenant} in the prefix is the token's tenant, e.g. recordings/{tenant}/). Without any, s3:// is refused")
	fs.Var(&c.WebhookSecrets, "webhook-secret", "secret that signs webhooks (webhook-signature): a Standard Webhooks whsec_<base64> secret, whose decoded key signs, or any other text, used as it is (repeatable for rotation: one signature per secret is sent)")
	fs.DurationVar(&c.WebhookRetryPeriod, "webhook-retry-period", 24*time.Hour, "how long a webhook is retried before it is dead-lettered")
	fs.StringVar(&c.EvidenceKey, "evidence-key", "", "PEM file with an Ed25519 private key (PKCS#8) that signs every recording's manifest; also enables POST /admin/redact")
	fs.StringVar(&c.CompatUploadURL, "compat-upload-url", "", "upload URL template for Ant Media (/{app}/websocket) and WCS (/wcs) publishes, e.g. s3://calls/{tenant}/{stream}/{recording_id}.{ext}; without it they are not recorded")
	fs.StringVar(&c.CompatWebhookURL, "compat-webhook-url", "", "webhook URL for the events of Ant Media and WCS sessions and recordings")
	return fs
}

// complete checks what parseConfig's flag parsing left and applies the
// environment.
func (c *config) complete(fs *flag.FlagSet, getenv func(string) string) (*config, error) {
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	// The environment fills in what the command line did not set, so a flag
	// always wins.
	onCommandLine := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { onCommandLine[f.Name] = true })
	var envErr []error
	fs.VisitAll(func(f *flag.Flag) {
		name := "RTMREC_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(name); v != "" && !onCommandLine[f.Name] {
			if _, ok := f.Value.(*secrets); ok {
				for _, part := range strings.Split(v, ",") {
					if err := fs.Set(f.Name, strings.TrimSpace(part)); err != nil {
						envErr = append(envErr, fmt.Errorf("%s: %w", name, err))
					}
				}
				return
			}
			if err := fs.Set(f.Name, v); err != nil {
				envErr = append(envErr, fmt.Errorf("%s: %w", name, err))
			}
		}
	})
	if err := errors.Join(envErr...); err != nil {
		return nil, err
	}
	if c.Dev {
		c.AllowPrivateURLs = true
	}
	return c, c.validate()
}

// clientAddrs is how client addresses are found behind -trusted-proxies.
func (c *config) clientAddrs() (*clientaddr.Resolver, error) {
	h, err := clientaddr.ParseHeader(c.ClientIPHeader)
	if err != nil {
		return nil, err
	}
	return clientaddr.New(c.TrustedProxies, h)
}

func (c *config) authConfigured() bool {
	return len(c.AuthHS256Secrets) > 0 || len(c.AuthPublicKeys) > 0
}

func (c *config) validate() error {
	var errs []error
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		errs = append(errs, fmt.Errorf("-listen %q: %w", c.Listen, err))
	} else {
		if !c.authConfigured() && !c.InsecureNoAuth && !isLoopback(host) {
			errs = append(errs, fmt.Errorf("authentication is required to listen on %s: set -auth-hs256-secret or -auth-public-key, or pass -insecure-no-auth to run without it", c.Listen))
		}
		if c.Dev && !isLoopback(host) {
			errs = append(errs, fmt.Errorf("-dev only runs on a loopback -listen (127.0.0.1, ::1 or localhost), not %s: it hands out tokens and shows every tenant's sessions to whoever reaches it", c.Listen))
		}
	}
	if _, err := c.clientAddrs(); err != nil {
		errs = append(errs, fmt.Errorf("-trusted-proxies/-client-ip-header: %w", err))
	}
	if _, err := s3allow.Parse(c.S3Allow); err != nil {
		errs = append(errs, fmt.Errorf("-s3-allow: %w", err))
	}
	if c.MaxTracksPerSession < 1 || c.MaxTracksPerSession > recorder.MaxTracks {
		errs = append(errs, fmt.Errorf("-max-tracks-per-session must be 1 to %d", recorder.MaxTracks))
	}
	if c.MaxPausesPerRecording < 1 {
		errs = append(errs, errors.New("-max-pauses-per-recording must be at least 1"))
	}
	if c.AuthLeeway <= 0 {
		errs = append(errs, errors.New("-auth-leeway must be positive"))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("-tls-cert and -tls-key go together"))
	}
	if c.ICEPortMin < 0 || c.ICEPortMax > 65535 || c.ICEPortMin > c.ICEPortMax {
		errs = append(errs, errors.New("-ice-port-min/-ice-port-max must be a range within 0-65535"))
	}
	if c.Pprof && c.AdminListen == "" {
		errs = append(errs, errors.New("-pprof needs -admin-listen: profiles are served only on the admin listener"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("-data-dir is required"))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("-log-level %q: want debug, info, warn or error", c.LogLevel))
	}
	if c.DrainTimeout < 0 || c.SoftCapacity < 0 {
		errs = append(errs, errors.New("-drain-timeout and -soft-capacity must not be negative"))
	}
	if c.RedisURL != "" {
		if err := cluster.ValidNodeID(c.NodeID); err != nil {
			errs = append(errs, fmt.Errorf("-node-id: %w", err))
		}
	} else if c.SoftCapacity > 0 {
		errs = append(errs, errors.New("-soft-capacity places sessions on other nodes of a cluster: it needs -redis-url"))
	}
	if len(c.WebhookSecrets) > 2 {
		errs = append(errs, errors.New("-webhook-secret: at most two secrets (current and next)"))
	}
	if c.CompatUploadURL != "" {
		// Placeholders filled with sample values must give a URL that
		// could be uploaded to.
		if err := checkCompatURL(session.ExpandUploadURL(c.CompatUploadURL, "t", "s", "r", "webm"), "http", "https", "s3"); err != nil {
			errs = append(errs, fmt.Errorf("-compat-upload-url: %w", err))
		}
	}
	if c.CompatWebhookURL != "" {
		if err := checkCompatURL(c.CompatWebhookURL, "http", "https"); err != nil {
			errs = append(errs, fmt.Errorf("-compat-webhook-url: %w", err))
		}
	}
	return errors.Join(errs...)
}

// checkCompatURL checks the form of an operator's URL (where it points is
// checked at every use, like a client's).
func checkCompatURL(raw string, schemes ...string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || !slices.Contains(schemes, u.Scheme) {
		return fmt.Errorf("want an absolute %s URL", strings.Join(schemes, ", "))
	}
	if strings.ContainsAny(raw, "{}") {
		return errors.New("unknown placeholder; the template may use {tenant}, {stream}, {recording_id} and {ext}")
	}
	return nil
}

// isLoopback reports whether a listen host keeps the server on this machine.
// An empty host listens on every interface.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}
