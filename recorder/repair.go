package recorder

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/at-wat/ebml-go"
	"github.com/rtmrec/rtmrec/internal/durable"
)

// Repair rebuilds the media file of m, a recording a crash cut off (state
// "recording"), into a finalised file in place, and fills in m's facts:
// state "repaired", stop time (the file's last write), duration, size,
// sha256, tracks, and the end of a pause that was still open. m.Path names
// the file. A file that holds nothing playable (cut inside its headers,
// garbage) is an error, and the file is left as it was.
//
// Ogg: the complete pages (valid CRC) of every stream whose headers are complete are kept,
// and each stream gets a final EOS page whose granule continues the last complete one.
// Matroska/WebM: the header and Tracks are read back, every complete SimpleBlock of every
// cluster is copied into a new file by the same writer as a live recording, which adds
// Cues, Duration and sizes. Either way the new file replaces the old one atomically.
func Repair(m *Manifest) error {
	if m.Path == "" || m.File != filepath.Base(m.File) {
		return errors.New("the recording names no media file")
	}
	st, err := os.Stat(m.Path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return errors.New("the media file is missing")
		}
		return fmt.Errorf("media file: %w", err)
	}
	tmp := m.Path + ".repair"
	var dur int64
	var tracks []TrackStats
	switch m.Format {
	case FormatOgg:
		dur, tracks, err = repairOgg(m.Path, tmp, pauseMarks(m.Pauses))
	case FormatWebM, FormatMKV:
		dur, tracks, err = repairMKV(m.Path, tmp, m.Format, m.RecordingID, m.StartedAt, pauseMarks(m.Pauses))
	default:
		err = fmt.Errorf("unknown format %q", m.Format)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, m.Path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("replace media file: %w", err)
	}
	// A failed directory sync only weakens durability; the repair stands.
	_ = durable.SyncDir(filepath.Dir(m.Path))
	size, sum, err := hashFile(m.Path)
	if err != nil {
		return err
	}
	stopped := st.ModTime().UTC()
	m.State, m.StoppedAt, m.DurationMS, m.SizeBytes, m.SHA256 = StateRepaired, &stopped, dur/1e6, size, sum
	if len(tracks) > 0 {
		m.Tracks = tracks
	}
	for i := range m.Pauses {
		if m.Pauses[i].EndedAt == nil {
			m.Pauses[i].EndMS = max(m.Pauses[i].StartMS, m.DurationMS)
			m.Pauses[i].EndedAt = &stopped
		}
	}
	return nil
}

// createOut creates the repaired file.
func createOut(dst string) (*os.File, *fileWriter, error) {
	f, err := os.OpenFile(dst, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return nil, nil, fmt.Errorf("create repaired file: %w", err)
	}
	return f, newFileWriter(f, nil), nil
}

type repairStream struct {
	serial   uint32
	headers  int
	lastGran int64
	lastSeq  uint32
	preSkip  int64
	eos      bool
	frames   uint64
	trackID  string
	headPage []byte
	tagsPage []byte
	tagsSeq  uint32
	tagsSize int   // of the comment header, when it is alone on its page
	tagsOff  int64 // in the repaired file
}

