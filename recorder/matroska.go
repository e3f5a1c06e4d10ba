package recorder

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"time"

	"github.com/at-wat/ebml-go"
	"github.com/at-wat/ebml-go/webm"
)

// Matroska/WebM layout written by mkvWriter (streaming, seekable, crash-tolerant):
//
//	EBML header
//	Segment (size unknown while recording, patched at the end)
//	  SeekHead   fixed 89 bytes: Info, Tracks, and Void slots that become the Cues and
//	             Chapters entries
//	  Info       with an 11-byte Void slot that becomes Duration at the end
//	  Tracks     a fixed 4 KiB region: TrackEntry elements plus a Void filler. Tracks are
//	             rewritten in place when a track is added (renegotiation) or a video track
//	             learns its size/codec private data from its first keyframe.
//	  Cluster... one per video keyframe of the first video track, at most 5 s each; sizes
//	             patched when the cluster closes. Blocks are SimpleBlocks, ms timestamps.
//	  Cues       one CuePoint per cluster (video keyframe, or audio when no keyframe)
//	  Chapters   one ChapterAtom per mark (pause, redaction), only when there are any
//
// A file cut by a crash plays up to its last complete block; Repair rebuilds Duration and
// Cues from the clusters.
// MaxTracks is how many tracks one recording holds: the Matroska Tracks region has a fixed
// size so that it can be rewritten in place, and every late Ogg stream rewrites all headers.
const MaxTracks = 24

// mkvMaxNameLen bounds a track's Name (its id, chosen by the client's SDP) so that
// MaxTracks entries always fit the Tracks region.
const mkvMaxNameLen = 32

const (
	mkvTracksRegion   = 4096
	mkvMaxClusterMS   = 5000
	mkvMaxClusterSize = 16 << 20
	mkvSeekHeadLen    = 4 + 1 + 4*21
	mkvDurationSlot   = 11
	mkvMuxingApp      = "rtmrec"
)

// Element structs marshalled with ebml-go (not on the hot path).
type mkvTrackEntry struct {
	Name         string    `ebml:"Name,omitempty"`
	TrackNumber  uint64    `ebml:"TrackNumber"`
	TrackUID     uint64    `ebml:"TrackUID"`
	FlagLacing   uint64    `ebml:"FlagLacing"`
	CodecID      string    `ebml:"CodecID"`
	CodecPrivate []byte    `ebml:"CodecPrivate,omitempty"`
	CodecDelay   uint64    `ebml:"CodecDelay,omitempty"`
	SeekPreRoll  uint64    `ebml:"SeekPreRoll,omitempty"`
	TrackType    uint64    `ebml:"TrackType"`
	Audio        *mkvAudio `ebml:"Audio,omitempty"`
	Video        *mkvVideo `ebml:"Video,omitempty"`
}

type mkvAudio struct {
	SamplingFrequency float64 `ebml:"SamplingFrequency"`
	Channels          uint64  `ebml:"Channels"`
}

type mkvVideo struct {
	PixelWidth  uint64         `ebml:"PixelWidth"`
	PixelHeight uint64         `ebml:"PixelHeight"`
	Projection  *mkvProjection `ebml:"Projection,omitempty"`
}

// mkvProjection turns a rectangular picture for display (ProjectionType 0).
type mkvProjection struct {
	ProjectionType     uint64  `ebml:"ProjectionType"`
	ProjectionPoseRoll float64 `ebml:"ProjectionPoseRoll"`
}

type mkvTracksBody struct {
	TrackEntry []mkvTrackEntry `ebml:"TrackEntry"`
}

// Chapters (RFC 9559 §5.1.7), with only the elements WebM allows.
type mkvChapters struct {
	EditionEntry []mkvEdition `ebml:"EditionEntry"`
}

type mkvEdition struct {
	ChapterAtom []mkvChapterAtom `ebml:"ChapterAtom"`
}

type mkvChapterAtom struct {
	ChapterUID       uint64              `ebml:"ChapterUID"`
	ChapterTimeStart uint64              `ebml:"ChapterTimeStart"`
	ChapterTimeEnd   uint64              `ebml:"ChapterTimeEnd,omitempty"`
	ChapterDisplay   []mkvChapterDisplay `ebml:"ChapterDisplay"`
}

