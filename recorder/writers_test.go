package recorder

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/rtmrec/rtmrec/internal/testlog"
)

// feedTone writes n packets of the test tone to a track, 20 ms apart on the
// given clock base.
func feedTone(tr *Track, opus [][]byte, ssrc uint32, base time.Time, n int) {
	s := &rtpStream{pt: 111, ssrc: ssrc}
	for k := range n {
		tr.WriteRTP(s.packet(opus[k%len(opus)], false), base.Add(time.Duration(k)*20*time.Millisecond))
		s.ts += 960
	}
}

// TestSharedWritersRecordEveryRecordingWhole runs many recordings, fed from
// as many goroutines at once, on two shared workers: every file is complete
// (every packet written, none dropped) and decodes cleanly.
func TestSharedWritersRecordEveryRecordingWhole(t *testing.T) {
	opus := oggPackets(t)
	w := NewWriters(WritersConfig{SyncInterval: 20 * time.Millisecond, MaxWorkers: 2})
	defer func() {
		if err := w.Close(); err != nil {
			t.Error(err)
		}
	}()
	dir := t.TempDir()
	const recordings, packets = 40, 250 // 5 s of audio each
	ms := make([]*Manifest, recordings)
	var wg sync.WaitGroup
	for i := range recordings {
		wg.Go(func() {
			rec, err := Start(Config{Dir: dir, RecordingID: fmt.Sprintf("r%02d", i), Writers: w, QueueSize: packets + 1,
				Tracks: []TrackInfo{{ID: "a", Codec: CodecOpus}}})
			if err != nil {
				t.Error(err)
				return
			}
			tr, err := rec.AddTrack(TrackInfo{ID: "a", Codec: CodecOpus})
			if err != nil {
				t.Error(err)
				return
			}
			feedTone(tr, opus, uint32(i+1), time.Now(), packets)
			if ms[i], err = rec.Stop(); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for i, m := range ms {
		if m == nil {
			continue
		}
		ts := m.Tracks[0]
		if ts.PacketsReceived != packets || ts.PacketsDropped != 0 || ts.FramesWritten != packets {
			t.Errorf("recording %d: received %d, dropped %d, written %d; want %d, 0, %d", i, ts.PacketsReceived, ts.PacketsDropped, ts.FramesWritten, packets, packets)
		}
		streams := parseOggFile(t, m.Path)
		if len(streams) != 1 || !streams[0].eos || !streams[0].granulesOK {
			t.Errorf("recording %d: ogg streams %+v", i, streams)
		}
	}
	if out := ffmpegDecode(t, ms[0].Path); out != "" {
		t.Errorf("ffmpeg: %s", out)
	}
}

// TestSharedWritersServeOthersWhileOneIsStuck holds one recording's writer
// in a blocking call (its keyframe request, made on the writer, stands in
// for a write to a disk that hangs): the other recordings on the same
// Writers are still written and stopped, and the stuck one finishes once
// released.
func TestSharedWritersServeOthersWhileOneIsStuck(t *testing.T) {
	opus := oggPackets(t)
	w := NewWriters(WritersConfig{SyncInterval: 20 * time.Millisecond, MaxWorkers: 3})
	defer w.Close()
	dir := t.TempDir()
	release := make(chan struct{})
	var released sync.Once
	defer released.Do(func() { close(release) })
	stuckIn := make(chan struct{})
	var once sync.Once
	stuck, err := Start(Config{Dir: dir, RecordingID: "stuck", Format: FormatWebM, Writers: w, RequestKeyframe: func(string) {
		once.Do(func() { close(stuckIn) })
		<-release
	}})
	if err != nil {
		t.Fatal(err)
	}
	stuckDone := make(chan error, 1)
	go func() {
		// Adding a video track requests a keyframe on the writer.
		_, err := stuck.AddTrack(TrackInfo{ID: "v", Kind: KindVideo, Codec: CodecVP8})
		stuckDone <- err
	}()
	<-stuckIn
	for i := range 10 {
		rec, err := Start(Config{Dir: dir, RecordingID: fmt.Sprintf("ok%d", i), Writers: w})
		if err != nil {
			t.Fatal(err)
		}
		tr, err := rec.AddTrack(TrackInfo{ID: "a", Codec: CodecOpus})
		if err != nil {
			t.Fatal(err)
		}
		feedTone(tr, opus, 7, time.Now(), 100)
		m, err := rec.Stop()
		if err != nil || m.Tracks[0].FramesWritten != 100 {
			t.Fatalf("recording %d beside the stuck one: %v, %+v", i, err, m)
		}
	}
	released.Do(func() { close(release) })
	if err := <-stuckDone; err != nil {
		t.Fatal(err)
	}
	// It received no media: it finishes with ErrNoMedia.
	if _, err := stuck.Stop(); !errors.Is(err, ErrNoMedia) {
		t.Fatalf("stop the released recording: %v", err)
	}
}

// TestAFullQueueDropsAndSaysSo holds a recording's writer (as a hung disk
// would) while its audio keeps coming: what its queue cannot hold is
// dropped, counted in the manifest and on the metric, and the log says so
// once when it starts and again when the recording stops; what was queued
// is written once the writer is back.
func TestAFullQueueDropsAndSaysSo(t *testing.T) {
	opus := oggPackets(t)
	w := NewWriters(WritersConfig{SyncInterval: 20 * time.Millisecond})
	defer w.Close()
	var logs testlog.Buffer
	metrics := NewMetrics(prometheus.NewRegistry())
	release := make(chan struct{})
	var released sync.Once
	defer released.Do(func() { close(release) })
	stuckIn := make(chan struct{})
	var once sync.Once
	const queued, sent = 8, 30
	rec, err := Start(Config{Dir: t.TempDir(), RecordingID: "full", Format: FormatWebM, Writers: w, QueueSize: queued,
		Logger: slog.New(slog.NewJSONHandler(&logs, nil)), Metrics: metrics,
		RequestKeyframe: func(string) {
			once.Do(func() { close(stuckIn) })
			<-release
		}})
	if err != nil {
		t.Fatal(err)
	}
	audio, err := rec.AddTrack(TrackInfo{ID: "a", Codec: CodecOpus})
	if err != nil {
		t.Fatal(err)
	}
	videoAdded := make(chan error, 1)
	go func() {
		_, err := rec.AddTrack(TrackInfo{ID: "v", Kind: KindVideo, Codec: CodecVP8}) // its keyframe request holds the writer
		videoAdded <- err
	}()
	<-stuckIn
	feedTone(audio, opus, 7, time.Now(), sent)
	released.Do(func() { close(release) })
	if err := <-videoAdded; err != nil {
		t.Fatal(err)
	}
	m, err := rec.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Tracks[0]; got.PacketsDropped != sent-queued || got.PacketsReceived != sent || got.FramesWritten != queued {
		t.Errorf("audio track: %d received, %d dropped, %d written; want %d, %d, %d", got.PacketsReceived, got.PacketsDropped, got.FramesWritten, sent, sent-queued, queued)
	}
	var dropped dto.Metric
	if err := metrics.PacketsDropped.Write(&dropped); err != nil {
		t.Fatal(err)
	}
	if got := dropped.GetCounter().GetValue(); got != sent-queued {
		t.Errorf("packets dropped on the metric: %v, want %d", got, sent-queued)
	}
	out := logs.String()
	if n := strings.Count(out, `"level":"WARN","msg":"recording queue full: packets dropped"`); n != 1 {
		t.Errorf("%d warnings that the queue is full, want 1:\n%s", n, out)
	}
	if want := fmt.Sprintf(`"level":"WARN","msg":"recording stopped","recording_id":"full","duration_ms":%d,"size_bytes":%d,"packets_dropped":%d`, m.DurationMS, m.SizeBytes, sent-queued); !strings.Contains(out, want) {
		t.Errorf("the stop's log line does not say what was dropped; want %s in:\n%s", want, out)
	}
}

// TestSharedWritersFlushARunningRecording checks the sync rounds: what a
// running recording wrote reaches its file (complete Ogg pages, which
// repair would keep) without a Stop.
func TestSharedWritersFlushARunningRecording(t *testing.T) {
	opus := oggPackets(t)
	w := NewWriters(WritersConfig{SyncInterval: 20 * time.Millisecond})
	defer w.Close()
	rec, err := Start(Config{Dir: t.TempDir(), RecordingID: "live", Writers: w, Tracks: []TrackInfo{{ID: "a", Codec: CodecOpus}}})
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Stop()
	tr, err := rec.AddTrack(TrackInfo{ID: "a", Codec: CodecOpus})
	if err != nil {
		t.Fatal(err)
	}
	header, err := os.Stat(rec.Path())
	if err != nil {
		t.Fatal(err)
	}
	feedTone(tr, opus, 1, time.Now(), 150) // 3 s: more than the mux delay and a page
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := os.Stat(rec.Path())
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > header.Size()+1000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("file still %d bytes (headers %d): the running recording was never flushed", st.Size(), header.Size())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if streams := parseOggFile(t, rec.Path()); len(streams) != 1 || streams[0].packets == 0 {
		t.Fatalf("the flushed part does not parse as pages of media: %+v", streams)
	}
}

func TestWritersCloseReportsRecordingsStillRunning(t *testing.T) {
	w := NewWriters(WritersConfig{})
	rec, err := Start(Config{Dir: t.TempDir(), RecordingID: "left", Writers: w})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rec.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("close after every stop: %v", err)
	}
	w2 := NewWriters(WritersConfig{})
	if _, err := Start(Config{Dir: t.TempDir(), RecordingID: "running", Writers: w2}); err != nil {
		t.Fatal(err)
	}
	if err := w2.Close(); err == nil {
		t.Fatal("closing writers under a running recording said nothing")
	}
	if _, err := Start(Config{Dir: t.TempDir(), RecordingID: "late", Writers: w2}); err == nil {
		t.Fatal("a recording started on closed writers")
	}
}

func TestPacketBuffers(t *testing.T) {
	var p packetBuffers
	for _, tc := range []struct{ n, cap int }{{0, smallPacketBuf}, {120, smallPacketBuf}, {512, smallPacketBuf}, {513, largePacketBuf}, {1500, largePacketBuf}, {9000, 9000}} {
		bp := p.get(tc.n)
		if len(*bp) != tc.n || cap(*bp) != tc.cap {
			t.Errorf("get(%d): len %d cap %d, want cap %d", tc.n, len(*bp), cap(*bp), tc.cap)
		}
		p.put(bp)
	}
}