// repairOgg copies the complete pages, ends every stream with an EOS page, and writes the
// marks (a pause still open at the crash lasts to the end) into the comment headers.
func repairOgg(src, dst string, marks []fileMark) (int64, []TrackStats, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, nil, err
	}
	defer in.Close()
	out, w, err := createOut(dst)
	if err != nil {
		return 0, nil, err
	}
	defer out.Close()
	or := newOggReader(in)
	streams := map[uint32]*repairStream{}
	var order []*repairStream
	// Header pages are held until the stream's OpusTags page is complete, so a stream cut
	// inside its headers is dropped whole.
	for {
		p, err := or.next()
		if err != nil {
			break // clean end, truncated or corrupt page: keep what precedes it
		}
		s := streams[p.Serial]
		switch {
		case p.Flags&oggFlagBOS != 0:
			if s != nil || len(p.Data) < 19 || string(p.Data[:8]) != "OpusHead" {
				continue
			}
			s = &repairStream{serial: p.Serial, headers: 1, lastSeq: p.Seq, headPage: append([]byte(nil), p.Raw...)}
			s.preSkip = int64(binary.LittleEndian.Uint16(p.Data[10:]))
			streams[p.Serial] = s
			order = append(order, s)
			continue
		case s == nil || s.eos:
			continue
		case s.headers == 1:
			if len(p.Data) < 8 || string(p.Data[:8]) != "OpusTags" {
				delete(streams, p.Serial)
				continue
			}
			s.headers = 2
			s.tagsPage = append([]byte(nil), p.Raw...)
			comments, _ := parseOpusTags(p.Data)
			s.trackID, _ = tagValue(comments, tagTrackID)
			if countPackets(p.Lacing) == 1 && p.Flags&oggFlagContinued == 0 && p.Lacing[len(p.Lacing)-1] < 255 {
				s.tagsSize = len(p.Data)
			}
			s.lastSeq, s.tagsSeq = p.Seq, p.Seq
			continue
		}
		if s.headers != 2 {
			continue
		}
		if s.headPage != nil {
			// First data page of the stream: its headers go first. Other streams' BOS
			// pages were already held the same way, so BOS pages stay grouped as long as
			// every stream's headers precede data, which is how the writer lays them out.
			if err := flushHeaders(w, order); err != nil {
				return 0, nil, err
			}
		}
		if p.Granule >= 0 {
			s.lastGran = max(s.lastGran, p.Granule)
		}
		s.lastSeq = p.Seq
		s.eos = p.Flags&oggFlagEOS != 0
		s.frames += uint64(countPackets(p.Lacing))
		if _, err := w.Write(p.Raw); err != nil {
			return 0, nil, err
		}
	}
	if err := flushHeaders(w, order); err != nil {
		return 0, nil, err
	}
	var dur int64
	var tracks []TrackStats
	crc := newOggCRC()
	o := &oggWriter{w: w, crc: crc}
	for i, s := range order {
		if s.headers != 2 {
			continue
		}
		if !s.eos {
			end := &oggStream{serial: s.serial, pageSeq: s.lastSeq + 1}
			var fb [2]byte
			p, n := opusFiller(&fb, oggMinFill)
			gran := max(s.lastGran, s.preSkip) + int64(n)
			if err := o.writePage(end, oggFlagEOS, gran, p); err != nil {
				return 0, nil, err
			}
			s.lastGran = gran
		}
		d := max(s.lastGran-s.preSkip, 0) * 1e9 / opusSampleRate
		dur = max(dur, d)
		tracks = append(tracks, TrackStats{ID: s.trackID, Kind: KindAudio, Codec: CodecOpus, Number: i + 1, FramesWritten: s.frames})
	}
	if len(tracks) == 0 {
		return 0, nil, errors.New("no complete Opus stream header")
	}
	if marks = untilEnd(marks, dur/1e6); len(marks) > 0 {
		for _, s := range order {
			if s.headers != 2 || s.tagsSize == 0 {
				continue
			}
			if tags, ok := markedTags(s.trackID, marks, s.tagsSize); ok {
				if err := w.writeAt(o.renderPage(s.serial, s.tagsSeq, 0, 0, tags), s.tagsOff); err != nil {
					return 0, nil, err
				}
			}
		}
	}
	if err := w.sync(); err != nil {
		return 0, nil, err
	}
	return dur, tracks, out.Close()
}

// flushHeaders writes the held header pages: all BOS pages, then all OpusTags pages.
func flushHeaders(w *fileWriter, order []*repairStream) error {
	for _, s := range order {
		if s.headers == 2 && s.headPage != nil {
			if _, err := w.Write(s.headPage); err != nil {
				return err
			}
		}
	}
	for _, s := range order {
		if s.headers == 2 && s.headPage != nil {
			s.tagsOff = w.off
			if _, err := w.Write(s.tagsPage); err != nil {
				return err
			}
			s.headPage, s.tagsPage = nil, nil
		}
	}
	return nil
}