type mkvChapterDisplay struct {
	ChapString   string `ebml:"ChapString"`
	ChapLanguage string `ebml:"ChapLanguage"`
}

type mkvCuePoint struct {
	timeMS uint64
	track  uint64
	pos    uint64 // cluster offset relative to the Segment data
}

// mkvWriter streams a Matroska or WebM file.
type mkvWriter struct {
	w       *fileWriter
	webm    bool
	entries []mkvTrackEntry // index = track number - 1
	tracks  []*trackState

	segData    int64 // offset of the Segment's data
	cuesSlot   int64 // offset of the SeekHead Void slot for Cues (Chapters: the next 21 bytes)
	durSlot    int64 // offset of the Info Void slot for Duration
	tracksPos  int64
	clusterPos int64 // -1 when no cluster is open
	clusterMS  int64
	clusterLen int
	cueTrack   *trackState // the video track whose keyframes start clusters
	cues       []mkvCuePoint
	endMS      int64
	scratch    []byte
	uidSeed    string
	finished   bool
	wrote      bool // a block was written
}

func newMKVWriter(w *fileWriter, f Format, uidSeed string, started time.Time) (*mkvWriter, error) {
	m := &mkvWriter{w: w, webm: f == FormatWebM, clusterPos: -1, scratch: make([]byte, 0, 64), uidSeed: uidSeed}
	docType := "matroska"
	if m.webm {
		docType = "webm"
	}
	var hdr bytes.Buffer
	err := ebml.Marshal(&struct {
		Header webm.EBMLHeader `ebml:"EBML"`
	}{webm.EBMLHeader{
		EBMLVersion: 1, EBMLReadVersion: 1, EBMLMaxIDLength: 4, EBMLMaxSizeLength: 8,
		DocType: docType, DocTypeVersion: 4, DocTypeReadVersion: 2,
	}}, &hdr)
	if err != nil {
		return nil, fmt.Errorf("matroska: marshal EBML header: %w", err)
	}
	b := hdr.Bytes()
	b = appendID(b, idSegment)
	b = appendSizeLen(b, sizeUnknown&^(1<<56), 8)
	m.segData = int64(len(b))

	// SeekHead: positions are relative to the Segment data (RFC 9559 §5.1.1.1.2).
	seekHeadStart := len(b)
	b = appendID(b, idSeekHead)
	b = append(b, 0x80|(mkvSeekHeadLen-5))
	infoPos := int64(mkvSeekHeadLen)
	b = appendSeek(b, idInfo, uint64(infoPos))
	// Tracks follow Info; Info's length is fixed below, so compute it first.
	info := m.infoBody(started)
	infoLen := 4 + 1 + len(info)
	m.tracksPos = m.segData + infoPos + int64(infoLen)
	b = appendSeek(b, idTracks, uint64(m.tracksPos-m.segData))
	m.cuesSlot = int64(len(b))
	b = appendVoid(b, 21)
	b = appendVoid(b, 21)
	if len(b)-seekHeadStart != mkvSeekHeadLen {
		return nil, fmt.Errorf("matroska: internal: seekhead length %d", len(b)-seekHeadStart)
	}
	b = appendID(b, idInfo)
	b = append(b, 0x80|byte(len(info)))
	b = append(b, info...)
	m.durSlot = int64(len(b)) - mkvDurationSlot
	if _, err := w.Write(b); err != nil {
		return nil, fmt.Errorf("matroska: write header: %w", err)
	}
	region, err := m.tracksElement()
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(region); err != nil {
		return nil, fmt.Errorf("matroska: write tracks: %w", err)
	}
	return m, nil
}

func appendSeek(b []byte, id uint32, pos uint64) []byte {
	b = appendID(b, idSeek)
	b = append(b, 0x80|18)
	b = appendID(b, idSeekID)
	b = append(b, 0x84)
	b = appendID(b, id)
	return appendUint8Elem(b, idSeekPosition, pos)
}

