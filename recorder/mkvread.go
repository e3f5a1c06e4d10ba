package recorder

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"time"
)

// Reading Matroska back (Repair and Redact): a streaming scan of the top-level elements
// and the blocks of every cluster, with bounded element sizes.

// errMKVDamaged is why a scan stopped before the end: a truncated or corrupt element. What
// came before it was delivered; Repair keeps it, Redact refuses the file.
var errMKVDamaged = errors.New("matroska: damaged")

// mkvScan is what a scan learns outside the clusters.
type mkvScan struct {
	docType     string
	durationMS  float64   // Info Duration (0 if absent)
	date        time.Time // Info DateUTC (zero if absent)
	scaleNS     uint64    // Info TimecodeScale (default 1 ms)
	chapters    []fileMark
	blockGroups int // BlockGroups skipped (this package never writes them)
}

// scanMKV reads a Matroska/WebM file from r. onTracks gets the body of the Tracks element
// (once, before any block, with what was learnt so far); onBlock every SimpleBlock and its
// cluster's time. It returns nil at a clean end, an error wrapping errMKVDamaged when the
// file is cut or corrupt (everything before was delivered), or the callbacks' errors.
func scanMKV(r io.Reader, onTracks func(*mkvScan, []byte) error, onBlock func(clusterMS int64, b []byte) error) (*mkvScan, error) {
	info := &mkvScan{scaleNS: 1e6}
	sc := &ebmlScanner{r: bufio.NewReaderSize(r, 1<<20)}
	h, err := sc.head()
	if err != nil || h.id != idEBML {
		return info, errors.New("not an EBML file")
	}
	hdr, err := sc.read(h.size)
	if err != nil {
		return info, fmt.Errorf("EBML header: %w", err)
	}
	info.docType = string(childBytes(hdr, 0x4282))
	if h, err = sc.head(); err != nil || h.id != idSegment {
		return info, errors.New("no Segment")
	}
	damaged := func(what string, err error) error {
		if err != nil {
			return fmt.Errorf("%w: %s at byte %d: %v", errMKVDamaged, what, sc.off, err)
		}
		return fmt.Errorf("%w: %s at byte %d", errMKVDamaged, what, sc.off)
	}
	haveTracks := false
	var pend *elemHeader
	clusterMS := int64(0)
	for {
		var h elemHeader
		if pend != nil {
			h, pend = *pend, nil
		} else if h, err = sc.head(); err != nil {
			if errors.Is(err, io.EOF) {
				return info, nil
			}
			return info, damaged("element header", err)
		}
		switch h.id {
		case idInfo, idChapters:
			if h.size == sizeUnknown {
				return info, damaged("element of unknown size", nil)
			}
			body, err := sc.read(h.size)
			if err != nil {
				return info, damaged("Info/Chapters", err)
			}
			if h.id == idInfo {
				info.readInfo(body)
			} else {
				info.chapters = chapterMarks(body)
			}
		case idTracks:
			if haveTracks || h.size == sizeUnknown {
				return info, damaged("second Tracks", nil)
			}
			body, err := sc.read(h.size)
			if err != nil {
				return info, damaged("Tracks", err)
			}
			haveTracks = true
			if err := onTracks(info, body); err != nil {
				return info, err
			}
		case idCluster:
			if !haveTracks {
				return info, damaged("Cluster before Tracks", nil)
			}
			end := int64(-1)
			if h.size != sizeUnknown {
				end = h.off + int64(h.size)
			}
			for end < 0 || sc.off < end {
				c, err := sc.head()
				if err != nil {
					if end < 0 && errors.Is(err, io.EOF) {
						return info, nil // an unknown-size cluster ends with the file
					}
					return info, damaged("Cluster", err)
				}
				if !isClusterChild(c.id) {
					if end >= 0 {
						return info, damaged("Cluster child", nil)
					}
					pend = &c
					break
				}
				if c.size == sizeUnknown || (end >= 0 && c.off+int64(c.size) > end) {
					return info, damaged("Cluster child size", nil)
				}
				switch c.id {
				case idTimecode:
					b, err := sc.read(c.size)
					if err != nil || len(b) > 8 {
						return info, damaged("Timecode", err)
					}
					clusterMS = 0
					for _, x := range b {
						clusterMS = clusterMS<<8 | int64(x)
					}
				case idSimpleBlock:
					b, err := sc.read(c.size)
					if err != nil {
						return info, damaged("SimpleBlock", err)
					}
					if err := onBlock(clusterMS, b); err != nil {
						return info, err
					}
				default:
					if c.id == idBlockGroup {
						info.blockGroups++
					}
					if err := sc.skip(c.size); err != nil {
						return info, damaged("Cluster child", err)
					}
				}
			}
		default:
			if err := sc.skip(h.size); err != nil {
				return info, damaged("element", err)
			}
		}
	}
}

// readInfo takes TimecodeScale, Duration and DateUTC from an Info body.
func (s *mkvScan) readInfo(body []byte) {
	if v := beUint(childBytes(body, idTimecodeScale)); v > 0 {
		s.scaleNS = v
	}
	s.durationMS = beFloat(childBytes(body, idDuration))
	if b := childBytes(body, idDateUTC); len(b) == 8 {
		epoch := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
		s.date = epoch.Add(time.Duration(int64(binary.BigEndian.Uint64(b))))
	}
}