func countPackets(lacing []byte) int {
	n := 0
	for _, l := range lacing {
		if l < 255 {
			n++
		}
	}
	return n
}

// ebmlScanner reads EBML element headers from a stream and knows its offset.
type ebmlScanner struct {
	r   *bufio.Reader
	off int64
	buf []byte
}

type elemHeader struct {
	id   uint64
	size uint64 // sizeUnknown if unknown
	off  int64  // offset of the data
}

func (s *ebmlScanner) vint(marker bool) (uint64, error) {
	b, err := s.r.Peek(1)
	if err != nil {
		return 0, err
	}
	if b[0] == 0 {
		return 0, errors.New("invalid vint")
	}
	l := 1
	for m := byte(0x80); b[0]&m == 0; m >>= 1 {
		l++
	}
	b, err = s.r.Peek(l)
	if err != nil {
		return 0, unexpected(err)
	}
	v, n, ok := readVint(b, marker)
	if !ok {
		return 0, errors.New("invalid vint")
	}
	_, _ = s.r.Discard(n)
	s.off += int64(n)
	return v, nil
}

func (s *ebmlScanner) head() (elemHeader, error) {
	id, err := s.vint(true)
	if err != nil {
		return elemHeader{}, err
	}
	size, err := s.vint(false)
	if err != nil {
		return elemHeader{}, unexpected(err)
	}
	return elemHeader{id: id, size: size, off: s.off}, nil
}

func (s *ebmlScanner) read(n uint64) ([]byte, error) {
	if n > 64<<20 {
		return nil, errors.New("element too large")
	}
	if uint64(cap(s.buf)) < n {
		s.buf = make([]byte, n)
	}
	b := s.buf[:n]
	if _, err := io.ReadFull(s.r, b); err != nil {
		return nil, unexpected(err)
	}
	s.off += int64(n)
	return b, nil
}

func (s *ebmlScanner) skip(n uint64) error {
	if n == sizeUnknown {
		return errors.New("unknown size")
	}
	d, err := s.r.Discard(int(min(n, 1<<40)))
	s.off += int64(d)
	if uint64(d) != n {
		return unexpected(err)
	}
	return nil
}

// isClusterChild lists the elements that may appear in a Cluster (RFC 9559 §5.1.3).
func isClusterChild(id uint64) bool {
	switch id {
	case idTimecode, idSimpleBlock, idBlockGroup, idPrevSize, idPosition, idVoid, 0xBF, 0x5854, 0xAF:
		return true
	}
	return false
}

func codecFromMatroska(id string) Codec {
	switch id {
	case "A_OPUS":
		return CodecOpus
	case "V_VP8":
		return CodecVP8
	case "V_VP9":
		return CodecVP9
	case "V_MPEG4/ISO/AVC":
		return CodecH264
	}
	return ""
}

// repairMKV copies the complete blocks of src into a finalized file at dst.
func repairMKV(src, dst string, f Format, id string, started time.Time, marks []fileMark) (int64, []TrackStats, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, nil, err
	}
	defer in.Close()
	sc := &ebmlScanner{r: bufio.NewReaderSize(in, 1<<20)}
	h, err := sc.head()
	if err != nil || h.id != idEBML {
		return 0, nil, errors.New("not an EBML file")
	}
	if err := sc.skip(h.size); err != nil {
		return 0, nil, fmt.Errorf("EBML header: %w", err)
	}
	if h, err = sc.head(); err != nil || h.id != idSegment {
		return 0, nil, errors.New("no Segment")
	}
	out, w, err := createOut(dst)
	if err != nil {
		return 0, nil, err
	}
	defer out.Close()
	mw, err := newMKVWriter(w, f, id, started)
	if err != nil {
		return 0, nil, err
	}
	var tracks []*trackState // index = old track number - 1 (nil if unusable)
	var pend *elemHeader
	clusterMS := int64(0)
