package recorder

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Ogg layout (RFC 3533, RFC 7845).
//
// Every audio track is one Opus logical stream; the streams are grouped (multiplexed) in one
// physical stream. RFC 3533 §4 requires all BOS pages of a group before any other page, so
// the headers of every track known when the recording starts (received or negotiated) are
// written at once, before any media, and made durable: a crash in the first second still
// leaves a file that repair can finish. A track added later starts a new chained link: every
// stream of the current group gets an EOS page, then a new group with fresh serial numbers
// repeats the BOS and tag headers of all tracks. Granule positions continue across links, so the timeline stays absolute. This is
// valid Ogg, but ffmpeg (6.x) does not accept a chained link with more streams than the
// first one and stops at the new link; libopusfile-style players read link by link.
//
// Each link starts each stream with 80 ms of TOC-only packets covered by the pre-skip, so a
// decoder entering a mid-call Opus stream converges on silence and granule minus pre-skip is
// exactly the file time. Gaps (loss, DTX, pause, late start) are filled with TOC-only packets
// so that granules follow the RTP clock, not the packet count.

const (
	oggFlagContinued = 0x01
	oggFlagBOS       = 0x02
	oggFlagEOS       = 0x04

	oggHeaderLen  = 27
	oggMaxPayload = 8000       // flush a page before it grows past this
	oggMaxSpan    = 48000      // or spans more than one second, to bound what a crash loses
	oggMinFill    = 120        // smallest Opus frame (2.5 ms)
	oggCRCPoly    = 0x04c11db7 // RFC 3533 §6: direct CRC-32, init 0, no final XOR
)

// oggCRC is the lookup table of the Ogg CRC; built per writer/reader because the package keeps
// no global state.
type oggCRC [8][256]uint32

func newOggCRC() *oggCRC {
	var t oggCRC
	for i := range t[0] {
		r := uint32(i) << 24
		for range 8 {
			if r&0x80000000 != 0 {
				r = r<<1 ^ oggCRCPoly
			} else {
				r <<= 1
			}
		}
		t[0][i] = r
	}
	// Slicing-by-8: t[k][i] is the CRC of byte i followed by k zero bytes,
	// so eight bytes are folded per step instead of one (the CRC was a
	// third of the Ogg writer's time).
	for k := 1; k < 8; k++ {
		for i := range t[k] {
			prev := t[k-1][i]
			t[k][i] = prev<<8 ^ t[0][prev>>24]
		}
	}
	return &t
}

func (t *oggCRC) update(crc uint32, p []byte) uint32 {
	for len(p) >= 8 {
		hi := crc ^ (uint32(p[0])<<24 | uint32(p[1])<<16 | uint32(p[2])<<8 | uint32(p[3]))
		crc = t[7][hi>>24] ^ t[6][byte(hi>>16)] ^ t[5][byte(hi>>8)] ^ t[4][byte(hi)] ^
			t[3][p[4]] ^ t[2][p[5]] ^ t[1][p[6]] ^ t[0][p[7]]
		p = p[8:]
	}
	for _, b := range p {
		crc = crc<<8 ^ t[0][byte(crc>>24)^b]
	}
	return crc
}

type oggStream struct {
	tr       *trackState // nil until the track announced at begin is added
	id       string      // the track id, in the OpusTags
	channels uint16
	serial   uint32
	pageSeq  uint32
	end      int64 // samples on the file timeline written so far (granule - pre-skip)

	lacing    [255]byte
	nseg      int
	data      []byte
	npackets  int
	pageStart int64
}

// oggWriter writes grouped Ogg Opus streams.
type oggWriter struct {
	w         *fileWriter
	crc       *oggCRC
	streams   []*oggStream
	committed bool
	nextSer   uint32
	hdr       [oggHeaderLen + 255]byte
	fill      [2]byte
	tagPages  []oggTagPage
}

// oggTagPage is an OpusTags page already written, rewritten in place with the marks.
type oggTagPage struct {
	off     int64
	serial  uint32
	seq     uint32
	trackID string
	size    int // of the comment header
}

