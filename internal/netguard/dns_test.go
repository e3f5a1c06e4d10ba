package netguard

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/rtmrec/rtmrec/internal/wording"
)

// startDNS serves A/AAAA answers from zone (name without trailing dot →
// addresses) on a UDP socket on 127.0.0.1 and returns a *net.Resolver
// that asks only it. Unknown names get NXDOMAIN.
func startDNS(t *testing.T, zone map[string][]string) *net.Resolver {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { pc.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if resp := dnsAnswer(buf[:n], zone); resp != nil {
				pc.WriteTo(resp, from)
			}
		}
	}()
	addr := pc.LocalAddr().String()
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "udp", addr)
		},
	}
}

// dnsAnswer builds the reply to one query (RFC 1035 §4.1).
func dnsAnswer(q []byte, zone map[string][]string) []byte {
	if len(q) < 12 {
		return nil
	}
	i := 12
	var labels []string
	for i < len(q) && q[i] != 0 {
		l := int(q[i])
		if i+1+l > len(q) {
			return nil
		}
		labels = append(labels, string(q[i+1:i+1+l]))
		i += 1 + l
	}
	i++ // root label
	if i+4 > len(q) {
		return nil
	}
	qtype := binary.BigEndian.Uint16(q[i:])
	qend := i + 4
	name := strings.ToLower(strings.Join(labels, "."))

	addrs, ok := zone[name]
	var answers [][]byte
	for _, a := range addrs {
		ip := netip.MustParseAddr(a)
		switch {
		case ip.Is4() && qtype == 1:
			b := ip.As4()
			answers = append(answers, b[:])
		case ip.Is6() && qtype == 28:
			b := ip.As16()
			answers = append(answers, b[:])
		}
	}
	out := make([]byte, 0, 512)
	out = append(out, q[0], q[1]) // id
	flags := uint16(0x8180)       // response, recursion desired+available
	if !ok {
		flags |= 3 // NXDOMAIN
	}
	out = binary.BigEndian.AppendUint16(out, flags)
	out = binary.BigEndian.AppendUint16(out, 1)
	out = binary.BigEndian.AppendUint16(out, uint16(len(answers)))
	out = binary.BigEndian.AppendUint16(out, 0)
	out = binary.BigEndian.AppendUint16(out, 0)
	out = append(out, q[12:qend]...)
	for _, rd := range answers {
		out = append(out, 0xc0, 12) // pointer to the question name
		out = binary.BigEndian.AppendUint16(out, qtype)
		out = binary.BigEndian.AppendUint16(out, 1) // IN
		out = binary.BigEndian.AppendUint32(out, 60)
		out = binary.BigEndian.AppendUint16(out, uint16(len(rd)))
		out = append(out, rd...)
	}
	return out
}

// TestCheckURLRealResolver runs the check through a real *net.Resolver
// against a DNS server that answers with private addresses.
func TestCheckURLRealResolver(t *testing.T) {
	res := startDNS(t, map[string][]string{
		"public.test":   {"93.184.216.34"},
		"evil.test":     {"127.0.0.1"},
		"evil6.test":    {"::1"},
		"intranet.test": {"192.168.10.10", "fd00::10"},
		"sneaky.test":   {"93.184.216.34", "10.0.0.7"},
	})
	g := New(Config{Resolver: res})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := g.CheckURL(ctx, "https://public.test/up?sig=1"); err != nil {
		t.Fatalf("public name refused: %v", err)
	}
	for _, host := range []string{"evil.test", "evil6.test", "intranet.test", "sneaky.test"} {
		t.Run(host, func(t *testing.T) {
			_, err := g.CheckURL(ctx, "https://"+host+"/up?sig=1")
			if !errors.Is(err, ErrForbidden) {
				t.Fatalf("err = %v, want ErrForbidden", err)
			}
			if _, err := g.DialContext(ctx, "tcp", host+":443"); !errors.Is(err, ErrForbidden) {
				t.Fatalf("dial err = %v, want ErrForbidden", err)
			}
		})
	}
	_, err := g.CheckURL(ctx, "https://missing.test/")
	if !errors.Is(err, ErrResolve) || !strings.Contains(err.Error(), "no such host") {
		t.Fatalf("missing name: err = %v, want ErrResolve saying no such host", err)
	}
	// The client reads it: not Go's "lookup missing.test on 127.0.0.1:53".
	if err := wording.Check(err.Error()); err != nil {
		t.Fatal(err)
	}
}
