package testclient

import (
	"github.com/pion/webrtc/v4"
)

// NewStalledWatcher builds a supervisor peer that negotiates like
// NewWatcher but never reads its tracks: it stands for a supervisor whose
// application hung. pion keeps receiving on the socket and drops what its
// full receive buffers cannot hold, which is what such a browser does too.
// Stats reports the tracks it was offered and no packets.
func NewStalledWatcher(api *webrtc.API, audio, video int) (*Watcher, error) {
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	w := &Watcher{PC: pc, packets: map[string]int{}, hashes: map[uint64]bool{}, firstKey: map[string]bool{}}
	add := func(kind webrtc.RTPCodecType, n int) error {
		for range n {
			if _, err := pc.AddTransceiverFromKind(kind, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
				return err
			}
		}
		return nil
	}
	if err := add(webrtc.RTPCodecTypeAudio, audio); err != nil {
		_ = pc.Close()
		return nil, err
	}
	if err := add(webrtc.RTPCodecTypeVideo, video); err != nil {
		_ = pc.Close()
		return nil, err
	}
	pc.OnTrack(func(*webrtc.TrackRemote, *webrtc.RTPReceiver) {
		// Count the track and return without reading: nothing ever drains
		// it again.
		w.mu.Lock()
		w.tracks++
		w.mu.Unlock()
	})
	return w, nil
}
