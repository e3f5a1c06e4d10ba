package session

import (
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// RTP header extensions that carry something a supervisor or a recording
// needs. Their ids are negotiated per connection (RFC 8285), so a packet
// forwarded from a client to a supervisor has its extensions renumbered as
// negotiated with the supervisor; the others are dropped, and the
// supervisor's send path adds its own (transport-cc).
const (
	// extVideoOrientation is CVO (3GPP TS 26.114 §7.4.5): a phone sends its
	// camera's frames unrotated, with the rotation for display in this
	// extension, once it has been negotiated. Without it the phone rotates
	// the pixels itself, at a cost in battery and quality.
	extVideoOrientation = "urn:3gpp:video-orientation"
	// extAudioLevel (RFC 6464) lets a supervisor's client show who speaks
	// without decoding; forwarding it costs one byte per packet.
	extAudioLevel = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
)

// forwardedExtensions are the extensions a supervisor receives, in the
// order of extIDs.
var forwardedExtensions = [...]struct {
	uri  string
	kind webrtc.RTPCodecType
}{
	{extVideoOrientation, webrtc.RTPCodecTypeVideo},
	{extAudioLevel, webrtc.RTPCodecTypeAudio},
}

// extIDs are the ids of forwardedExtensions on one connection; 0 where not
// negotiated.
type extIDs [len(forwardedExtensions)]uint8

// orientation is the id of CVO.
func (e *extIDs) orientation() uint8 { return e[0] }

// negotiatedExtensions picks the forwarded extensions out of a sender's or
// receiver's parameters.
func negotiatedExtensions(params []webrtc.RTPHeaderExtensionParameter) *extIDs {
	var ids extIDs
	for _, p := range params {
		for i, e := range forwardedExtensions {
			if p.URI == e.uri && p.ID > 0 && p.ID < 256 {
				ids[i] = uint8(p.ID)
			}
		}
	}
	return &ids
}

// registerExtensions offers the forwarded extensions on every connection.
func registerExtensions(me *webrtc.MediaEngine) error {
	for _, e := range forwardedExtensions {
		if err := me.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: e.uri}, e.kind); err != nil {
			return err
		}
	}
	return nil
}

// remapExtensions keeps the forwarded extensions of h, renumbered from the
// client's ids (src) to the supervisor's (dst), and drops every other. It
// allocates nothing once h's extension list has grown to its size.
func remapExtensions(h *rtp.Header, src, dst *extIDs) {
	var keep [len(forwardedExtensions)][]byte
	n := 0
	if h.Extension && dst != nil {
		for i, id := range src {
			if id != 0 && dst[i] != 0 {
				if v := h.GetExtension(id); len(v) > 0 {
					keep[i] = v
					n++
				}
			}
		}
	}
	h.Extension = false
	h.Extensions = h.Extensions[:0]
	if n == 0 {
		return
	}
	h.Extension = true
	h.ExtensionProfile = rtp.ExtensionProfileOneByte
	for i, v := range keep {
		if v != nil && (dst[i] > 14 || len(v) > 16) {
			h.ExtensionProfile = rtp.ExtensionProfileTwoByte // RFC 8285 §4.3
		}
	}
	for i, v := range keep {
		if v != nil {
			_ = h.SetExtension(dst[i], v)
		}
	}
}

// refreshExtensions learns the ids the supervisor's connection negotiated,
// after each of its offer/answer exchanges. Runs on the supervisor's loop
// (or its goroutine before the loop).
func (ss *Session) refreshExtensions() {
	for _, f := range ss.forwarders {
		f.dst.Store(negotiatedExtensions(f.sender.GetParameters().HeaderExtensions))
	}
}