// The Tracks and Chapters bodies are parsed by hand: ebml-go's Unmarshal trusts sizes
// inside the data (a stray SimpleBlock with a lacing count makes it allocate terabytes),
// and these readers take files from disk that may be damaged.

// Element IDs read back beyond those in ebml.go (RFC 9559).
const (
	idTrackEntry        = 0xAE
	idTrackNumber       = 0xD7
	idTrackUID          = 0x73C5
	idTrackType         = 0x83
	idFlagLacing        = 0x9C
	idName              = 0x536E
	idCodecID           = 0x86
	idCodecPrivate      = 0x63A2
	idCodecDelay        = 0x56AA
	idSeekPreRoll       = 0x56BB
	idAudio             = 0xE1
	idSamplingFrequency = 0xB5
	idChannels          = 0x9F
	idVideo             = 0xE0
	idPixelWidth        = 0xB0
	idPixelHeight       = 0xBA
	idProjection        = 0x7670
	idProjectionType    = 0x7671
	idProjectionRoll    = 0x7675
	idEditionEntry      = 0x45B9
	idChapterAtom       = 0xB6
	idChapterTimeStart  = 0x91
	idChapterTimeEnd    = 0x92
	idChapterDisplay    = 0x80
	idChapString        = 0x85
)

// parseTracks reads the entries of a Tracks body; an entry without a number is skipped.
func parseTracks(body []byte) ([]mkvTrackEntry, error) {
	var out []mkvTrackEntry
	ok := ebmlChildren(body, func(id uint64, b []byte) bool {
		if id != idTrackEntry {
			return true
		}
		var e mkvTrackEntry
		good := ebmlChildren(b, func(id uint64, v []byte) bool {
			switch id {
			case idTrackNumber:
				e.TrackNumber = beUint(v)
			case idTrackUID:
				e.TrackUID = beUint(v)
			case idTrackType:
				e.TrackType = beUint(v)
			case idFlagLacing:
				e.FlagLacing = beUint(v)
			case idName:
				e.Name = string(v)
			case idCodecID:
				e.CodecID = string(v)
			case idCodecPrivate:
				e.CodecPrivate = bytes.Clone(v)
			case idCodecDelay:
				e.CodecDelay = beUint(v)
			case idSeekPreRoll:
				e.SeekPreRoll = beUint(v)
			case idAudio:
				e.Audio = &mkvAudio{SamplingFrequency: beFloat(childBytes(v, idSamplingFrequency)), Channels: beUint(childBytes(v, idChannels))}
			case idVideo:
				e.Video = &mkvVideo{PixelWidth: beUint(childBytes(v, idPixelWidth)), PixelHeight: beUint(childBytes(v, idPixelHeight))}
				if p := childBytes(v, idProjection); p != nil {
					e.Video.Projection = &mkvProjection{ProjectionType: beUint(childBytes(p, idProjectionType)), ProjectionPoseRoll: beFloat(childBytes(p, idProjectionRoll))}
				}
			}
			return true
		})
		if good && e.TrackNumber != 0 {
			out = append(out, e)
		}
		return good
	})
	if !ok {
		return nil, errors.New("parse Tracks: malformed element")
	}
	return out, nil
}

// chapterMarks reads the first edition's chapters back as marks (label: the first
// display string).
func chapterMarks(body []byte) []fileMark {
	var out []fileMark
	ebmlChildren(childBytes(body, idEditionEntry), func(id uint64, atom []byte) bool {
		if id != idChapterAtom {
			return true
		}
		m := fileMark{startMS: int64(min(beUint(childBytes(atom, idChapterTimeStart))/1e6, math.MaxInt32)), label: "chapter"}
		m.endMS = max(int64(min(beUint(childBytes(atom, idChapterTimeEnd))/1e6, math.MaxInt32)), m.startMS)
		if s := childBytes(childBytes(atom, idChapterDisplay), idChapString); len(s) > 0 {
			m.label = string(s)
		}
		out = append(out, m)
		return true
	})
	return out
}

// ebmlChildren calls fn for each child element of a master element's body until fn
// returns false; it reports whether the body was well formed and fully walked.
func ebmlChildren(body []byte, fn func(id uint64, data []byte) bool) bool {
	for len(body) > 0 {
		id, n, ok := readVint(body, true)
		if !ok {
			return false
		}
		size, m, ok := readVint(body[n:], false)
		if !ok || size == sizeUnknown || size > uint64(len(body)-n-m) {
			return false
		}
		if !fn(id, body[n+m:n+m+int(size)]) {
			return false
		}
		body = body[n+m+int(size):]
	}
	return true
}

// childBytes returns the body of the first child element id of a master element's body.
func childBytes(body []byte, id uint64) []byte {
	var out []byte
	ebmlChildren(body, func(cid uint64, data []byte) bool {
		if cid == id {
			out = data
			return false
		}
		return true
	})
	return out
}

// beUint decodes an unsigned integer element (more than 8 bytes is invalid: 0).
func beUint(b []byte) uint64 {
	if len(b) > 8 {
		return 0
	}
	var v uint64
	for _, x := range b {
		v = v<<8 | uint64(x)
	}
	return v
}

// beFloat decodes a float element (4 or 8 bytes; anything else: 0).
func beFloat(b []byte) float64 {
	switch len(b) {
	case 4:
		return float64(math.Float32frombits(binary.BigEndian.Uint32(b)))
	case 8:
		return math.Float64frombits(binary.BigEndian.Uint64(b))
	}
	return 0
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
