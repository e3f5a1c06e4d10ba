package recorder

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
)

// opusSampleRate is the rate of Ogg Opus granule positions (RFC 7845 §4).
const opusSampleRate = 48000

// oggPreSkip is 80 ms: RFC 7845 §4.2 recommends at least that much so a decoder started
// mid-stream (the sender's encoder ran before the recording) converges before audio is heard.
// The writer puts 80 ms of TOC-only packets first, so pre-skip costs no real audio.
const oggPreSkip = 3840

// opusSamples returns the duration of an Opus packet in 48 kHz samples from its TOC byte
// (RFC 6716 §3.1), or 0 if the packet is malformed.
func opusSamples(p []byte) int {
	if len(p) == 0 {
		return 0
	}
	toc := p[0]
	cfg := toc >> 3
	var frame int
	switch {
	case cfg < 12: // SILK: 10, 20, 40, 60 ms
		frame = [4]int{480, 960, 1920, 2880}[cfg&3]
	case cfg < 16: // hybrid: 10, 20 ms
		frame = [2]int{480, 960}[cfg&1]
	default: // CELT: 2.5, 5, 10, 20 ms
		frame = [4]int{120, 240, 480, 960}[cfg&3]
	}
	var n int
	switch toc & 3 {
	case 0:
		n = 1
	case 1, 2:
		n = 2
	default:
		if len(p) < 2 {
			return 0
		}
		n = int(p[1] & 0x3f)
	}
	d := n * frame
	if d > 5760 { // 120 ms is the RFC 6716 maximum
		return 0
	}
	return d
}

// Opus TOC-only packets used to fill gaps: CELT fullband frames of zero length, which a
// decoder treats as lost and conceals (RFC 7845 §4.1, RFC 6716 §3.2.1).
const (
	opusTOC20ms  = 31 << 3 // one 20 ms frame (config 31, code 0)
	opusTOC10ms  = 30 << 3 // config 30, code 0
	opusTOC5ms   = 29 << 3
	opusTOC2_5ms = 28 << 3
	opusTOC120ms = 31<<3 | 3 // code 3: frame count follows; 6 x 20 ms of zero length each
)

// opusFiller returns a TOC-only packet of at most gap samples, and its duration.
// gap must be at least 120.
func opusFiller(buf *[2]byte, gap int64) ([]byte, int) {
	switch {
	case gap >= 5760:
		buf[0], buf[1] = opusTOC120ms, 6
		return buf[:2], 5760
	case gap >= 960:
		buf[0] = opusTOC20ms
		return buf[:1], 960
	case gap >= 480:
		buf[0] = opusTOC10ms
		return buf[:1], 480
	case gap >= 240:
		buf[0] = opusTOC5ms
		return buf[:1], 240
	}
	buf[0] = opusTOC2_5ms
	return buf[:1], 120
}

// opusHead builds the identification header (RFC 7845 §5.1), channel mapping family 0.
func opusHead(channels uint16, preSkip uint16) []byte {
	if channels == 0 || channels > 2 {
		channels = 2
	}
	b := make([]byte, 19)
	copy(b, "OpusHead")
	b[8] = 1
	b[9] = byte(channels)
	binary.LittleEndian.PutUint16(b[10:], preSkip)
	binary.LittleEndian.PutUint32(b[12:], opusSampleRate)
	return b
}

// Opus comment header (RFC 7845 §5.2). Every stream's OpusTags carries its track id and
// opusTagsReserve bytes of zero padding after the comments, which RFC 7845 §5.2 allows
// ("MAY contain zero-padding"; a first padding byte with its low bit clear lets editors
// reuse it). Pauses are known only at the end, so the writer then rewrites the page in
// place with the marks as comments and less padding: the page keeps its size, and the
// file stays playable and repairable at every moment.
const (
	opusTagsReserve = 2048
	opusVendor      = "rtmrec"
	tagTrackID      = "RTMREC_TRACK_ID"
)

