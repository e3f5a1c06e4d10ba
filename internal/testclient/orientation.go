package testclient

import (
	"strings"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// VideoOrientation is CVO's header extension (3GPP TS 26.114 §7.4.5).
const VideoOrientation = "urn:3gpp:video-orientation"

// NewAPIWithOrientation is NewAPI for a phone that negotiated CVO: the last packet of every
// video frame says the picture is to be turned rotation degrees clockwise (0, 90, 180 or
// 270) for display, as WebRTC senders do. CVO is registered after the default extensions,
// so its id differs from a Watcher's of NewAPIWithExtensionsFirst.
func NewAPIWithOrientation(rotation int) (*webrtc.API, error) {
	return buildAPI(nil, func(me *webrtc.MediaEngine, ir *interceptor.Registry) error {
		ir.Add(cvoFactory{code: byte(rotation/90) & 0x03})
		return me.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: VideoOrientation}, webrtc.RTPCodecTypeVideo)
	})
}

// NewAPIWithExtensionsFirst is NewAPI with the given video header extensions registered
// before the default ones, so that they get the lowest ids: a supervisor whose ids differ
// from the client's.
func NewAPIWithExtensionsFirst(uris ...string) (*webrtc.API, error) { return buildAPI(uris, nil) }

// cvoWriter writes CVO on the last packet of every frame of the video streams that
// negotiated it.
type cvoWriter struct {
	interceptor.NoOp
	code byte
}

type cvoFactory struct{ code byte }

func (f cvoFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &cvoWriter{code: f.code}, nil
}

// BindLocalStream wraps the RTP writer of each outgoing video stream with CVO.
func (c *cvoWriter) BindLocalStream(info *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	id := ExtensionID(info.RTPHeaderExtensions, VideoOrientation)
	if id == 0 || !strings.HasPrefix(strings.ToLower(info.MimeType), "video/") {
		return w
	}
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		if h.Marker {
			if err := h.SetExtension(id, []byte{c.code}); err != nil {
				return 0, err
			}
		}
		return w.Write(h, payload, a)
	})
}

// ExtensionID is the id negotiated for uri, or 0.
func ExtensionID(exts []interceptor.RTPHeaderExtension, uri string) uint8 {
	for _, e := range exts {
		if e.URI == uri {
			return uint8(e.ID)
		}
	}
	return 0
}
