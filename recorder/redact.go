package recorder

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rtmrec/rtmrec/internal/durable"
)

// Redaction after the fact. Redact copies a recording with a span of its timeline made
// unrecoverable, without re-encoding and without moving anything else:
//
//   - every Opus packet that overlaps the span is replaced by encoded digital silence of
//     the same duration (CELT frames whose first symbol is the silence flag, RFC 6716
//     §4.3), so the timeline, granule positions and block times stay as they were. Not
//     TOC-only packets: a decoder conceals those by extrapolating the audio before them;
//   - video frames in the span are dropped, and so are the frames after it until the
//     track's next keyframe (they depend on dropped frames);
//   - the span is marked in the file (a "redacted" chapter, RTMREC_REDACTED comment), and
//     the marks already there (pauses, earlier redactions) are kept;
//   - Matroska/WebM is rewritten by the recorder's own writer, so Cues, Duration and the
//     SeekHead are rebuilt; Ogg pages keep their boundaries, granules and sequence numbers
//     with new contents and CRCs.

// Redaction describes what Redact did.
type Redaction struct {
	Format Format
	// From and To are the span asked for, on the file timeline.
	From, To time.Duration
	// SilencedFrom and SilencedTo bound the audio replaced by silence: whole packets, so
	// up to one packet (20 ms) wider than the span. Zero when no audio was in the span.
	SilencedFrom, SilencedTo time.Duration
	AudioPackets             int // packets replaced by silence
	VideoFrames              int // frames dropped
	// Duration is the file's, which the redaction does not change.
	Duration time.Duration
}

// Redact writes src, redacted over [from, to) of its timeline, to dst, which must not
// exist. The file is written beside dst and renamed into place when complete.
func Redact(src, dst string, from, to time.Duration) (*Redaction, error) {
	if from < 0 || to <= from {
		return nil, fmt.Errorf("redact: the span %v to %v is empty or negative", from, to)
	}
	in, err := os.Open(src)
	if err != nil {
		return nil, fmt.Errorf("redact: %w", err)
	}
	defer in.Close()
	if _, err := os.Lstat(dst); err == nil {
		return nil, fmt.Errorf("redact: %s already exists", dst)
	}
	var magic [4]byte
	if _, err := io.ReadFull(in, magic[:]); err != nil {
		return nil, errors.New("redact: not a recording (too short)")
	}
	if _, err := in.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("redact: %w", err)
	}
	tmp := filepath.Join(filepath.Dir(dst), "."+filepath.Base(dst)+".redacting")
	out, w, err := createOut(tmp)
	if err != nil {
		return nil, fmt.Errorf("redact: %w", err)
	}
	res := &Redaction{From: from, To: to}
	switch {
	case string(magic[:]) == "OggS":
		res.Format = FormatOgg
		err = redactOgg(in, w, res)
	case binary.BigEndian.Uint32(magic[:]) == idEBML:
		err = redactMKV(in, w, res)
	default:
		err = errors.New("not an Ogg or Matroska/WebM recording")
	}
	if err == nil {
		err = w.sync()
	}
	err = errors.Join(err, out.Close())
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return nil, fmt.Errorf("redact: %w", err)
	}
	_ = durable.SyncDir(filepath.Dir(dst)) // the file is complete; this only adds durability
	return res, nil
}

// silenced records that an audio packet covering [start, end) (ns) became silence.
func (r *Redaction) silenced(start, end int64) {
	if r.AudioPackets == 0 || time.Duration(start) < r.SilencedFrom {
		r.SilencedFrom = time.Duration(start)
	}
	r.SilencedTo = max(r.SilencedTo, time.Duration(end))
	r.AudioPackets++
}