loop:
	for {
		var h elemHeader
		if pend != nil {
			h, pend = *pend, nil
		} else if h, err = sc.head(); err != nil {
			break
		}
		switch h.id {
		case idTracks:
			if tracks != nil || h.size == sizeUnknown {
				break loop
			}
			body, err := sc.read(h.size)
			if err != nil {
				break loop
			}
			if tracks, err = repairTracks(mw, body); err != nil {
				return 0, nil, err
			}
		case idCluster:
			if tracks == nil {
				break loop
			}
			end := int64(-1)
			if h.size != sizeUnknown {
				end = h.off + int64(h.size)
			}
			for end < 0 || sc.off < end {
				c, err := sc.head()
				if err != nil {
					break loop
				}
				if !isClusterChild(c.id) {
					if end >= 0 {
						break loop // corrupt
					}
					pend = &c
					break
				}
				if c.size == sizeUnknown || (end >= 0 && c.off+int64(c.size) > end) {
					break loop
				}
				switch c.id {
				case idTimecode:
					b, err := sc.read(c.size)
					if err != nil || len(b) > 8 {
						break loop
					}
					clusterMS = 0
					for _, x := range b {
						clusterMS = clusterMS<<8 | int64(x)
					}
				case idSimpleBlock:
					b, err := sc.read(c.size)
					if err != nil {
						break loop
					}
					if err := repairBlock(mw, tracks, clusterMS, b); err != nil {
						return 0, nil, err
					}
				default:
					if err := sc.skip(c.size); err != nil {
						break loop
					}
				}
			}
		default:
			if err := sc.skip(h.size); err != nil {
				break loop
			}
		}
	}
	if tracks == nil {
		return 0, nil, errors.New("no complete Tracks element")
	}
	if err := mw.finish(0, untilEnd(marks, mw.endMS)); err != nil {
		return 0, nil, err
	}
	if err := w.sync(); err != nil {
		return 0, nil, err
	}
	var stats []TrackStats
	for _, t := range mw.tracks {
		stats = append(stats, TrackStats{
			ID: t.info.ID, Kind: t.info.Kind, Codec: t.info.Codec, Number: t.num,
			FramesWritten: t.framesWritten, Width: t.width, Height: t.height,
		})
	}
	return mw.duration(), stats, out.Close()
}

func repairTracks(mw *mkvWriter, body []byte) ([]*trackState, error) {
	var tb mkvTracksBody
	if err := ebml.Unmarshal(bytes.NewReader(body), &tb); err != nil {
		return nil, fmt.Errorf("parse Tracks: %w", err)
	}
	var tracks []*trackState
	for _, e := range tb.TrackEntry {
		if e.TrackNumber == 0 || e.TrackNumber > 126 {
			continue
		}
		for uint64(len(tracks)) < e.TrackNumber {
			tracks = append(tracks, nil)
		}
		c := codecFromMatroska(e.CodecID)
		if c == "" || (mw.webm && c == CodecH264) {
			continue
		}
		old := e.TrackNumber
		tr := &trackState{info: TrackInfo{ID: e.Name, Kind: c.Kind(), Codec: c}}
		tr.num = len(mw.entries) + 1
		e.TrackNumber = uint64(tr.num)
		if e.Video != nil {
			tr.width, tr.height = int(e.Video.PixelWidth), int(e.Video.PixelHeight)
		}
		mw.entries = append(mw.entries, e)
		mw.tracks = append(mw.tracks, tr)
		tracks[old-1] = tr
	}
	if len(mw.entries) == 0 {
		return nil, errors.New("no usable track")
	}
	return tracks, mw.rewriteTracks()
}

func repairBlock(mw *mkvWriter, tracks []*trackState, clusterMS int64, b []byte) error {
	num, n, ok := readVint(b, false)
	if !ok || len(b) < n+3 || num == 0 || num > uint64(len(tracks)) || tracks[num-1] == nil {
		return nil
	}
	rel := int16(binary.BigEndian.Uint16(b[n:]))
	flags := b[n+2]
	if flags&0x06 != 0 {
		return nil // laced blocks are never written by this package
	}
	return mw.writeFrame(tracks[num-1], (clusterMS+int64(rel))*1e6, flags&0x80 != 0, b[n+3:])
}
