package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rtmrec/rtmrec/internal/netguard"
)

// BenchmarkDeliveries measures end-to-end events per second: durable
// Enqueue (fsync), signed POST, removal of the event file; 64 keys.
func BenchmarkDeliveries(b *testing.B) {
	var got atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		got.Add(1)
	}))
	defer srv.Close()
	o, err := New(Config{
		Dir:     b.TempDir(),
		Guard:   netguard.New(netguard.Config{AllowPrivate: true}),
		Secrets: [][]byte{[]byte("bench-secret")},
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { o.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	payload := json.RawMessage(`{"type":"recording_state","client_id":"c","session_id":"s","data":{"state":"STOPPED"}}`)
	start := time.Now()
	n := 0
	for b.Loop() {
		if _, err := o.Enqueue(srv.URL+"/hook", fmt.Sprint(n%64), payload); err != nil {
			b.Fatal(err)
		}
		n++
	}
	for got.Load() < int64(n) {
		time.Sleep(time.Millisecond)
	}
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "events/s")
}
