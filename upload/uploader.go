// Package upload puts a finished recording where the client asked: an HTTP
// PUT to a pre-signed URL, or s3://bucket/key with the server's own
// credentials. One call is one attempt; it says whether it worked, and if
// not whether another attempt could help and why, in words a customer can
// act on. Retrying and remembering attempts across restarts is the durable
// journey's business (package delivery).
package upload

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rtmrec/rtmrec/internal/netguard"
)

// Config configures an Uploader. Zero values take the documented defaults.
type Config struct {
	// Guard checks every connection of an HTTP upload. Required.
	Guard *netguard.Guard
	// AcceptAny2xx counts any 2xx as success; by default only 200 does
	// (docs/recordings.md).
	AcceptAny2xx bool
	// RequestTimeout fails an attempt when the body makes no progress, or
	// no response comes, for this long; default 10m. It is an idle timeout,
	// not a total one, so large files on slow links still go through.
	RequestTimeout time.Duration
	// S3 configures s3:// uploads.
	S3 S3Config
	// Logger receives the uploader's logs; nil discards them.
	Logger *slog.Logger
	// Metrics registers the uploader's metrics; nil skips them.
	Metrics prometheus.Registerer
}

// Job is one file to upload.
type Job struct {
	// File is the path of the finished file.
	File string
	// ContentType is sent as the Content-Type of the upload.
	ContentType string
	// URL is an https (or http) pre-signed PUT URL, or s3://bucket/key. Its
	// query string is a secret: it is never logged or put in a reason.
	URL string
}

// Outcome is the result of one attempt.
type Outcome struct {
	// OK is true when the target took the whole file.
	OK bool
	// Retry says whether another attempt could succeed (network errors,
	// timeouts, 408, 429, 5xx); false with !OK means the target refused.
	Retry bool
	// Status is the HTTP status seen, 0 if none.
	Status int
	// Size is the number of bytes uploaded, on success.
	Size int64
	// Reason says why the attempt failed ("HTTP 403 Forbidden",
	// "connection refused", "timed out", ...): no Go package names, no URL.
	Reason string
	// RetryAfter is the target's Retry-After, if it gave one.
	RetryAfter time.Duration
}

// Uploader makes upload attempts. It is safe for concurrent use.
type Uploader struct {
	cfg  Config
	log  *slog.Logger
	m    *metrics
	http *http.Client
	s3   s3Client
}

// New returns an Uploader for cfg.
func New(cfg Config) (*Uploader, error) {
	if cfg.Guard == nil {
		return nil, errors.New("upload: Config.Guard is required")
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 10 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, err
	}
	return &Uploader{
		cfg:  cfg,
		log:  cfg.Logger,
		m:    m,
		http: cfg.Guard.HTTPClient(0), // timeouts are per attempt, see putHTTP
		s3:   s3Client{cfg: cfg.S3},
	}, nil
}

// Put makes one attempt to upload job. A cancelled ctx ends it with
// Retry set: the shutdown, not the target, stopped it.
func (u *Uploader) Put(ctx context.Context, job Job) Outcome {
	u.m.inFlight.Inc()
	start := time.Now()
	var out Outcome
	if strings.HasPrefix(job.URL, "s3://") {
		out = u.putS3(ctx, job)
	} else {
		out = u.putHTTP(ctx, job)
	}
	u.m.inFlight.Dec()
	outcome := "retry"
	switch {
	case out.OK:
		outcome = "success"
	case !out.Retry:
		outcome = "failure"
	}
	u.m.attempts.WithLabelValues(outcome).Inc()
	u.m.duration.WithLabelValues(outcome).Observe(time.Since(start).Seconds())
	return out
}

// CloseIdle closes idle connections, whose goroutines must not outlive the
// server.
func (u *Uploader) CloseIdle() {
	u.http.CloseIdleConnections()
	u.s3.closeIdle()
}
