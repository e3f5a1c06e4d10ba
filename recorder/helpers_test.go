package recorder

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/at-wat/ebml-go"
	"github.com/at-wat/ebml-go/webm"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"
)

// testClock is a settable clock for Config.Now.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock {
	return &testClock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// rtpStream builds RTP packets of one stream.
type rtpStream struct {
	pt   uint8
	ssrc uint32
	seq  uint16
	ts   uint32
}

func (s *rtpStream) packet(payload []byte, marker bool) []byte {
	p := rtp.Packet{
		Header:  rtp.Header{Version: 2, PayloadType: s.pt, SequenceNumber: s.seq, Timestamp: s.ts, SSRC: s.ssrc, Marker: marker},
		Payload: payload,
	}
	s.seq++
	b, err := p.Marshal()
	if err != nil {
		panic(err)
	}
	return b
}

// event is one packet or SR to feed at a wall-clock offset from the recording start.
type event struct {
	at    time.Duration
	track int
	pkt   []byte
	sr    bool
	ntp   uint64
	srTS  uint32
}

// vp8Frame builds a VP8 frame: keyframes carry the start code and size (RFC 6386 §9.1).
func vp8Frame(key bool, w, h, size int) []byte {
	f := make([]byte, size)
	if key {
		f[0] = 0x00 // P=0: keyframe; version 0; show_frame
		f[0] |= 0x10
		f[3], f[4], f[5] = 0x9d, 0x01, 0x2a
		f[6], f[7] = byte(w), byte(w>>8)
		f[8], f[9] = byte(h), byte(h>>8)
	} else {
		f[0] = 0x01 | 0x10
	}
	for i := 10; i < size; i++ {
		f[i] = byte(i)
	}
	return f
}

// vp8Packets splits a frame into RTP payloads with a VP8 descriptor (pion's payloader).
func vp8Packets(frame []byte, mtu int) [][]byte {
	pl := &codecs.VP8Payloader{EnablePictureID: true}
	return pl.Payload(uint16(mtu), frame)
}

// ivfFrames reads the test clip.
func ivfFrames(t testing.TB) [][]byte {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "clip.ivf"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, _, err := ivfreader.NewWith(f)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for {
		fr, _, err := r.ParseNextFrame()
		if err != nil {
			break
		}
		out = append(out, bytes.Clone(fr))
	}
	return out
}

// oggPackets reads the Opus packets of the test tone (headers skipped).
func oggPackets(t testing.TB) [][]byte {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "tone.ogg"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	or := newOggReader(f)
	var out [][]byte
	var cur []byte
	pages := 0
	for {
		p, err := or.next()
		if err != nil {
			break
		}
		pages++
		off := 0
		for _, l := range p.Lacing {
			cur = append(cur, p.Data[off:off+int(l)]...)
			off += int(l)
			if l < 255 {
				if pages > 2 {
					out = append(out, cur)
				}
				cur = nil
			}
		}
	}
	return out
}

// runEvents starts a recording, feeds events in order (moving the clock), and stops it.
func runEvents(t testing.TB, cfg Config, clock *testClock, tracks []TrackInfo, events []event, stopAt time.Duration) (*Recording, *Manifest) {
	t.Helper()
	base := clock.Now()
	cfg.Now = clock.Now
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	if cfg.RecordingID == "" {
		cfg.RecordingID = "rec1"
	}
	if cfg.Tracks == nil {
		cfg.Tracks = tracks
	}
	if cfg.QueueSize == 0 {
		cfg.QueueSize = 1 << 16
	}
	rec, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	handles := make([]*Track, len(tracks))
	for i, ti := range tracks {
		if handles[i], err = rec.AddTrack(ti); err != nil {
			t.Fatal(err)
		}
	}
	sortEvents(events)
	for _, e := range events {
		at := base.Add(e.at)
		clock.Set(at)
		switch {
		case e.track == -1:
			rec.Pause()
			continue
		case e.track == -2:
			rec.Resume()
			continue
		}
		if e.sr {
			handles[e.track].WriteSenderReport(e.ntp, e.srTS, at)
		} else {
			handles[e.track].WriteRTP(e.pkt, at)
		}
	}
	clock.Set(base.Add(stopAt))
	m, err := rec.Stop()
	if err != nil {
		t.Fatal(err)
	}
	return rec, m
}

// --- parsing back ---

type oggStreamInfo struct {
	serial     uint32
	pages      int
	lastGran   int64
	preSkip    int
	eos        bool
	bos        bool
	packets    int
	samples    int64 // sum of packet durations after the headers
	trackID    string
	comments   []string
	granulesOK bool
}

