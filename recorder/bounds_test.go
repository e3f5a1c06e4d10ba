package recorder

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestPauseViewMatchesTheWalk checks the view's lookup against the walk over every span it
// replaced, at random times around random spans, with a pause open or not.
func TestPauseViewMatchesTheWalk(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	walk := func(spans []pauseWall, local int64) int64 {
		var s int64
		for _, p := range spans {
			end := p.end
			if end == 0 || end > local {
				end = local
			}
			if end > p.start {
				s += end - p.start
			}
		}
		return s
	}
	for trial := range 200 {
		v := newPauseView()
		var spans []pauseWall
		at := int64(1e9)
		n := rng.IntN(40)
		for i := range n {
			at += rng.Int64N(5e9)
			v = v.paused(at)
			spans = append(spans, pauseWall{start: at})
			if i == n-1 && trial%2 == 0 {
				break // leave the last one open
			}
			at += rng.Int64N(3e9) // zero-length pauses too
			v = v.resumed(at)
			spans[len(spans)-1].end = at
		}
		for range 50 {
			local := rng.Int64N(at + 10e9)
			if got, want := v.skipped(local), walk(spans, local); got != want {
				t.Fatalf("trial %d: skipped(%d) = %d, the walk says %d (spans %v)", trial, local, got, want, spans)
			}
		}
	}
}

// TestTenThousandPausesBounded: a client pausing and resuming 10,000 times gets its first
// MaxPauses pauses, then ErrTooManyPauses, while the recording goes on and finishes with
// exactly MaxPauses pauses in its manifest.
func TestTenThousandPausesBounded(t *testing.T) {
	md := loadMedia(t)
	clock := newTestClock()
	rec, err := Start(Config{Dir: t.TempDir(), RecordingID: "r-pauses", Now: clock.Now, PauseMode: PauseSkip,
		Tracks: []TrackInfo{{ID: "a", Codec: CodecOpus}}})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := rec.AddTrack(TrackInfo{ID: "a", Codec: CodecOpus})
	if err != nil {
		t.Fatal(err)
	}
	start := clock.Now()
	for _, e := range opusEvents(md, streamSpec{end: time.Second, ssrc: 9}) {
		tr.WriteRTP(e.pkt, start.Add(e.at))
	}
	clock.Set(start.Add(time.Second))
	accepted, refused := 0, 0
	for range 10_000 {
		clock.Set(clock.Now().Add(time.Millisecond))
		ok, err := rec.Pause()
		switch {
		case errors.Is(err, ErrTooManyPauses):
			refused++
			if rec.Paused() {
				t.Fatal("a refused pause paused the recording")
			}
		case err != nil || !ok:
			t.Fatalf("pause %d: %v, %v", accepted, ok, err)
		default:
			accepted++
		}
		clock.Set(clock.Now().Add(time.Millisecond))
		rec.Resume()
	}
	if accepted != DefaultMaxPauses || refused != 10_000-DefaultMaxPauses {
		t.Fatalf("%d pauses accepted, %d refused; want %d accepted", accepted, refused, DefaultMaxPauses)
	}
	m, err := rec.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Pauses) != DefaultMaxPauses || m.Tracks[0].FramesWritten != 50 {
		t.Fatalf("manifest: %d pauses, %d frames", len(m.Pauses), m.Tracks[0].FramesWritten)
	}
	checkManifest(t, m, StateFinished)
}

// BenchmarkFileTimeSkip is the per-packet cost of the file time in PauseSkip mode, with as
// many pauses as a recording may have (and 10,000, for an operator who allows that many).
func BenchmarkFileTimeSkip(b *testing.B) {
	for _, n := range []int{0, DefaultMaxPauses, 10_000} {
		b.Run(fmt.Sprintf("%dpauses", n), func(b *testing.B) {
			r := &Recording{cfg: Config{PauseMode: PauseSkip}, t0: 1}
			v := newPauseView()
			at := int64(1e9)
			for range n {
				v = v.paused(at)
				v = v.resumed(at + 1e6)
				at += 1e9
			}
			r.pauseView.Store(v)
			b.ReportAllocs()
			for b.Loop() {
				if r.fileTime(at) < 0 {
					b.Fatal("negative")
				}
			}
		})
	}
}

