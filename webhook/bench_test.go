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

	"github.com/rtmrec/rtmrec/internal/ledger"
	"github.com/rtmrec/rtmrec/internal/netguard"
)

// BenchmarkDeliveries measures end-to-end events per second: durable
// Publish (a ledger commit shared by what is queued together), signed
// POST, removal from the ledger; 64 keys.
func BenchmarkDeliveries(b *testing.B) {
	var got atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		got.Add(1)
	}))
	defer srv.Close()
	l, err := ledger.Open(b.TempDir(), ledger.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	o, err := New(Config{
		Ledger:  l,
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
		o.Publish(Event{ID: EventID(fmt.Sprint(n)), Key: fmt.Sprint(n % 64), URL: srv.URL + "/hook", Payload: payload}, nil)
		n++
	}
	for got.Load() < int64(n) {
		time.Sleep(time.Millisecond)
	}
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "events/s")
}