// newOggWriter writes to w with the CRC table crc (read only, shared by the writers of a
// Writers).
func newOggWriter(w *fileWriter, crc *oggCRC, serialSeed uint32) *oggWriter {
	return &oggWriter{w: w, crc: crc, nextSer: serialSeed}
}

// begin writes the headers of the tracks known at the start, before any media.
func (o *oggWriter) begin(tracks []TrackInfo) error {
	for _, t := range tracks {
		if t.Codec == CodecOpus {
			o.streams = append(o.streams, o.newStream(t))
		}
	}
	return o.commit()
}

func (o *oggWriter) newStream(t TrackInfo) *oggStream {
	// The page's data grows to what a second of the track takes (4 to 8 KB for a call's
	// Opus), not to the largest page allowed.
	return &oggStream{id: t.ID, channels: t.Channels, serial: o.serial()}
}

func (o *oggWriter) addTrack(tr *trackState) error {
	if tr.info.Codec != CodecOpus {
		return fmt.Errorf("ogg: codec %s not supported", tr.info.Codec)
	}
	for i, s := range o.streams {
		if s.tr == nil && s.id == tr.info.ID {
			s.tr, tr.num = tr, i+1 // its headers are already written
			return nil
		}
	}
	s := o.newStream(tr.info)
	s.tr = tr
	tr.num = len(o.streams) + 1
	o.streams = append(o.streams, s)
	if !o.committed {
		return nil
	}
	// RFC 3533 forbids a BOS page after data pages of the group: chain a new link.
	for _, old := range o.streams[:len(o.streams)-1] {
		if err := o.endStream(old); err != nil {
			return err
		}
		old.serial = o.serial()
		old.pageSeq = 0
	}
	return o.writeHeaders()
}

func (o *oggWriter) serial() uint32 {
	o.nextSer++
	return o.nextSer
}

func (o *oggWriter) updateTrack(*trackState) error { return nil }

// commit writes the headers of the first group.
func (o *oggWriter) commit() error {
	if o.committed {
		return nil
	}
	o.committed = true
	return o.writeHeaders()
}

func (o *oggWriter) writeHeaders() error {
	for _, s := range o.streams {
		if err := o.writePage(s, oggFlagBOS, 0, opusHead(s.channels, oggPreSkip)); err != nil {
			return err
		}
	}
	for _, s := range o.streams {
		tags := trackTags(s.id)
		o.tagPages = append(o.tagPages, oggTagPage{off: o.w.off, serial: s.serial, seq: s.pageSeq, trackID: s.id, size: len(tags)})
		if err := o.writePage(s, 0, 0, tags); err != nil {
			return err
		}
		// Pre-roll covered by pre-skip: does not advance the timeline.
		for range oggPreSkip / 960 {
			o.fill[0] = opusTOC20ms
			o.appendPacket(s, o.fill[:1])
		}
	}
	return nil
}

// writeFrame places an Opus packet at file time t (ns), filling any gap before it.
func (o *oggWriter) writeFrame(tr *trackState, t int64, _ bool, data []byte) error {
	if tr.num < 1 || tr.num > len(o.streams) {
		return errors.New("ogg: unknown track")
	}
	if err := o.commit(); err != nil {
		return err
	}
	s := o.streams[tr.num-1]
	n := int64(opusSamples(data))
	if n == 0 || len(data) > 7000 {
		tr.framesDropped++
		return nil
	}
	pos := max(t, 0) * opusSampleRate / 1e9
	if pos+n <= s.end {
		// Entirely in the past (anchor moved back, or a late packet): keep sync, drop it.
		tr.framesDropped++
		return nil
	}
	if err := o.fillTo(s, pos); err != nil {
		return err
	}
	if err := o.addPacket(s, data, n); err != nil {
		return err
	}
	tr.framesWritten++
	return nil
}

