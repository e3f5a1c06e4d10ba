package session

import (
	"sync"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// receiveInterceptors registers what a connection that only receives
// needs, and no more: pion's defaults are built for peers that also send,
// and each of their loops is a goroutine (with its stack and buffers) in
// every session.
//
//   - Receiver reports are not an interceptor's: each track sends its own
//     as its packets come (see Session.receive), for the client's
//     congestion control and stats.
//   - The NACK generator, for the streams that negotiated NACK (video),
//     so lost video packets are asked for again.
//   - TWCC feedback, for video only: a browser's bandwidth estimate for
//     video depends on it. An Opus stream's rate does not, so audio does
//     not negotiate it, which keeps an audio-only session free of its loop.
//
// Left out: the NACK responder and sender reports (they serve what the
// connection sends: nothing) and the stats interceptor (nothing reads
// GetStats; the recorder keeps its own figures).
func receiveInterceptors(me *webrtc.MediaEngine) (*interceptor.Registry, error) {
	if err := webrtc.ConfigureSimulcastExtensionHeaders(me); err != nil {
		return nil, err
	}
	me.RegisterFeedback(webrtc.RTCPFeedback{Type: webrtc.TypeRTCPFBTransportCC}, webrtc.RTPCodecTypeVideo)
	if err := me.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.TransportCCURI}, webrtc.RTPCodecTypeVideo); err != nil {
		return nil, err
	}
	nacks, err := nack.NewGeneratorInterceptor()
	if err != nil {
		return nil, err
	}
	feedback, err := twcc.NewSenderInterceptor()
	if err != nil {
		return nil, err
	}
	ir := &interceptor.Registry{}
	ir.Add(lazyFactory{inner: nacks, wants: negotiatedNACK})
	ir.Add(lazyFactory{inner: feedback, wants: negotiatedTWCC})
	return ir, nil
}

// readInterceptors tells whether any of receiveInterceptors works on the
// track as it is read: those need a reader goroutine; a track none of them
// wants (audio) can be diverted (see Session.divert). It asks the same
// questions of the stream as the registry's lazy factories.
func readInterceptors(t *webrtc.TrackRemote, r *webrtc.RTPReceiver) bool {
	info := &interceptor.StreamInfo{}
	for _, fb := range t.Codec().RTCPFeedback {
		info.RTCPFeedback = append(info.RTCPFeedback, interceptor.RTCPFeedback{Type: fb.Type, Parameter: fb.Parameter})
	}
	for _, e := range r.GetParameters().HeaderExtensions {
		info.RTPHeaderExtensions = append(info.RTPHeaderExtensions, interceptor.RTPHeaderExtension{URI: e.URI, ID: e.ID})
	}
	return negotiatedNACK(info) || negotiatedTWCC(info)
}

func negotiatedNACK(info *interceptor.StreamInfo) bool {
	for _, fb := range info.RTCPFeedback {
		if fb.Type == "nack" && fb.Parameter == "" {
			return true
		}
	}
	return false
}

func negotiatedTWCC(info *interceptor.StreamInfo) bool {
	for _, e := range info.RTPHeaderExtensions {
		if e.URI == sdp.TransportCCURI {
			return true
		}
	}
	return false
}

// lazyFactory makes interceptors that come to life with the first remote
// stream they want: the inner interceptor's RTCP writer, and with it the
// goroutine it starts there, is bound only then. It suits interceptors
// whose BindRTCPWriter returns the writer unchanged (they send RTCP of
// their own and rewrite nobody's), as pion's NACK generator and TWCC
// sender do.
type lazyFactory struct {
	inner interceptor.Factory
	wants func(*interceptor.StreamInfo) bool
}

// NewInterceptor makes one connection's lazy interceptor.
func (f lazyFactory) NewInterceptor(id string) (interceptor.Interceptor, error) {
	in, err := f.inner.NewInterceptor(id)
	if err != nil {
		return nil, err
	}
	return &lazy{inner: in, wants: f.wants}, nil
}

type lazy struct {
	interceptor.NoOp
	inner interceptor.Interceptor
	wants func(*interceptor.StreamInfo) bool

	mu      sync.Mutex
	writer  interceptor.RTCPWriter // kept until a wanted stream comes
	started bool
}

func (l *lazy) BindRTCPWriter(w interceptor.RTCPWriter) interceptor.RTCPWriter {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writer = w
	return w
}

func (l *lazy) BindRemoteStream(info *interceptor.StreamInfo, r interceptor.RTPReader) interceptor.RTPReader {
	if !l.wants(info) {
		return r
	}
	l.mu.Lock()
	if !l.started && l.writer != nil {
		l.started = true
		l.inner.BindRTCPWriter(l.writer)
	}
	l.mu.Unlock()
	return l.inner.BindRemoteStream(info, r)
}

func (l *lazy) UnbindRemoteStream(info *interceptor.StreamInfo) {
	if l.wants(info) {
		l.inner.UnbindRemoteStream(info)
	}
}

// Close closes the inner interceptor, started or not: pion's close an
// unstarted one at no cost.
func (l *lazy) Close() error { return l.inner.Close() }
