package testclient

import (
	"fmt"
	"maps"
	"strings"
	"sync"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// FeedbackLog counts the RTCP packets a client receives from the server,
// by type, keeps the latest receiver report on each stream, and can drop some of the video it sends so that the server has
// losses to ask for again.
type FeedbackLog struct {
	interceptor.NoOp
	// DropVideoEvery drops every nth video packet before it is sent (0:
	// none).
	DropVideoEvery int

	mu      sync.Mutex
	count   map[string]int
	reports map[uint32]rtcp.ReceptionReport
}

// Reports returns the latest reception report block received for each of
// the client's SSRCs.
func (l *FeedbackLog) Reports() map[uint32]rtcp.ReceptionReport {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.reports)
}

// Count reports how many RTCP packets of a type (as rtcp names it:
// "ReceiverReport", "TransportLayerNack", "TransportLayerCC") came in.
func (l *FeedbackLog) Count(kind string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.count[kind]
}

// String lists the counts, for failure messages.
func (l *FeedbackLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprint(l.count)
}

// BindRTCPReader counts every RTCP packet read.
func (l *FeedbackLog) BindRTCPReader(r interceptor.RTCPReader) interceptor.RTCPReader {
	return interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		n, attr, err := r.Read(b, a)
		if err != nil {
			return n, attr, err
		}
		if pkts, perr := rtcp.Unmarshal(b[:n]); perr == nil {
			l.mu.Lock()
			if l.count == nil {
				l.count, l.reports = map[string]int{}, map[uint32]rtcp.ReceptionReport{}
			}
			for _, p := range pkts {
				l.count[strings.TrimPrefix(fmt.Sprintf("%T", p), "*rtcp.")]++
				if rr, ok := p.(*rtcp.ReceiverReport); ok {
					for _, r := range rr.Reports {
						l.reports[r.SSRC] = r
					}
				}
			}
			l.mu.Unlock()
		}
		return n, attr, err
	})
}

// BindLocalStream drops every DropVideoEvery-th video packet.
func (l *FeedbackLog) BindLocalStream(info *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	if l.DropVideoEvery <= 0 || !strings.HasPrefix(strings.ToLower(info.MimeType), "video/") {
		return w
	}
	n := 0
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		n++
		if n%l.DropVideoEvery == 0 {
			return h.MarshalSize() + len(payload), nil
		}
		return w.Write(h, payload, a)
	})
}

type feedbackFactory struct{ l *FeedbackLog }

func (f feedbackFactory) NewInterceptor(string) (interceptor.Interceptor, error) { return f.l, nil }

// NewAPIWithFeedbackLog is NewAPI with the log watching the connection's
// RTCP (one connection per log), and, as a browser does, transport-wide
// sequence numbers on the packets it sends (pion's defaults only read
// them), so that the server has something to send TWCC feedback about.
func NewAPIWithFeedbackLog(l *FeedbackLog) (*webrtc.API, error) {
	return buildAPI(nil, func(me *webrtc.MediaEngine, ir *interceptor.Registry) error {
		if err := webrtc.ConfigureTWCCHeaderExtensionSender(me, ir); err != nil {
			return err
		}
		ir.Add(feedbackFactory{l})
		return nil
	})
}
