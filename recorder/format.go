package recorder

import (
	"fmt"
	"strings"
)

// Format is the container of a recording file.
type Format string

// Container formats. FormatAuto lets ResolveFormat choose from the tracks.
const (
	FormatAuto Format = "auto"
	FormatOgg  Format = "ogg"
	FormatWebM Format = "webm"
	FormatMKV  Format = "mkv"
)

// String returns the format name.
func (f Format) String() string { return string(f) }

// Ext returns the file name extension (without dot) of a resolved format.
func (f Format) Ext() string {
	switch f {
	case FormatOgg:
		return "ogg"
	case FormatWebM:
		return "webm"
	case FormatMKV:
		return "mkv"
	}
	return ""
}

// ParseFormat parses a format name from the protocol; "" means auto.
func ParseFormat(s string) (Format, error) {
	switch Format(strings.ToLower(strings.TrimSpace(s))) {
	case "", FormatAuto:
		return FormatAuto, nil
	case FormatOgg:
		return FormatOgg, nil
	case FormatWebM:
		return FormatWebM, nil
	case FormatMKV, "matroska":
		return FormatMKV, nil
	}
	return "", fmt.Errorf("recorder: unknown format %q", s)
}

// ContentType is the MIME type used to upload a file of format f.
func ContentType(f Format) string {
	switch f {
	case FormatOgg:
		return "audio/ogg"
	case FormatWebM:
		return "video/webm"
	case FormatMKV:
		return "video/x-matroska"
	}
	return "application/octet-stream"
}

// PauseMode says what a pause leaves in the file.
type PauseMode string

// Pause modes. The zero value behaves as PauseSilence.
const (
	// PauseSilence keeps the paused span in the timeline: file clock == call clock.
	PauseSilence PauseMode = "silence"
	// PauseSkip cuts the paused span out of every track.
	PauseSkip PauseMode = "skip"
)

// String returns the mode name.
func (m PauseMode) String() string { return string(m) }

// ParsePauseMode parses a pause mode; "" means PauseSilence.
func ParsePauseMode(s string) (PauseMode, error) {
	switch PauseMode(strings.ToLower(strings.TrimSpace(s))) {
	case "", PauseSilence:
		return PauseSilence, nil
	case PauseSkip:
		return PauseSkip, nil
	}
	return "", fmt.Errorf("recorder: unknown pause mode %q", s)
}

// Kind is the media kind of a track.
type Kind string

// Track kinds.
const (
	KindAudio Kind = "audio"
	KindVideo Kind = "video"
)

// String returns the kind name.
func (k Kind) String() string { return string(k) }

// Codec is a codec the recorder can write.
type Codec string

// Supported codecs.
const (
	CodecOpus Codec = "opus"
	CodecVP8  Codec = "vp8"
	CodecVP9  Codec = "vp9"
	CodecH264 Codec = "h264"
)

// String returns the codec name.
func (c Codec) String() string { return string(c) }

// Kind returns the media kind of the codec.
func (c Codec) Kind() Kind {
	if c == CodecOpus {
		return KindAudio
	}
	return KindVideo
}

// CodecFromMime maps a WebRTC MIME type ("audio/opus", "video/VP8", ...) to a Codec,
// case-insensitively.
func CodecFromMime(mime string) (Codec, bool) {
	switch strings.ToLower(strings.TrimSpace(mime)) {
	case "audio/opus":
		return CodecOpus, true
	case "video/vp8":
		return CodecVP8, true
	case "video/vp9":
		return CodecVP9, true
	case "video/h264":
		return CodecH264, true
	}
	return "", false
}

// TrackInfo describes a track to record.
type TrackInfo struct {
	ID        string
	Kind      Kind
	Codec     Codec
	ClockRate uint32 // RTP clock rate; 0 means the codec's standard rate
	Channels  uint16 // audio channels; 0 means 2 for Opus
	// OrientationExtID is the id of the CVO header extension (urn:3gpp:video-orientation)
	// negotiated for a video track; 0 when there is none.
	OrientationExtID uint8
}

func (t TrackInfo) normalized() (TrackInfo, error) {
	switch t.Codec {
	case CodecOpus, CodecVP8, CodecVP9, CodecH264:
	default:
		return t, fmt.Errorf("recorder: track %q: unsupported codec %q", t.ID, t.Codec)
	}
	if t.Kind == "" {
		t.Kind = t.Codec.Kind()
	}
	if t.Kind != t.Codec.Kind() {
		return t, fmt.Errorf("recorder: track %q: kind %q does not match codec %q", t.ID, t.Kind, t.Codec)
	}
	if t.ClockRate == 0 {
		if t.Kind == KindAudio {
			t.ClockRate = 48000
		} else {
			t.ClockRate = 90000
		}
	}
	if t.Kind == KindAudio && t.Channels == 0 {
		t.Channels = 2
	}
	return t, nil
}

// ResolveFormat picks the container: auto gives Ogg without video, Matroska if any track is
// H264 (WebM does not allow it), WebM otherwise. An explicit format that cannot hold the
// tracks is an error.
func ResolveFormat(f Format, tracks []TrackInfo) (Format, error) {
	var video, h264 bool
	for _, t := range tracks {
		switch {
		case t.Codec == CodecH264:
			h264, video = true, true
		case t.Kind == KindVideo || t.Codec.Kind() == KindVideo:
			video = true
		}
	}
	switch f {
	case "", FormatAuto:
		switch {
		case h264:
			return FormatMKV, nil
		case video:
			return FormatWebM, nil
		}
		return FormatOgg, nil
	case FormatOgg:
		if video {
			return "", fmt.Errorf("recorder: format ogg cannot hold video tracks")
		}
		return FormatOgg, nil
	case FormatWebM:
		if h264 {
			return "", fmt.Errorf("recorder: format webm cannot hold H264 (use mkv)")
		}
		return FormatWebM, nil
	case FormatMKV:
		return FormatMKV, nil
	}
	return "", fmt.Errorf("recorder: unknown format %q", f)
}

// accepts reports whether a resolved container can take a track added later.
func (f Format) accepts(t TrackInfo) error {
	switch {
	case f == FormatOgg && t.Kind != KindAudio:
		return fmt.Errorf("recorder: ogg recording cannot add %s track %q", t.Codec, t.ID)
	case f == FormatWebM && t.Codec == CodecH264:
		return fmt.Errorf("recorder: webm recording cannot add h264 track %q", t.ID)
	}
	return nil
}