func (o *oggWriter) fillTo(s *oggStream, pos int64) error {
	for pos-s.end >= oggMinFill {
		p, n := opusFiller(&o.fill, pos-s.end)
		if err := o.addPacket(s, p, int64(n)); err != nil {
			return err
		}
	}
	return nil
}

func (o *oggWriter) addPacket(s *oggStream, p []byte, n int64) error {
	lace := len(p)/255 + 1
	if s.npackets > 0 && (s.nseg+lace > 255 || len(s.data)+len(p) > oggMaxPayload || s.end-s.pageStart >= oggMaxSpan) {
		if err := o.flushPage(s, 0); err != nil {
			return err
		}
	}
	o.appendPacket(s, p)
	s.end += n
	return nil
}

func (o *oggWriter) appendPacket(s *oggStream, p []byte) {
	if s.npackets == 0 {
		s.pageStart = s.end
	}
	for l := len(p); ; l -= 255 {
		if l >= 255 {
			s.lacing[s.nseg] = 255
			s.nseg++
			continue
		}
		s.lacing[s.nseg] = byte(l)
		s.nseg++
		break
	}
	s.data = append(s.data, p...)
	s.npackets++
}

func (o *oggWriter) flushPage(s *oggStream, flags byte) error {
	if s.npackets == 0 {
		return nil
	}
	err := o.writePageLaced(s, flags, s.end+oggPreSkip, s.lacing[:s.nseg], s.data)
	s.nseg, s.npackets, s.data = 0, 0, s.data[:0]
	return err
}

// writePage writes a single-packet page (headers).
func (o *oggWriter) writePage(s *oggStream, flags byte, granule int64, p []byte) error {
	var lacing [255]byte
	n := 0
	for l := len(p); ; l -= 255 {
		if l >= 255 {
			lacing[n] = 255
			n++
			continue
		}
		lacing[n] = byte(l)
		n++
		break
	}
	return o.writePageLaced(s, flags, granule, lacing[:n], p)
}

func (o *oggWriter) writePageLaced(s *oggStream, flags byte, granule int64, lacing, data []byte) error {
	h := o.hdr[:oggHeaderLen+len(lacing)]
	copy(h, "OggS")
	h[4] = 0
	h[5] = flags
	binary.LittleEndian.PutUint64(h[6:], uint64(granule))
	binary.LittleEndian.PutUint32(h[14:], s.serial)
	binary.LittleEndian.PutUint32(h[18:], s.pageSeq)
	binary.LittleEndian.PutUint32(h[22:], 0)
	h[26] = byte(len(lacing))
	copy(h[oggHeaderLen:], lacing)
	crc := o.crc.update(o.crc.update(0, h), data)
	binary.LittleEndian.PutUint32(h[22:], crc)
	s.pageSeq++
	if _, err := o.w.Write(h); err != nil {
		return fmt.Errorf("ogg: write page: %w", err)
	}
	if _, err := o.w.Write(data); err != nil {
		return fmt.Errorf("ogg: write page: %w", err)
	}
	return nil
}

// endStream writes the stream's last page with EOS. A page needs a packet, so an empty one
// gets the shortest filler (2.5 ms).
func (o *oggWriter) endStream(s *oggStream) error {
	if s.npackets == 0 {
		p, n := opusFiller(&o.fill, oggMinFill)
		o.appendPacket(s, p)
		s.end += int64(n)
	}
	return o.flushPage(s, oggFlagEOS)
}

// finish fills every stream up to the end of the recording (ns), ends the streams, and
// writes the marks into the comment headers.
func (o *oggWriter) finish(end int64, marks []fileMark) error {
	if err := o.commit(); err != nil {
		return err
	}
	pos := max(end, 0) * opusSampleRate / 1e9
	for _, s := range o.streams {
		if err := o.fillTo(s, pos); err != nil {
			return err
		}
		if err := o.endStream(s); err != nil {
			return err
		}
	}
	if len(marks) == 0 {
		return nil
	}
	for _, tp := range o.tagPages {
		tags, ok := markedTags(tp.trackID, marks, tp.size)
		if !ok {
			continue
		}
		if err := o.w.writeAt(o.renderPage(tp.serial, tp.seq, 0, 0, tags), tp.off); err != nil {
			return fmt.Errorf("ogg: mark pauses: %w", err)
		}
	}
	return nil
}

