package recorder

import (
	"encoding/binary"
	"math"
)

// Orientation. A phone that negotiated CVO (3GPP TS 26.114 §7.4.5, RTP header extension
// urn:3gpp:video-orientation) sends its camera's frames as captured and says in the
// extension how a player must turn them for display. A Matroska/WebM track holds one
// orientation, in its Projection (ProjectionPoseRoll, RFC 9559 §5.1.4.1.31.14), which
// ffmpeg, VLC and mpv apply: the file gets the orientation of the track's first keyframe,
// and later turns of the phone are listed in the manifest (RotationChanges) with their place
// on the file's timeline. The flip bit is not represented (WebRTC senders do not set it).

// maxRotationChanges bounds the turns listed per track: a sender must not grow the manifest.
const maxRotationChanges = 100

// orientation follows one video track's CVO.
type orientation struct {
	rotation int // degrees clockwise for display, as written in the file's header
	current  int
	changes  []RotationChange
}

// follow reads the CVO extension (id) of an in-order packet at file time t. Until the
// track's header is written (its first keyframe), the header takes the rotation.
func (o *orientation) follow(pkt []byte, id uint8, t int64, headerWritten bool) {
	v, ok := rtpExtension(pkt, id)
	if !ok || len(v) == 0 {
		return
	}
	rot := int(v[0]&0x03) * 90 // R1R0: 0, 90, 180 or 270 degrees clockwise
	if !headerWritten {
		o.rotation, o.current = rot, rot
		return
	}
	if rot != o.current {
		o.current = rot
		if len(o.changes) < maxRotationChanges {
			o.changes = append(o.changes, RotationChange{AtMS: t / 1e6, Rotation: rot})
		}
	}
}

// projectionRoll is the Matroska ProjectionPoseRoll of a clockwise display rotation:
// counter-clockwise degrees in (-180, 180].
func projectionRoll(clockwise int) float64 {
	roll := -clockwise % 360
	if roll <= -180 {
		roll += 360
	}
	return float64(roll)
}

// clockwiseOf is the clockwise display rotation of a ProjectionPoseRoll, to the nearest
// quarter turn.
func clockwiseOf(roll float64) int {
	q := int(math.Round(-roll/90)) % 4
	if q < 0 {
		q += 4
	}
	return q * 90
}

// rtpExtension returns the payload of the header extension with the given id (RFC 8285,
// one-byte and two-byte forms), without allocating.
func rtpExtension(b []byte, id uint8) ([]byte, bool) {
	if len(b) < 12 || b[0]&0x10 == 0 || id == 0 {
		return nil, false
	}
	n := 12 + 4*int(b[0]&0x0f)
	if len(b) < n+4 {
		return nil, false
	}
	profile := binary.BigEndian.Uint16(b[n:])
	end := n + 4 + 4*int(binary.BigEndian.Uint16(b[n+2:]))
	if len(b) < end {
		return nil, false
	}
	ext := b[n+4 : end]
	for i := 0; i < len(ext); {
		if ext[i] == 0 { // padding
			i++
			continue
		}
		var eid uint8
		var l int
		switch {
		case profile == 0xBEDE:
			eid, l = ext[i]>>4, int(ext[i]&0x0f)+1
			if eid == 15 {
				return nil, false // reserved: stop (RFC 8285 §4.2)
			}
			i++
		case profile&0xFFF0 == 0x1000:
			if i+1 >= len(ext) {
				return nil, false
			}
			eid, l = ext[i], int(ext[i+1])
			i += 2
		default:
			return nil, false
		}
		if i+l > len(ext) {
			return nil, false
		}
		if eid == id {
			return ext[i : i+l], true
		}
		i += l
	}
	return nil, false
}