// opusTags builds the comment header with the comments, zero-padded to size bytes. ok is
// false when the comments do not fit in size (size 0: no padding, always fits).
func opusTags(comments []string, size int) ([]byte, bool) {
	n := 8 + 4 + len(opusVendor) + 4
	for _, c := range comments {
		n += 4 + len(c)
	}
	if size > 0 && n > size {
		return nil, false
	}
	b := make([]byte, 0, max(n, size))
	b = append(b, "OpusTags"...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(opusVendor)))
	b = append(b, opusVendor...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(comments)))
	for _, c := range comments {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(c)))
		b = append(b, c...)
	}
	for len(b) < size {
		b = append(b, 0)
	}
	return b, true
}

// trackTags is a stream's first comment header: its track id and the reserve.
func trackTags(trackID string) []byte {
	b, ok := opusTags([]string{tagTrackID + "=" + trackID}, opusTagsReserve)
	if !ok { // an id too long for the reserve: no room for marks, but the id is kept
		b, _ = opusTags([]string{tagTrackID + "=" + trackID}, 0)
	}
	return b
}

// markedTags fills a comment header of exactly size bytes with the track id and as many
// marks as fit (see markComments); ok is false if not even the track id fits.
func markedTags(trackID string, marks []fileMark, size int) ([]byte, bool) {
	base := []string{tagTrackID + "=" + trackID}
	best, ok := opusTags(base, size)
	if !ok {
		return nil, false
	}
	spans, chapters := markComments(marks)
	for i := 1; i <= len(spans); i++ {
		b, ok := opusTags(append(base, spans[:i]...), size)
		if !ok {
			return best, true
		}
		best = b
	}
	if b, ok := opusTags(append(append(base, spans...), chapters...), size); ok {
		best = b
	}
	return best, true
}

// markComments renders marks as comments: RTMREC_PAUSE=start_ms-end_ms (or
// RTMREC_REDACTED=…) for machines, and the Vorbis chapter extension
// (CHAPTERnnn=HH:MM:SS.mmm, CHAPTERnnnNAME=label; https://wiki.xiph.org/Chapter_Extension)
// that players and ffprobe -show_chapters show: a "recording" chapter from 0, a chapter
// named after the mark at its start and "recording" again at its end.
func markComments(marks []fileMark) (spans, chapters []string) {
	type cut struct {
		ms    int64
		label string
	}
	cuts := []cut{{0, "recording"}}
	for _, m := range marks {
		spans = append(spans, fmt.Sprintf("%s=%d-%d", m.commentKey(), m.startMS, m.endMS))
		cuts = append(cuts, cut{m.startMS, m.label}, cut{m.endMS, "recording"})
	}
	slices.SortStableFunc(cuts, func(a, b cut) int { return cmp.Compare(a.ms, b.ms) })
	for i, c := range cuts {
		if i > 999 {
			break
		}
		ms := max(c.ms, 0)
		chapters = append(chapters,
			fmt.Sprintf("CHAPTER%03d=%02d:%02d:%02d.%03d", i, ms/3600000, ms/60000%60, ms/1000%60, ms%1000),
			fmt.Sprintf("CHAPTER%03dNAME=%s", i, c.label))
	}
	return spans, chapters
}

// parseOpusTags reads a comment header; the padding after the comments is ignored.
func parseOpusTags(b []byte) (comments []string, ok bool) {
	if len(b) < 16 || string(b[:8]) != "OpusTags" {
		return nil, false
	}
	b = b[8:]
	next := func() ([]byte, bool) {
		if len(b) < 4 {
			return nil, false
		}
		n := binary.LittleEndian.Uint32(b)
		if uint64(n) > uint64(len(b)-4) {
			return nil, false
		}
		s := b[4 : 4+n]
		b = b[4+n:]
		return s, true
	}
	if _, ok := next(); !ok { // vendor
		return nil, false
	}
	if len(b) < 4 {
		return nil, false
	}
	count := binary.LittleEndian.Uint32(b)
	b = b[4:]
	if uint64(count) > uint64(len(b))/4 {
		return nil, false
	}
	for range count {
		c, ok := next()
		if !ok {
			return nil, false
		}
		comments = append(comments, string(c))
	}
	return comments, true
}

// tagValue returns the value of the first comment KEY=value (keys are case-insensitive,
// RFC 7845 §5.2.1).
func tagValue(comments []string, key string) (string, bool) {
	for _, c := range comments {
		if k, v, ok := strings.Cut(c, "="); ok && strings.EqualFold(k, key) {
			return v, true
		}
	}
	return "", false
}
