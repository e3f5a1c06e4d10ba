package netguard

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// MaxRedirects is how many redirects a guarded client follows.
const MaxRedirects = 5

// HTTPClient returns a client whose connections all go through
// DialContext, with proxies off (a proxy would dial on our behalf, out of
// the guard's sight) and a redirect policy that allows only http and https
// targets, at most MaxRedirects hops, and never a change of method: Go
// turns a PUT or POST answered with 301/302/303 into a GET, whose 200
// would wrongly count as an upload or a delivery. Such a redirect is
// returned to the caller as is. timeout is the client's total timeout per
// request; 0 means none. Call CloseIdleConnections on the client when done
// so no connection goroutines are left behind.
func (g *Guard) HTTPClient(timeout time.Duration) *http.Client {
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           g.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          64,
		MaxIdleConnsPerHost:   8,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return &http.Client{
		Transport:     tr,
		Timeout:       timeout,
		CheckRedirect: checkRedirect,
	}
}

func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= MaxRedirects {
		return fmt.Errorf("stopped after %d redirects", MaxRedirects)
	}
	if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
		return fmt.Errorf("redirect to scheme %q: %w", req.URL.Scheme, ErrInvalidURL)
	}
	if req.URL.User != nil {
		return fmt.Errorf("redirect with userinfo: %w", ErrInvalidURL)
	}
	if len(via) > 0 && req.Method != via[0].Method {
		return http.ErrUseLastResponse
	}
	return nil
}

// IsRefused reports whether err comes from the guard refusing a URL or an
// address (not from the network), so retrying cannot help.
func IsRefused(err error) bool {
	return errors.Is(err, ErrForbidden) || errors.Is(err, ErrInvalidURL)
}

// ScrubError rewrites the *url.Error that http.Client returns, whose text
// quotes the full request URL (pre-signed query included), so that it
// names only the redacted URL. The wrapped cause is kept for errors.Is/As.
func ScrubError(err error) error {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return err
	}
	return &scrubbed{op: ue.Op, url: Redact(ue.URL), err: ue.Err}
}

type scrubbed struct {
	op, url string
	err     error
}

func (e *scrubbed) Error() string { return e.op + " " + e.url + ": " + e.err.Error() }
func (e *scrubbed) Unwrap() error { return e.err }

// Timeout reports whether the cause was a timeout, as *url.Error does.
func (e *scrubbed) Timeout() bool {
	var t interface{ Timeout() bool }
	return errors.As(e.err, &t) && t.Timeout()
}

// Explain turns an error of a guarded request into a short reason a
// customer can act on ("connection refused", "timed out", "TLS handshake
// failed", "address not allowed: ..."), never naming Go packages and never
// quoting a query string.
func Explain(err error) string {
	var ne interface{ Timeout() bool }
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrForbidden):
		var ae *addrError
		if errors.As(err, &ae) {
			return "address not allowed: " + ae.what
		}
		return "address not allowed"
	case errors.Is(err, ErrInvalidURL):
		return "URL not allowed"
	case errors.Is(err, ErrResolve):
		return "host name could not be resolved"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, net.ErrClosed),
		errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "connection reset"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "host unreachable"
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, context.DeadlineExceeded):
		return "timed out"
	}
	var te *tls.CertificateVerificationError
	var re tls.RecordHeaderError
	if errors.As(err, &te) || errors.As(err, &re) || strings.Contains(err.Error(), "tls: ") {
		return "TLS handshake failed"
	}
	if strings.Contains(err.Error(), "redirect") {
		return "redirect not allowed"
	}
	return "network error"
}
