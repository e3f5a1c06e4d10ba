package upload

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/rtmrec/rtmrec/internal/netguard"
)

// BenchmarkUploadHTTP measures the throughput of an attempt (streamed PUT
// from disk, outcome) to a local target, one 64 MiB file per iteration.
func BenchmarkUploadHTTP(b *testing.B) {
	const size = 64 << 20
	file, _ := writeFile(b, b.TempDir(), size)
	benchUploads(b, file, size)
}

// BenchmarkUploadPeakRSS uploads one large file (RTMREC_BENCH_UPLOAD_MB,
// default 256) and reports the process's peak resident memory: the body is
// streamed from disk, so it stays flat whatever the file's size. The peak
// is the whole process's: run it on its own (-bench UploadPeakRSS).
func BenchmarkUploadPeakRSS(b *testing.B) {
	mb := 256
	if v, err := strconv.Atoi(os.Getenv("RTMREC_BENCH_UPLOAD_MB")); err == nil && v > 0 {
		mb = v
	}
	// Written in chunks, so that making the file does not raise the peak.
	file := filepath.Join(b.TempDir(), "big.webm")
	f, err := os.Create(file)
	if err != nil {
		b.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for range mb {
		if _, err := f.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	f.Close()
	benchUploads(b, file, int64(mb)<<20)
	b.ReportMetric(peakRSSMB(b), "peakRSS_MB")
}

// benchUploads uploads file once per iteration to a local target and
// checks every byte arrived.
func benchUploads(b *testing.B, file string, size int64) {
	var got atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		got.Add(n)
	}))
	defer srv.Close()
	u, err := New(Config{Guard: netguard.New(netguard.Config{AllowPrivate: true})})
	if err != nil {
		b.Fatal(err)
	}
	defer u.CloseIdle()
	b.SetBytes(size)
	i := 0
	for b.Loop() {
		i++
		if out := u.Put(context.Background(), Job{File: file, URL: srv.URL + "/x?sig=1"}); !out.OK {
			b.Fatalf("upload failed: %+v", out)
		}
	}
	if got.Load() != int64(i)*size {
		b.Fatalf("received %d bytes, want %d", got.Load(), int64(i)*size)
	}
}

// peakRSSMB reads VmHWM, the process's peak resident set, from /proc.
func peakRSSMB(b *testing.B) float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Skipf("no /proc: %v", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			return float64(kb) / 1024
		}
	}
	return 0
}