// opusSilence appends to dst an Opus packet of digital silence lasting as long as p (whose
// TOC gives the channel count): CELT fullband frames of two bytes, 0xFF 0xFE, which a
// decoder reads as the silence flag (RFC 6716 §4.3: the flag is the frame's first symbol,
// with probability 1/32768). ok is false if p is not a valid Opus packet.
func opusSilence(dst, p []byte) ([]byte, bool) {
	n := opusSamples(p)
	if n == 0 {
		return dst, false
	}
	frame, config := 960, byte(31) // the longest CELT frame that divides the duration
	for n%frame != 0 {
		frame, config = frame/2, config-1
	}
	count := n / frame
	toc := config<<3 | p[0]&0x04
	if count == 1 {
		return append(dst, toc, 0xFF, 0xFE), true
	}
	dst = append(dst, toc|3, byte(count)) // code 3, constant bitrate, no padding
	for range count {
		dst = append(dst, 0xFF, 0xFE)
	}
	return dst, true
}

// --- Ogg ---

type redactStream struct {
	preSkip int64
	pages   int
}

func redactOgg(in io.Reader, w *fileWriter, res *Redaction) error {
	from, to := int64(res.From), int64(res.To)
	or := newOggReader(in)
	streams := map[uint32]*redactStream{}
	mark := fileMark{startMS: from / 1e6, endMS: to / 1e6, label: markRedacted}
	var packets [][]byte
	var silence []byte
	for n := 0; ; n++ {
		p, err := or.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("ogg page %d: %w", n, err)
		}
		s := streams[p.Serial]
		if p.Flags&oggFlagBOS != 0 {
			if s != nil || len(p.Data) < 19 || string(p.Data[:8]) != "OpusHead" {
				return fmt.Errorf("ogg page %d: not an Opus stream header", n)
			}
			streams[p.Serial] = &redactStream{preSkip: int64(binary.LittleEndian.Uint16(p.Data[10:])), pages: 1}
			if _, err := w.Write(p.Raw); err != nil {
				return err
			}
			continue
		}
		if s == nil {
			return fmt.Errorf("ogg page %d: page of stream %d before its header", n, p.Serial)
		}
		s.pages++
		if p.Flags&oggFlagContinued != 0 || (len(p.Lacing) > 0 && p.Lacing[len(p.Lacing)-1] == 255) {
			return fmt.Errorf("ogg page %d: packets continued across pages are not supported", n)
		}
		packets = splitPackets(p.Lacing, p.Data, packets[:0])
		changed := false
		if s.pages == 2 { // the comment header
			if len(packets) != 1 {
				return fmt.Errorf("ogg page %d: comment header not alone on its page", n)
			}
			comments, ok := parseOpusTags(packets[0])
			if !ok {
				return fmt.Errorf("ogg page %d: unreadable comment header", n)
			}
			tags, fits := opusTags(withMarks(comments, mark), len(packets[0]))
			if !fits {
				tags, _ = opusTags(withMarks(comments, mark), 0)
			}
			packets[0], changed = tags, true
		} else {
			// The page's granule is the end of its last packet (RFC 7845 §4): walk back.
			pos := p.Granule
			for _, pk := range packets {
				pos -= int64(opusSamples(pk))
			}
			silence = silence[:0]
			for i, pk := range packets {
				d := int64(opusSamples(pk))
				start := (pos - s.preSkip) * 1e9 / opusSampleRate
				end := (pos + d - s.preSkip) * 1e9 / opusSampleRate
				pos += d
				res.Duration = max(res.Duration, time.Duration(end))
				if end <= from || start >= to {
					continue
				}
				if d == 0 {
					return fmt.Errorf("ogg page %d: an invalid Opus packet in the span", n)
				}
				at := len(silence)
				silence, _ = opusSilence(silence, pk)
				packets[i] = silence[at:len(silence):len(silence)]
				res.silenced(start, end)
				changed = true
			}
		}
		if !changed {
			if _, err := w.Write(p.Raw); err != nil {
				return err
			}
			continue
		}
		if _, err := w.Write(rebuildPage(or.crc, p.Raw[:oggHeaderLen], packets)); err != nil {
			return err
		}
	}
	if len(streams) == 0 {
		return errors.New("no Opus stream")
	}
	return nil
}

// splitPackets returns the packets of a page whose last packet ends on it.
func splitPackets(lacing, data []byte, out [][]byte) [][]byte {
	start, off := 0, 0
	for _, l := range lacing {
		off += int(l)
		if l < 255 {
			out = append(out, data[start:off])
			start = off
		}
	}
	return out
}

