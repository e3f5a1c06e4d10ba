package upload

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/rtmrec/rtmrec/internal/backoff"
	"github.com/rtmrec/rtmrec/internal/netguard"
)

// maxDrain is how much of a response body is read so the connection can
// be reused; anything longer is cut off.
const maxDrain = 64 << 10

// putHTTP makes one HTTP PUT of the job's file to its URL (contract §4).
// The body streams from disk, so memory stays constant for any file size;
// GetBody reopens the file so a 307/308 redirect can resend it.
func (q *Queue) putHTTP(ctx context.Context, r *record) outcome {
	f, err := os.Open(r.Job.File)
	if err != nil {
		return outcome{reason: fmt.Sprintf("open file: %v", err)}
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return outcome{reason: fmt.Sprintf("stat file: %v", err)}
	}
	size := fi.Size()

	// The idle timer cancels the attempt when neither the body moves nor an
	// answer comes for RequestTimeout; every read of the body re-arms it.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	errIdle := fmt.Errorf("no progress for %s", q.cfg.RequestTimeout)
	idle := time.AfterFunc(q.cfg.RequestTimeout, func() { cancel(errIdle) })
	defer idle.Stop()
	// Each body counts its own bytes: after a 307/308 the transport may
	// still be writing the first body while the second one starts, and only
	// the body the final answer is about decides whether all was sent.
	var total atomic.Int64
	var last atomic.Pointer[atomic.Int64]
	defer func() { q.m.bytes.Add(float64(total.Load())) }()
	wrap := func(f *os.File) io.ReadCloser {
		n := new(atomic.Int64)
		last.Store(n)
		return &progressReader{f: f, idle: idle, timeout: q.cfg.RequestTimeout, n: n, total: &total}
	}

	req, err := http.NewRequestWithContext(ctx, http.MethodPut, r.Job.URL, nil)
	if err != nil {
		f.Close()
		return outcome{reason: "bad URL"}
	}
	req.ContentLength = size
	if size > 0 {
		req.Body = wrap(f)
		req.GetBody = func() (io.ReadCloser, error) {
			f, err := os.Open(r.Job.File)
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
	if r.Job.ContentType != "" {
		req.Header.Set("Content-Type", r.Job.ContentType)
	}

	resp, err := q.http.Do(req)
	if err != nil {
		if ctx.Err() != nil && context.Cause(ctx) == errIdle {
			return outcome{retry: true, reason: "timeout: " + errIdle.Error()}
		}
		err = netguard.ScrubError(err)
		return outcome{retry: !netguard.IsRefused(err), reason: err.Error()}
	}
	idle.Reset(q.cfg.RequestTimeout)
	_, _ = io.CopyN(io.Discard, resp.Body, maxDrain)
	resp.Body.Close()
	var sent int64
	if n := last.Load(); n != nil {
		sent = n.Load()
	}
	return classify(resp, size, sent, q.cfg.AcceptAny2xx)
}

func isSuccess(status int, any2xx bool) bool {
	return status == http.StatusOK || (any2xx && status >= 200 && status < 300)
}

// classify turns an answer into an outcome: success only for 200 (any 2xx
// if allowed); 408, 429 and 5xx are worth retrying (honouring Retry-After);
// every other status, an unfollowed redirect included, is the target
// refusing this upload and fails at once.
func classify(resp *http.Response, size, sent int64, any2xx bool) outcome {
	st := resp.StatusCode
	reason := fmt.Sprintf("upload target answered %d %s", st, http.StatusText(st))
	switch {
	case isSuccess(st, any2xx) && sent == size:
		return outcome{ok: true, status: st, size: size}
	case isSuccess(st, any2xx):
		// The target answered before taking the whole body: a success that
		// would leave a truncated file behind.
		return outcome{retry: true, status: st,
			reason: fmt.Sprintf("answered %d after %d of %d bytes", st, sent, size)}
	case st == http.StatusRequestTimeout || st == http.StatusTooManyRequests || st >= 500:
		return outcome{retry: true, status: st, reason: reason, retryAfter: backoff.RetryAfter(resp.Header, time.Now())}
	case st >= 300 && st < 400:
		return outcome{status: st, reason: reason + " (redirect not followed)"}
	default:
		return outcome{status: st, reason: reason}
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
