package testclient

import (
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// unnegotiatedPT is a payload type no offer of this client names.
const unnegotiatedPT = 127

// NewAPIWithBadPayloadTypes is NewAPI with every nth RTP packet of each
// stream sent with a payload type that was never negotiated, as a buggy or
// hostile sender might; l (if not nil) logs the feedback the client gets.
func NewAPIWithBadPayloadTypes(every int, l *FeedbackLog) (*webrtc.API, error) {
	return buildAPI(nil, func(_ *webrtc.MediaEngine, ir *interceptor.Registry) error {
		ir.Add(badPayloadTypes{every: every})
		if l != nil {
			ir.Add(feedbackFactory{l})
		}
		return nil
	})
}

type badPayloadTypes struct{ every int }

func (f badPayloadTypes) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &badPayloadTypeWriter{every: f.every}, nil
}

type badPayloadTypeWriter struct {
	interceptor.NoOp
	every int
}

// BindLocalStream changes the payload type of every nth packet.
func (b *badPayloadTypeWriter) BindLocalStream(_ *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	n := 0
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		n++
		if n%b.every == 0 {
			bad := *h
			bad.PayloadType = unnegotiatedPT
			return w.Write(&bad, payload, a)
		}
		return w.Write(h, payload, a)
	})
}
