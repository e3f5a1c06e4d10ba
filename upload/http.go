package upload

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rtmrec/rtmrec/internal/backoff"
	"github.com/rtmrec/rtmrec/internal/netguard"
)

// maxDrain is how much of a response body is read so the connection can
// be reused; anything longer is cut off.
const maxDrain = 64 << 10

// putHTTP makes one HTTP PUT of the job's file to its URL (docs/recordings.md).
// The body streams from disk, so memory stays constant for any file size;
// GetBody reopens the file so a 307/308 redirect can resend it.
func (u *Uploader) putHTTP(ctx context.Context, job Job) Outcome {
	f, err := os.Open(job.File)
	if err != nil {
		return fileProblem(err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fileProblem(err)
	}
	size := fi.Size()

	// The idle timer cancels the attempt when neither the body moves nor an
	// answer comes for RequestTimeout; every read of the body re-arms it.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	errIdle := fmt.Errorf("no progress for %s", u.cfg.RequestTimeout)
	idle := time.AfterFunc(u.cfg.RequestTimeout, func() { cancel(errIdle) })
	defer idle.Stop()
	// Each body counts its own bytes: after a 307/308 the transport may
	// still be writing the first body while the second one starts, and only
	// the body the final answer is about decides whether all was sent.
	var total atomic.Int64
	var last atomic.Pointer[atomic.Int64]
	defer func() { u.m.bytes.Add(float64(total.Load())) }()
	wrap := func(f *os.File) io.ReadCloser {
		n := new(atomic.Int64)
		last.Store(n)
		return &progressReader{f: f, idle: idle, timeout: u.cfg.RequestTimeout, n: n, total: &total}
	}

	req, err := http.NewRequestWithContext(ctx, http.MethodPut, job.URL, nil)
	if err != nil {
		f.Close()
		return Outcome{Reason: "malformed upload URL"}
	}
	req.ContentLength = size
	if size > 0 {
		req.Body = wrap(f)
		req.GetBody = func() (io.ReadCloser, error) {
			f, err := os.Open(job.File)
			if err != nil {
				return nil, err
			}
			return wrap(f), nil
		}
	} else {
		f.Close()
		// NoBody makes the client send "Content-Length: 0" explicitly.
		req.Body = http.NoBody
		req.GetBody = func() (io.ReadCloser, error) { return http.NoBody, nil }
	}
	if job.ContentType != "" {
		req.Header.Set("Content-Type", job.ContentType)
	}

	resp, err := u.http.Do(req)
	if err != nil {
		if ctx.Err() != nil && context.Cause(ctx) == errIdle {
			return Outcome{Retry: true, Reason: "timed out: " + errIdle.Error()}
		}
		return Outcome{Retry: !netguard.IsRefused(err), Reason: netguard.Explain(err)}
	}
	idle.Reset(u.cfg.RequestTimeout)
	_, _ = io.CopyN(io.Discard, resp.Body, maxDrain)
	resp.Body.Close()
	var sent int64
	if n := last.Load(); n != nil {
		sent = n.Load()
	}
	return classify(resp, size, sent, u.cfg.AcceptAny2xx)
}

// fileProblem is the outcome of a recording file that cannot be read: the
// recording is gone from the data directory, which no retry will mend.
func fileProblem(err error) Outcome {
	if errors.Is(err, fs.ErrNotExist) {
		return Outcome{Reason: "the recording file is missing from the data directory"}
	}
	return Outcome{Retry: true, Reason: "the recording file cannot be read"}
}

func isSuccess(status int, any2xx bool) bool {
	return status == http.StatusOK || (any2xx && status >= 200 && status < 300)
}

// classify turns an answer into an outcome: success only for 200 (any 2xx
// if allowed); 408, 429 and 5xx are worth retrying (honouring Retry-After);
// every other status, an unfollowed redirect included, is the target
// refusing this upload and fails at once.
func classify(resp *http.Response, size, sent int64, any2xx bool) Outcome {
	st := resp.StatusCode
	reason := strings.TrimSpace(fmt.Sprintf("HTTP %d %s", st, http.StatusText(st)))
	switch {
	case isSuccess(st, any2xx) && sent == size:
		return Outcome{OK: true, Status: st, Size: size}
	case isSuccess(st, any2xx):
		// The target answered before taking the whole body: a success that
		// would leave a truncated file behind.
		return Outcome{Retry: true, Status: st,
			Reason: fmt.Sprintf("HTTP %d after %d of %d bytes", st, sent, size)}
	case st == http.StatusRequestTimeout || st == http.StatusTooManyRequests || st >= 500:
		return Outcome{Retry: true, Status: st, Reason: reason, RetryAfter: backoff.RetryAfter(resp.Header, time.Now())}
	case st >= 300 && st < 400:
		return Outcome{Status: st, Reason: reason + " (redirect not followed)"}
	default:
		return Outcome{Status: st, Reason: reason}
	}
}

// progressReader counts the bytes read from the file and re-arms the idle
// timer on each read.
type progressReader struct {
	f       *os.File
	idle    *time.Timer
	timeout time.Duration
	n       *atomic.Int64 // this body's bytes
	total   *atomic.Int64 // every body's bytes, for the metric
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.f.Read(b)
	if n > 0 {
		p.idle.Reset(p.timeout)
		p.n.Add(int64(n))
		p.total.Add(int64(n))
	}
	return n, err
}

func (p *progressReader) Close() error { return p.f.Close() }