// infoBody ends with the Duration slot, a Void replaced by Duration at the end.
func (m *mkvWriter) infoBody(started time.Time) []byte {
	var b []byte
	b = appendID(b, idTimecodeScale)
	b = append(b, 0x83, 0x0F, 0x42, 0x40) // 1 ms
	for _, id := range []uint32{idMuxingApp, idWritingApp} {
		b = appendID(b, id)
		b = appendSize(b, uint64(len(mkvMuxingApp)))
		b = append(b, mkvMuxingApp...)
	}
	if !started.IsZero() {
		epoch := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
		b = appendUint8Elem(b, idDateUTC, uint64(started.Sub(epoch).Nanoseconds()))
	}
	return appendVoid(b, mkvDurationSlot)
}

func (m *mkvWriter) trackUID(num int, id string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(m.uidSeed))
	h.Write([]byte(id))
	_ = binary.Write(h, binary.BigEndian, uint64(num))
	if u := h.Sum64(); u != 0 {
		return u
	}
	return 1
}

func (m *mkvWriter) entryFor(tr *trackState) mkvTrackEntry {
	name := tr.info.ID
	if len(name) > mkvMaxNameLen {
		name = name[:mkvMaxNameLen]
	}
	e := mkvTrackEntry{
		Name:        name,
		TrackNumber: uint64(tr.num),
		TrackUID:    m.trackUID(tr.num, tr.info.ID),
	}
	switch tr.info.Codec {
	case CodecOpus:
		e.CodecID = "A_OPUS"
		e.TrackType = 2
		e.CodecPrivate = opusHead(tr.info.Channels, 0)
		e.SeekPreRoll = 80_000_000 // RFC 7845 decoder convergence, as WebM requires for Opus
		e.Audio = &mkvAudio{SamplingFrequency: 48000, Channels: uint64(max(tr.info.Channels, 1))}
	case CodecVP8, CodecVP9, CodecH264:
		e.TrackType = 1
		e.CodecID = map[Codec]string{CodecVP8: "V_VP8", CodecVP9: "V_VP9", CodecH264: "V_MPEG4/ISO/AVC"}[tr.info.Codec]
		w, h := tr.width, tr.height
		if w == 0 || h == 0 {
			w, h = 16, 16 // placeholder until the first keyframe tells the size
		}
		e.Video = &mkvVideo{PixelWidth: uint64(w), PixelHeight: uint64(h)}
		if tr.orient.rotation != 0 {
			e.Video.Projection = &mkvProjection{ProjectionPoseRoll: projectionRoll(tr.orient.rotation)}
		}
		if tr.info.Codec == CodecH264 && len(tr.codecPrivate) > 0 {
			e.CodecPrivate = tr.codecPrivate
		}
	}
	return e
}

// tracksElement renders the fixed-size Tracks region.
func (m *mkvWriter) tracksElement() ([]byte, error) {
	var body bytes.Buffer
	if len(m.entries) > 0 {
		if err := ebml.Marshal(&mkvTracksBody{TrackEntry: m.entries}, &body); err != nil {
			return nil, fmt.Errorf("matroska: marshal tracks: %w", err)
		}
	}
	hdrLen := 12
	fill := mkvTracksRegion - hdrLen - body.Len()
	if fill == 1 {
		hdrLen, fill = 11, 2
	}
	if fill < 0 {
		return nil, fmt.Errorf("matroska: track entries exceed the %d-byte region", mkvTracksRegion)
	}
	b := make([]byte, 0, mkvTracksRegion)
	b = appendID(b, idTracks)
	b = appendSizeLen(b, uint64(mkvTracksRegion-hdrLen), hdrLen-4)
	b = append(b, body.Bytes()...)
	return appendVoid(b, fill), nil
}

func (m *mkvWriter) rewriteTracks() error {
	region, err := m.tracksElement()
	if err != nil {
		return err
	}
	return m.w.writeAt(region, m.tracksPos)
}

func (m *mkvWriter) addTrack(tr *trackState) error {
	if m.webm && tr.info.Codec == CodecH264 {
		return fmt.Errorf("matroska: H264 not allowed in WebM")
	}
	tr.num = len(m.entries) + 1
	m.entries = append(m.entries, m.entryFor(tr))
	m.tracks = append(m.tracks, tr)
	if err := m.rewriteTracks(); err != nil {
		m.entries = m.entries[:len(m.entries)-1]
		m.tracks = m.tracks[:len(m.tracks)-1]
		return err
	}
	return nil
}

