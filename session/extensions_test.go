package session

import (
	"bytes"
	"testing"

	"github.com/pion/rtp"
)

func TestRemapExtensions(t *testing.T) {
	client := &extIDs{5, 1}     // CVO 5, audio level 1 on the client's connection
	supervisor := &extIDs{2, 9} // and on the supervisor's
	packet := func(profile uint16, exts map[uint8][]byte) rtp.Header {
		h := rtp.Header{Version: 2, SSRC: 1}
		if len(exts) > 0 {
			h.Extension, h.ExtensionProfile = true, profile
			for id, v := range exts {
				if err := h.SetExtension(id, v); err != nil {
					t.Fatal(err)
				}
			}
		}
		return h
	}
	tests := []struct {
		name string
		in   rtp.Header
		dst  *extIDs
		want map[uint8][]byte
	}{
		{"CVO and transport-cc", packet(rtp.ExtensionProfileOneByte, map[uint8][]byte{5: {0x01}, 3: {0x00, 0x07}}), supervisor, map[uint8][]byte{2: {0x01}}},
		{"both forwarded", packet(rtp.ExtensionProfileOneByte, map[uint8][]byte{5: {0x03}, 1: {0x85}}), supervisor, map[uint8][]byte{2: {0x03}, 9: {0x85}}},
		{"two-byte form from the client", packet(rtp.ExtensionProfileTwoByte, map[uint8][]byte{5: {0x02}, 40: make([]byte, 20)}), supervisor, map[uint8][]byte{2: {0x02}}},
		{"supervisor id beyond one-byte", packet(rtp.ExtensionProfileOneByte, map[uint8][]byte{5: {0x01}}), &extIDs{20, 0}, map[uint8][]byte{20: {0x01}}},
		{"not negotiated with the supervisor", packet(rtp.ExtensionProfileOneByte, map[uint8][]byte{5: {0x01}}), &extIDs{}, nil},
		{"before the supervisor negotiated", packet(rtp.ExtensionProfileOneByte, map[uint8][]byte{5: {0x01}}), nil, nil},
		{"no extensions", packet(0, nil), supervisor, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.in
			remapExtensions(&h, client, tt.dst)
			// What goes on the wire parses back to exactly the wanted set.
			b, err := (&rtp.Packet{Header: h, Payload: []byte{1, 2, 3}}).Marshal()
			if err != nil {
				t.Fatal(err)
			}
			var back rtp.Packet
			if err := back.Unmarshal(b); err != nil {
				t.Fatal(err)
			}
			ids := back.Header.GetExtensionIDs()
			if len(ids) != len(tt.want) {
				t.Fatalf("extensions %v, want %v", ids, tt.want)
			}
			for id, v := range tt.want {
				if got := back.Header.GetExtension(id); !bytes.Equal(got, v) {
					t.Fatalf("extension %d = %x, want %x", id, got, v)
				}
			}
		})
	}
}

// BenchmarkRemapExtensions is what forwarding one packet to a supervisor
// pays for its extensions (CVO and transport-cc in, CVO out).
func BenchmarkRemapExtensions(b *testing.B) {
	client, supervisor := &extIDs{5, 1}, &extIDs{2, 9}
	src := rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, Extension: true, ExtensionProfile: rtp.ExtensionProfileOneByte}, Payload: make([]byte, 1000)}
	_ = src.Header.SetExtension(3, []byte{0, 7})
	_ = src.Header.SetExtension(5, []byte{1})
	raw, _ := src.Marshal()
	var pkt rtp.Packet
	b.ReportAllocs()
	for b.Loop() {
		if err := pkt.Unmarshal(raw); err != nil {
			b.Fatal(err)
		}
		remapExtensions(&pkt.Header, client, supervisor)
	}
}
