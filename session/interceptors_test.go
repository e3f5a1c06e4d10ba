package session

import (
	"testing"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/sdp/v3"
)

// fakeInner records what a lazy interceptor passes on to the one it wraps.
type fakeInner struct {
	interceptor.NoOp
	writerBinds, streams, unbinds, closes int
}

func (f *fakeInner) BindRTCPWriter(w interceptor.RTCPWriter) interceptor.RTCPWriter {
	f.writerBinds++
	return w
}

func (f *fakeInner) BindRemoteStream(_ *interceptor.StreamInfo, r interceptor.RTPReader) interceptor.RTPReader {
	f.streams++
	return r
}
func (f *fakeInner) UnbindRemoteStream(*interceptor.StreamInfo) { f.unbinds++ }
func (f *fakeInner) Close() error                               { f.closes++; return nil }

type fakeFactory struct{ in *fakeInner }

func (f fakeFactory) NewInterceptor(string) (interceptor.Interceptor, error) { return f.in, nil }

// TestLazyInterceptorStartsWithTheFirstWantedStream: the wrapped
// interceptor gets the RTCP writer (where pion's start their goroutine)
// once, with the first stream it wants, and never for a connection with
// none; it sees only the streams it wants, and is closed either way.
func TestLazyInterceptorStartsWithTheFirstWantedStream(t *testing.T) {
	audio := &interceptor.StreamInfo{SSRC: 1, MimeType: "audio/opus"}
	video := &interceptor.StreamInfo{SSRC: 2, MimeType: "video/VP8",
		RTCPFeedback:        []interceptor.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}},
		RTPHeaderExtensions: []interceptor.RTPHeaderExtension{{URI: sdp.TransportCCURI, ID: 3}}}
	screen := &interceptor.StreamInfo{SSRC: 3, MimeType: "video/VP8", RTCPFeedback: video.RTCPFeedback, RTPHeaderExtensions: video.RTPHeaderExtensions}
	for _, tc := range []struct {
		name          string
		wants         func(*interceptor.StreamInfo) bool
		streams       []*interceptor.StreamInfo
		binds, passed int
	}{
		{"nack, audio only", negotiatedNACK, []*interceptor.StreamInfo{audio}, 0, 0},
		{"nack, audio and video", negotiatedNACK, []*interceptor.StreamInfo{audio, video}, 1, 1},
		{"nack, two videos", negotiatedNACK, []*interceptor.StreamInfo{audio, video, screen}, 1, 2},
		{"twcc, audio only", negotiatedTWCC, []*interceptor.StreamInfo{audio}, 0, 0},
		{"twcc, audio and video", negotiatedTWCC, []*interceptor.StreamInfo{video, audio}, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := &fakeInner{}
			l, err := lazyFactory{inner: fakeFactory{in}, wants: tc.wants}.NewInterceptor("pc")
			if err != nil {
				t.Fatal(err)
			}
			l.BindRTCPWriter(interceptor.RTCPWriterFunc(func([]rtcp.Packet, interceptor.Attributes) (int, error) { return 0, nil }))
			if in.writerBinds != 0 {
				t.Fatal("the writer was bound before any stream")
			}
			for _, s := range tc.streams {
				l.BindRemoteStream(s, interceptor.RTPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) { return len(b), a, nil }))
			}
			for _, s := range tc.streams {
				l.UnbindRemoteStream(s)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if in.writerBinds != tc.binds || in.streams != tc.passed || in.unbinds != tc.passed || in.closes != 1 {
				t.Errorf("writer bound %d times, %d streams bound, %d unbound, closed %d times; want %d, %d, %d, 1",
					in.writerBinds, in.streams, in.unbinds, in.closes, tc.binds, tc.passed, tc.passed)
			}
		})
	}
}