// updateTrack rewrites the track's entry (video size, avcC) when they are first known.
func (m *mkvWriter) updateTrack(tr *trackState) error {
	if tr.num < 1 || tr.num > len(m.entries) {
		return nil
	}
	m.entries[tr.num-1] = m.entryFor(tr)
	return m.rewriteTracks()
}

// writeFrame writes one frame at file time t (ns). data is not kept.
func (m *mkvWriter) writeFrame(tr *trackState, t int64, key bool, data []byte) error {
	if tr.num < 1 || tr.num > len(m.entries) || m.finished {
		return nil
	}
	m.wrote = true
	ms := max(t, 0) / 1e6
	if tr.framesWritten > 0 && ms <= tr.lastMS {
		// A track's blocks must strictly increase: two frames less than a
		// millisecond apart (or reordered across an anchor change) would
		// otherwise share a timestamp, which decoders reject.
		ms = tr.lastMS + 1
	}
	video := tr.info.Kind == KindVideo
	if video && key && m.cueTrack == nil {
		m.cueTrack = tr
	}
	startsCluster := video && key && tr == m.cueTrack
	if m.clusterPos < 0 || ms-m.clusterMS >= mkvMaxClusterMS || m.clusterMS-ms > 30000 ||
		m.clusterLen >= mkvMaxClusterSize || (startsCluster && m.clusterLen > 0) {
		if err := m.openCluster(ms); err != nil {
			return err
		}
		switch {
		case startsCluster:
			m.cues = append(m.cues, mkvCuePoint{uint64(ms), uint64(tr.num), uint64(m.clusterPos - m.segData)})
		case m.cueTrack == nil || !video:
			// No keyframe here: a cue on this track still lets players seek by time.
			if !video || key {
				m.cues = append(m.cues, mkvCuePoint{uint64(ms), uint64(tr.num), uint64(m.clusterPos - m.segData)})
			}
		}
	}
	rel := ms - m.clusterMS
	if rel < math.MinInt16 {
		rel = math.MinInt16
	}
	b := m.scratch[:0]
	b = appendID(b, idSimpleBlock)
	b = appendSize(b, uint64(4+len(data)))
	b = append(b, 0x80|byte(tr.num), byte(uint16(rel)>>8), byte(uint16(rel)))
	flags := byte(0)
	if key || !video {
		flags |= 0x80
	}
	b = append(b, flags)
	m.scratch = b
	if _, err := m.w.Write(b); err != nil {
		return fmt.Errorf("matroska: write block: %w", err)
	}
	if _, err := m.w.Write(data); err != nil {
		return fmt.Errorf("matroska: write block: %w", err)
	}
	m.clusterLen += len(b) + len(data)
	tr.lastMS = ms
	end := ms
	if !video {
		end += int64(opusSamples(data)) / 48
	}
	m.endMS = max(m.endMS, end)
	tr.framesWritten++
	return nil
}

func (m *mkvWriter) openCluster(ms int64) error {
	if err := m.closeCluster(); err != nil {
		return err
	}
	m.clusterPos = m.w.off
	m.clusterMS = ms
	m.clusterLen = 0
	b := m.scratch[:0]
	b = appendID(b, idCluster)
	b = appendSizeLen(b, sizeUnknown&^(1<<56), 8)
	b = appendUint8Elem(b, idTimecode, uint64(ms))
	m.scratch = b
	if _, err := m.w.Write(b); err != nil {
		return fmt.Errorf("matroska: write cluster: %w", err)
	}
	return nil
}

// closeCluster patches the open cluster's size, so only the last cluster of a crashed file
// has an unknown size.
func (m *mkvWriter) closeCluster() error {
	if m.clusterPos < 0 {
		return nil
	}
	pos := m.clusterPos
	m.clusterPos = -1
	b := appendSizeLen(m.scratch[:0], uint64(m.w.off-pos-12), 8)
	return m.w.writeAt(b, pos+4)
}