func TestMuxQueueBoundedInBytes(t *testing.T) {
	q := muxQueue{delay: muxDelayNS, maxBytes: 1 << 20, floor: math.MinInt64}
	frame := make([]byte, 300<<10)
	for i := range 3 {
		q.push(muxFrame{t: int64(i), data: frame})
		if q.ready() {
			t.Fatalf("ready after %d frames of 300 KiB: neither due nor over 1 MiB", i+1)
		}
	}
	q.push(muxFrame{t: 3, data: frame})
	if !q.ready() || q.due() {
		t.Fatal("1.2 MiB held: the oldest frame must go out early")
	}
	q.pop()
	if q.ready() || q.bytes != 3*len(frame) {
		t.Fatalf("after one pop: ready %v, %d bytes held", q.ready(), q.bytes)
	}
}

func TestFrameFreeListBoundedInBytes(t *testing.T) {
	var l frameFreeList
	for range 100 {
		b := make([]byte, 0, 100<<10)
		l.put(&b)
	}
	if l.bytes > freeListBytes || len(l.bufs) != freeListBytes/(100<<10) {
		t.Fatalf("kept %d buffers, %d bytes; at most %d bytes", len(l.bufs), l.bytes, freeListBytes)
	}
	huge := make([]byte, 0, 8<<20)
	l.get()
	l.put(&huge)
	for _, b := range l.bufs {
		if cap(*b) == cap(huge) {
			t.Fatal("an 8 MiB buffer was kept")
		}
	}
	for len(l.bufs) > 0 {
		l.get()
	}
	if l.bytes != 0 || l.get() == nil {
		t.Fatalf("empty list holds %d bytes", l.bytes)
	}
}

// TestMaxTracksFitMatroska: MaxTracks entries of the largest kind a session produces (H.264
// with SPS and PPS, long client-chosen ids, sized video) fit the fixed Tracks region, and a
// recording refuses one more.
func TestMaxTracksFitMatroska(t *testing.T) {
	m := &mkvWriter{uidSeed: "r"}
	sps := make([]byte, 40) // a High-profile SPS with VUI is about 20-30 bytes
	pps := make([]byte, 12)
	for i := range MaxTracks {
		tr := &trackState{
			info: TrackInfo{ID: fmt.Sprintf("mid%d/%s", i, strings.Repeat("x", 200)), Kind: KindVideo, Codec: CodecH264},
			num:  i + 1, width: 1920, height: 1080, codecPrivate: avcC(sps, pps), orient: orientation{rotation: 90},
		}
		m.entries = append(m.entries, m.entryFor(tr))
	}
	if _, err := m.tracksElement(); err != nil {
		t.Fatalf("%d tracks: %v", MaxTracks, err)
	}

	rec, err := Start(Config{Dir: t.TempDir(), RecordingID: "r-tracks", Format: FormatWebM})
	if err != nil {
		t.Fatal(err)
	}
	for i := range MaxTracks {
		if _, err := rec.AddTrack(TrackInfo{ID: fmt.Sprintf("mid%d", i), Codec: CodecVP8}); err != nil {
			t.Fatalf("track %d: %v", i, err)
		}
	}
	if _, err := rec.AddTrack(TrackInfo{ID: "one-more", Codec: CodecOpus}); err == nil {
		t.Fatalf("track %d accepted", MaxTracks+1)
	}
	if _, err := rec.Stop(); err != nil && !errors.Is(err, ErrNoMedia) {
		t.Fatal(err)
	}
}

// TestMuxQueueReleasesAtTheFloor: a frame goes out as soon as no earlier frame can come
// (the floor has reached it), in time order; without a floor (a track has not started), it
// waits out the interleaving delay.
func TestMuxQueueReleasesAtTheFloor(t *testing.T) {
	const ms = int64(1e6)
	tests := []struct {
		name  string
		times []int64 // pushed, ms
		floor int64   // ms; math.MinInt64: none
		want  []int64 // released, ms
	}{
		{name: "no floor, within the delay", times: []int64{0, 20, 40, 300}, floor: math.MinInt64},
		{name: "no floor, past the delay", times: []int64{40, 0, 20, 510}, floor: math.MinInt64, want: []int64{0}},
		{name: "floor", times: []int64{60, 0, 40, 20}, floor: 40, want: []int64{0, 20, 40}},
		{name: "floor and delay", times: []int64{0, 20, 40, 700, 600}, floor: 20, want: []int64{0, 20, 40}},
		{name: "floor below every frame", times: []int64{100, 120}, floor: 99},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := muxQueue{delay: muxDelayNS, maxBytes: 1 << 20}
			for _, at := range tc.times {
				q.push(muxFrame{t: at * ms, data: []byte{1}})
			}
			q.floor = tc.floor
			if tc.floor != math.MinInt64 {
				q.floor *= ms
			}
			var got []int64
			for q.ready() {
				got = append(got, q.pop().t/ms)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("released %v ms, want %v", got, tc.want)
			}
		})
	}
}
