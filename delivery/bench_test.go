package delivery

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/rtmrec/rtmrec/internal/ledger"
	"github.com/rtmrec/rtmrec/internal/netguard"
	"github.com/rtmrec/rtmrec/recorder"
	"github.com/rtmrec/rtmrec/upload"
	"github.com/rtmrec/rtmrec/webhook"
)

// BenchmarkStartWithLeftovers measures a start on a data directory that
// holds RTMREC_BENCH_LEFTOVERS (default 10000) recordings an earlier
// process left: failed ones kept for the operator, and uploaded ones
// waiting for their retention to end. Each iteration opens the ledger,
// loads the outbox and the journeys, and schedules them.
func BenchmarkStartWithLeftovers(b *testing.B) {
	n := 10000
	if v, err := strconv.Atoi(os.Getenv("RTMREC_BENCH_LEFTOVERS")); err == nil && v > 0 {
		n = v
	}
	dir := b.TempDir()
	l, err := ledger.Open(dir, ledger.Options{})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	err = l.Update(func(tx *ledger.Tx) error {
		for i := range n {
			jr := &journey{
				ID:    fmt.Sprintf("rec-%06d", i),
				Route: Route{SessionID: "s", UploadURL: "https://uploads.example.com/x?sig=1", WebhookURL: "https://hooks.example.com/h", OrderKey: "s"},
				Manifest: &recorder.Manifest{RecordingID: fmt.Sprintf("rec-%06d", i), Format: recorder.FormatOgg, File: fmt.Sprintf("rec-%06d.ogg", i),
					Tracks: []recorder.TrackStats{{ID: "mid0", Kind: recorder.KindAudio, Codec: recorder.CodecOpus}}},
				State: stateFailed, Reason: "upload_refused: HTTP 403 Forbidden", Decided: now,
			}
			if i%2 == 1 {
				jr.State, jr.Reason = stateUploaded, ""
			}
			if err := saveJourney(tx, jr); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	l.Close()
	guard := netguard.New(netguard.Config{})
	up, _ := upload.New(upload.Config{Guard: guard})
	for b.Loop() {
		l, err := ledger.Open(dir, ledger.Options{})
		if err != nil {
			b.Fatal(err)
		}
		o, err := webhook.New(webhook.Config{Ledger: l, Guard: guard})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := New(Config{Ledger: l, Outbox: o, Uploader: up, Dir: filepath.Join(dir, "recordings"), Retention: time.Hour}); err != nil {
			b.Fatal(err)
		}
		l.Close()
	}
	b.ReportMetric(float64(n), "leftovers")
}

// BenchmarkJourneyCommits runs whole journeys (begin, finish, upload,
// STOPPED, clean-up) for 50 recordings at a time and reports the ledger
// commits (each two fsyncs) per recording: concurrent journeys share them.
func BenchmarkJourneyCommits(b *testing.B) {
	tg, h := newTarget(b, "200"), newHooks(b)
	dir := b.TempDir()
	e := start(b, dir, nil)
	recs := 0
	for b.Loop() {
		var all []*recorder.Recording
		for i := range 50 {
			id := fmt.Sprintf("r%d-%d", recs, i)
			rec := record(b, filepath.Join(dir, "recordings"), id, 200*time.Millisecond)
			if err := e.journeys.Begin(route(tg, h, id), rec.Manifest(), nil); err != nil {
				b.Fatal(err)
			}
			all = append(all, rec)
		}
		done := make(chan struct{}, len(all))
		for _, rec := range all {
			go func() {
				m, err := rec.Stop()
				_ = e.journeys.Finish(rec.ID(), m, err)
				done <- struct{}{}
			}()
		}
		for range all {
			<-done
		}
		for _, rec := range all {
			for h.final(rec.ID()) == "" {
				time.Sleep(time.Millisecond)
			}
		}
		recs += len(all)
	}
	e.stop()
	b.ReportMetric(float64(e.commits.Load())/float64(recs), "commits/recording")
}