// finish closes the last cluster and writes Cues, Chapters for the marks, Duration and the
// sizes.
func (m *mkvWriter) finish(end int64, marks []fileMark) error {
	if m.finished {
		return nil
	}
	if !m.wrote {
		// A file without a single block is not valid Matroska to players
		// (ffmpeg refuses it). An audio track gets one silent frame, which
		// decoders conceal (RFC 7845 §4.1); without audio nothing playable
		// was received at all.
		for _, st := range m.tracks {
			if st != nil && st.info.Codec == CodecOpus {
				if err := m.writeFrame(st, 0, true, []byte{opusTOC20ms}); err != nil {
					return err
				}
				break
			}
		}
		if !m.wrote {
			m.finished = true
			return ErrNoMedia
		}
	}
	m.finished = true
	if err := m.closeCluster(); err != nil {
		return fmt.Errorf("matroska: close cluster: %w", err)
	}
	cuesPos := m.w.off
	if len(m.cues) > 0 {
		cues := webm.Cues{CuePoint: make([]webm.CuePoint, 0, len(m.cues))}
		for _, c := range m.cues {
			cues.CuePoint = append(cues.CuePoint, webm.CuePoint{
				CueTime:           c.timeMS,
				CueTrackPositions: []webm.CueTrackPosition{{CueTrack: c.track, CueClusterPosition: c.pos}},
			})
		}
		var buf bytes.Buffer
		if err := ebml.Marshal(&struct {
			Cues webm.Cues `ebml:"Cues"`
		}{cues}, &buf); err != nil {
			return fmt.Errorf("matroska: marshal cues: %w", err)
		}
		if _, err := m.w.Write(buf.Bytes()); err != nil {
			return fmt.Errorf("matroska: write cues: %w", err)
		}
		if err := m.w.writeAt(appendSeek(nil, idCues, uint64(cuesPos-m.segData)), m.cuesSlot); err != nil {
			return fmt.Errorf("matroska: seekhead: %w", err)
		}
	}
	if len(marks) > 0 {
		chapPos := m.w.off
		b, err := m.chaptersElement(marks)
		if err != nil {
			return err
		}
		if _, err := m.w.Write(b); err != nil {
			return fmt.Errorf("matroska: write chapters: %w", err)
		}
		if err := m.w.writeAt(appendSeek(nil, idChapters, uint64(chapPos-m.segData)), m.cuesSlot+21); err != nil {
			return fmt.Errorf("matroska: seekhead: %w", err)
		}
	}
	m.endMS = max(m.endMS, max(end, 0)/1e6)
	dur := appendID(nil, idDuration)
	dur = append(dur, 0x88)
	dur = binary.BigEndian.AppendUint64(dur, math.Float64bits(float64(m.endMS)))
	if err := m.w.writeAt(dur, m.durSlot); err != nil {
		return fmt.Errorf("matroska: duration: %w", err)
	}
	if err := m.w.writeAt(appendSizeLen(nil, uint64(m.w.off-m.segData), 8), m.segData-8); err != nil {
		return fmt.Errorf("matroska: segment size: %w", err)
	}
	return m.w.flush()
}

// chaptersElement renders one edition with a chapter per mark (times in ns, RFC 9559
// §5.1.7.1.4.3), in time order (ffmpeg ignores a chapter that starts before the previous
// one); a mark of no length (a pause cut out with PauseSkip) has no end.
func (m *mkvWriter) chaptersElement(marks []fileMark) ([]byte, error) {
	marks = slices.Clone(marks)
	slices.SortStableFunc(marks, func(a, b fileMark) int { return cmp.Compare(a.startMS, b.startMS) })
	var ed mkvEdition
	for i, mk := range marks {
		a := mkvChapterAtom{
			ChapterUID:       m.trackUID(1000+i, "chapter"),
			ChapterTimeStart: uint64(max(mk.startMS, 0)) * 1e6,
			ChapterDisplay:   []mkvChapterDisplay{{ChapString: mk.label, ChapLanguage: "eng"}},
		}
		if mk.endMS > mk.startMS {
			a.ChapterTimeEnd = uint64(mk.endMS) * 1e6
		}
		ed.ChapterAtom = append(ed.ChapterAtom, a)
	}
	var buf bytes.Buffer
	if err := ebml.Marshal(&struct {
		Chapters mkvChapters `ebml:"Chapters"`
	}{mkvChapters{EditionEntry: []mkvEdition{ed}}}, &buf); err != nil {
		return nil, fmt.Errorf("matroska: marshal chapters: %w", err)
	}
	return buf.Bytes(), nil
}

func (m *mkvWriter) duration() int64 { return m.endMS * 1e6 }

func (m *mkvWriter) flushPending() error { return nil }
