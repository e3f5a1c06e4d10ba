package recorder

import (
	"math/rand/v2"
	"testing"
)

// TestOggCRCSlicingMatchesBytewise checks the sliced CRC against the
// definition (RFC 3533 §6) one byte at a time, for every length around the
// 8-byte steps and random contents.
func TestOggCRCSlicingMatchesBytewise(t *testing.T) {
	tab := newOggCRC()
	bytewise := func(p []byte) uint32 {
		var crc uint32
		for _, b := range p {
			crc ^= uint32(b) << 24
			for range 8 {
				if crc&0x80000000 != 0 {
					crc = crc<<1 ^ oggCRCPoly
				} else {
					crc <<= 1
				}
			}
		}
		return crc
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	for n := range 70 {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(rnd.Uint32())
		}
		if got, want := tab.update(0, p), bytewise(p); got != want {
			t.Fatalf("len %d: crc %08x, want %08x", n, got, want)
		}
		// Split updates continue the same CRC.
		if n > 3 {
			if got, want := tab.update(tab.update(0, p[:3]), p[3:]), bytewise(p); got != want {
				t.Fatalf("len %d split: crc %08x, want %08x", n, got, want)
			}
		}
	}
	// The catalogued check value: Ogg's CRC is CRC-32/POSIX (0x765e7680)
	// without its final inversion.
	if got := tab.update(0, []byte("123456789")); got != 0x765e7680^0xffffffff {
		t.Fatalf("check value of 123456789 = %08x, want %08x", got, 0x765e7680^0xffffffff)
	}
}