// renderPage builds a single-packet page (headers, off the hot path).
func (o *oggWriter) renderPage(serial, seq uint32, flags byte, granule int64, p []byte) []byte {
	b := make([]byte, oggHeaderLen, oggHeaderLen+len(p)/255+1+len(p))
	copy(b, "OggS")
	b[5] = flags
	binary.LittleEndian.PutUint64(b[6:], uint64(granule))
	binary.LittleEndian.PutUint32(b[14:], serial)
	binary.LittleEndian.PutUint32(b[18:], seq)
	n := len(p)/255 + 1
	b[26] = byte(n)
	for l := len(p); l >= 0; l -= 255 {
		b = append(b, byte(min(l, 255)))
	}
	b = append(b, p...)
	binary.LittleEndian.PutUint32(b[22:], o.crc.update(0, b))
	return b
}

// duration is the longest stream's length (ns).
func (o *oggWriter) duration() int64 {
	var d int64
	for _, s := range o.streams {
		d = max(d, s.end)
	}
	return d * 1e9 / opusSampleRate
}

// flushPending writes the pending pages of all streams, so the periodic fsync covers them.
func (o *oggWriter) flushPending() error {
	for _, s := range o.streams {
		if s.npackets > 1 {
			if err := o.flushPage(s, 0); err != nil {
				return err
			}
		}
	}
	return nil
}

// oggPage is a parsed page; Data and Lacing alias the reader's buffer.
type oggPage struct {
	Flags   byte
	Granule int64
	Serial  uint32
	Seq     uint32
	Lacing  []byte
	Data    []byte
	Raw     []byte // the whole page
}

var errOggCorrupt = errors.New("ogg: corrupt page")

// oggReader reads pages and checks their CRC.
type oggReader struct {
	r   *bufio.Reader
	crc *oggCRC
	buf []byte
}

func newOggReader(r io.Reader) *oggReader {
	return &oggReader{r: bufio.NewReader(r), crc: newOggCRC(), buf: make([]byte, 0, oggHeaderLen+255+255*255)}
}

// next returns the next page; io.EOF at a clean end, io.ErrUnexpectedEOF on a truncated page,
// errOggCorrupt on a bad capture pattern or CRC.
func (o *oggReader) next() (oggPage, error) {
	h := o.buf[:oggHeaderLen]
	if _, err := io.ReadFull(o.r, h); err != nil {
		return oggPage{}, err
	}
	if string(h[:4]) != "OggS" || h[4] != 0 {
		return oggPage{}, errOggCorrupt
	}
	nseg := int(h[26])
	b := o.buf[:oggHeaderLen+nseg]
	if _, err := io.ReadFull(o.r, b[oggHeaderLen:]); err != nil {
		return oggPage{}, unexpected(err)
	}
	size := 0
	for _, l := range b[oggHeaderLen:] {
		size += int(l)
	}
	b = o.buf[:oggHeaderLen+nseg+size]
	if _, err := io.ReadFull(o.r, b[oggHeaderLen+nseg:]); err != nil {
		return oggPage{}, unexpected(err)
	}
	want := binary.LittleEndian.Uint32(b[22:])
	binary.LittleEndian.PutUint32(b[22:], 0)
	got := o.crc.update(0, b)
	binary.LittleEndian.PutUint32(b[22:], want)
	if got != want {
		return oggPage{}, errOggCorrupt
	}
	return oggPage{
		Flags:   b[5],
		Granule: int64(binary.LittleEndian.Uint64(b[6:])),
		Serial:  binary.LittleEndian.Uint32(b[14:]),
		Seq:     binary.LittleEndian.Uint32(b[18:]),
		Lacing:  b[oggHeaderLen : oggHeaderLen+nseg],
		Data:    b[oggHeaderLen+nseg:],
		Raw:     b,
	}, nil
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