// parseOggFile checks CRC (reader), BOS first, monotonic granules, EOS, and returns streams
// in BOS order.
func parseOggFile(t testing.TB, path string) []*oggStreamInfo {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	or := newOggReader(f)
	bySerial := map[uint32]*oggStreamInfo{}
	var order []*oggStreamInfo
	for {
		p, err := or.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("ogg page: %v", err)
		}
		s := bySerial[p.Serial]
		if p.Flags&oggFlagBOS != 0 {
			if s != nil {
				t.Fatalf("second BOS for serial %d", p.Serial)
			}
			if !bytes.HasPrefix(p.Data, []byte("OpusHead")) || len(p.Data) < 19 {
				t.Fatalf("BOS without OpusHead")
			}
			s = &oggStreamInfo{serial: p.Serial, bos: true, granulesOK: true}
			s.preSkip = int(p.Data[10]) | int(p.Data[11])<<8
			bySerial[p.Serial] = s
			order = append(order, s)
		}
		if s == nil {
			t.Fatalf("page of unknown stream %d", p.Serial)
		}
		if s.eos {
			t.Fatalf("page after EOS in stream %d", p.Serial)
		}
		if s.pages == 1 {
			if !bytes.HasPrefix(p.Data, []byte("OpusTags")) {
				t.Fatalf("second page is not OpusTags")
			}
			comments, ok := parseOpusTags(p.Data)
			if !ok {
				t.Fatalf("OpusTags of stream %d do not parse", p.Serial)
			}
			s.trackID, _ = tagValue(comments, tagTrackID)
			s.comments = comments
		}
		if s.pages >= 2 {
			if p.Granule < s.lastGran {
				s.granulesOK = false
			}
			s.lastGran = p.Granule
			off := 0
			for _, l := range p.Lacing {
				if l < 255 {
					s.packets++
				}
				_ = off
			}
			// durations
			start := 0
			for _, l := range p.Lacing {
				if l < 255 {
					s.samples += int64(opusSamples(p.Data[start:]))
				}
				start += int(l)
			}
		}
		s.pages++
		if p.Flags&oggFlagEOS != 0 {
			s.eos = true
		}
	}
	return order
}

func (s *oggStreamInfo) duration() time.Duration {
	return time.Duration((s.lastGran - int64(s.preSkip)) * int64(time.Second) / 48000)
}

type mkvFile struct {
	Header  webm.EBMLHeader `ebml:"EBML"`
	Segment webm.Segment    `ebml:"Segment"`
}

func parseMKVFile(t testing.TB, path string) *mkvFile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var m mkvFile
	if err := ebml.Unmarshal(f, &m); err != nil {
		t.Fatalf("ebml unmarshal %s: %v", path, err)
	}
	return &m
}

type blockInfo struct {
	track uint64
	ms    int64
	key   bool
	size  int
}

func mkvBlocks(m *mkvFile) []blockInfo {
	var out []blockInfo
	for _, c := range m.Segment.Cluster {
		for _, b := range c.SimpleBlock {
			n := 0
			for _, d := range b.Data {
				n += len(d)
			}
			out = append(out, blockInfo{b.TrackNumber, int64(c.Timecode) + int64(b.Timecode), b.Keyframe, n})
		}
	}
	return out
}

// --- external tools ---

func requireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("RTMREC_REQUIRE_TOOLS") == "1" {
			t.Fatalf("%s not found and RTMREC_REQUIRE_TOOLS=1", name)
		}
		t.Skipf("%s not installed: skipping the external decoder check (set RTMREC_REQUIRE_TOOLS=1 to fail instead)", name)
	}
	return p
}

type probeResult struct {
	Streams []struct {
		CodecName string `json:"codec_name"`
		CodecType string `json:"codec_type"`
		Width     int    `json:"width"`
		Height    int    `json:"height"`
		NbPackets string `json:"nb_read_packets"`
	} `json:"streams"`
	Format struct {
		FormatName string `json:"format_name"`
		Duration   string `json:"duration"`
	} `json:"format"`
}

func ffprobe(t testing.TB, path string) probeResult {
	t.Helper()
	bin := requireTool(t, "ffprobe")
	out, err := exec.Command(bin, "-v", "error", "-show_format", "-show_streams", "-count_packets", "-of", "json", path).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", path, err)
	}
	var r probeResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("ffprobe json: %v", err)
	}
	return r
}

// ffmpegDecode decodes the whole file; a clean decode prints nothing.
func ffmpegDecode(t testing.TB, path string) string {
	t.Helper()
	bin := requireTool(t, "ffmpeg")
	out, _ := exec.Command(bin, "-v", "error", "-xerror", "-i", path, "-enc_time_base", "-1", "-f", "null", "-").CombinedOutput()
	return string(out)
}

func readFile(path string) ([]byte, error) { return os.ReadFile(path) }

func sortEvents(ev []event) { sort.SliceStable(ev, func(i, j int) bool { return ev[i].at < ev[j].at }) }
