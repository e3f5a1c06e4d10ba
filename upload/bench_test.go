package upload

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rtmrec/rtmrec/internal/netguard"
)

// BenchmarkUploadHTTP measures the throughput of the whole path (job file
// fsync, streamed PUT from disk, result) to a local target, one 64 MiB
// file per iteration.
func BenchmarkUploadHTTP(b *testing.B) {
	const size = 64 << 20
	var got atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		got.Add(n)
	}))
	defer srv.Close()
	file, _ := writeFile(b, b.TempDir(), size)
	results := make(chan Result, 1)
	q, err := New(Config{
		Dir:       b.TempDir(),
		Guard:     netguard.New(netguard.Config{AllowPrivate: true}),
		Retention: time.Hour, // every iteration uploads the same file
		OnResult:  func(r Result) { results <- r },
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- q.Run(ctx) }()
	defer func() { cancel(); <-done }()

	b.SetBytes(size)
	i := 0
	for b.Loop() {
		i++
		if err := q.Enqueue(Job{ID: strconv.Itoa(i), File: file, URL: srv.URL + "/x?sig=1"}); err != nil {
			b.Fatal(err)
		}
		if r := <-results; !r.OK {
			b.Fatalf("upload failed: %+v", r)
		}
	}
	if got.Load() != int64(i)*size {
		b.Fatalf("received %d bytes, want %d", got.Load(), int64(i)*size)
	}
}