// rebuildPage lays the packets out on a page with the header fields of hdr (27 bytes)
// and a new CRC.
func rebuildPage(crc *oggCRC, hdr []byte, packets [][]byte) []byte {
	b := append([]byte(nil), hdr[:oggHeaderLen]...)
	for _, p := range packets {
		for l := len(p); ; l -= 255 {
			b = append(b, byte(min(l, 255)))
			if l < 255 {
				break
			}
		}
	}
	b[26] = byte(len(b) - oggHeaderLen)
	for _, p := range packets {
		b = append(b, p...)
	}
	binary.LittleEndian.PutUint32(b[22:], 0)
	binary.LittleEndian.PutUint32(b[22:], crc.update(0, b))
	return b
}

// withMarks replaces the mark comments of a comment header with those of its marks plus m.
func withMarks(comments []string, m fileMark) []string {
	marks := append(marksFromComments(comments), m)
	var out []string
	for _, c := range comments {
		k, _, _ := strings.Cut(strings.ToUpper(c), "=")
		if k == "RTMREC_PAUSE" || k == "RTMREC_REDACTED" || strings.HasPrefix(k, "CHAPTER") {
			continue
		}
		out = append(out, c)
	}
	spans, chapters := markComments(marks)
	return append(append(out, spans...), chapters...)
}

// --- Matroska / WebM ---

func redactMKV(in io.Reader, w *fileWriter, res *Redaction) error {
	from, to := int64(res.From), int64(res.To)
	var mw *mkvWriter
	var tracks []*trackState // index = old track number - 1
	var waitKey []bool       // index = new track number - 1
	var silence []byte
	info, err := scanMKV(in, func(info *mkvScan, body []byte) error {
		if info.scaleNS != 1e6 {
			return fmt.Errorf("TimecodeScale %d ns is not supported (rtmrec writes 1 ms)", info.scaleNS)
		}
		res.Format = FormatMKV
		if info.docType == "webm" {
			res.Format = FormatWebM
		}
		var err error
		if mw, err = newMKVWriter(w, res.Format, "redacted", info.date); err != nil {
			return err
		}
		tracks, err = repairTracks(mw, body)
		waitKey = make([]bool, len(mw.tracks))
		return err
	}, func(clusterMS int64, b []byte) error {
		num, n, ok := readVint(b, false)
		if !ok || len(b) < n+3 || num == 0 || num > uint64(len(tracks)) {
			return errors.New("a block of an unknown track")
		}
		tr := tracks[num-1]
		if tr == nil {
			return fmt.Errorf("track %d has a codec this redaction does not handle", num)
		}
		flags := b[n+2]
		if flags&0x06 != 0 {
			return errors.New("laced blocks are not supported")
		}
		t := (clusterMS + int64(int16(binary.BigEndian.Uint16(b[n:])))) * 1e6
		key, data := flags&0x80 != 0, b[n+3:]
		if tr.info.Kind == KindAudio {
			end := t + int64(opusSamples(data))*1e9/opusSampleRate
			if t < to && (end > from || t >= from) {
				silence = silence[:0]
				var ok bool
				if silence, ok = opusSilence(silence, data); !ok {
					return fmt.Errorf("an invalid Opus packet in the span at %v", time.Duration(t))
				}
				data = silence
				res.silenced(t, end)
			}
		} else {
			switch {
			case t >= from && t < to:
				waitKey[tr.num-1] = true
				res.VideoFrames++
				return nil
			case waitKey[tr.num-1] && !key:
				res.VideoFrames++ // depends on a dropped frame
				return nil
			}
			waitKey[tr.num-1] = false
		}
		return mw.writeFrame(tr, t, key, data)
	})
	if err != nil {
		return err
	}
	if mw == nil {
		return errors.New("no Tracks element")
	}
	if info.blockGroups > 0 {
		return fmt.Errorf("%d BlockGroups are not supported", info.blockGroups)
	}
	marks := append(info.chapters, fileMark{startMS: from / 1e6, endMS: to / 1e6, label: markRedacted})
	if err := mw.finish(int64(info.durationMS*1e6), marks); err != nil {
		return err
	}
	res.Duration = time.Duration(mw.duration())
	return nil
}
