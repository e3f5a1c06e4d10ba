package recorder

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

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
	return f, newFileWriter(f, writeBuffer, nil), nil
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

// repairMKV copies the complete blocks of src into a finalized file at dst.
func repairMKV(src, dst string, f Format, id string, started time.Time, marks []fileMark) (int64, []TrackStats, error) {
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
	mw, err := newMKVWriter(w, f, id, started)
	if err != nil {
		return 0, nil, err
	}
	var tracks []*trackState // index = old track number - 1 (nil if unusable)
	_, err = scanMKV(in, func(_ *mkvScan, body []byte) error {
		tracks, err = repairTracks(mw, body)
		return err
	}, func(clusterMS int64, b []byte) error {
		return repairBlock(mw, tracks, clusterMS, b)
	})
	if err != nil && !errors.Is(err, errMKVDamaged) {
		return 0, nil, err // not Matroska, or the copy failed
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
			FramesWritten: t.framesWritten, Width: t.width, Height: t.height, Rotation: t.orient.rotation,
		})
	}
	return mw.duration(), stats, out.Close()
}

func repairTracks(mw *mkvWriter, body []byte) ([]*trackState, error) {
	entries, err := parseTracks(body)
	if err != nil {
		return nil, err
	}
	var tracks []*trackState
	for _, e := range entries {
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
			if p := e.Video.Projection; p != nil {
				tr.orient.rotation = clockwiseOf(p.ProjectionPoseRoll)
			}
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
