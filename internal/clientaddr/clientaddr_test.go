package clientaddr

import (
	"context"
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

func request(peer string, header Header, values ...string) *http.Request {
	r := &http.Request{RemoteAddr: peer, Header: http.Header{}}
	for _, v := range values {
		r.Header.Add(string(header), v)
	}
	return r
}

func TestClientAddr(t *testing.T) {
	trusted := []string{"10.0.0.0/8", "192.0.2.7", "2001:db8:ffff::/48"}
	tests := []struct {
		name    string
		trusted []string
		header  Header
		peer    string
		values  []string
		want    string
	}{
		{"no proxies configured: headers ignored", nil, XForwardedFor, "203.0.113.9:5000", []string{"198.51.100.1"}, "203.0.113.9"},
		{"untrusted peer: headers ignored", trusted, XForwardedFor, "203.0.113.9:5000", []string{"198.51.100.1"}, "203.0.113.9"},
		{"trusted peer, one client", trusted, XForwardedFor, "10.1.2.3:5000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"trusted peer, no header", trusted, XForwardedFor, "10.1.2.3:5000", nil, "10.1.2.3"},
		{"client-supplied entries on the left are skipped", trusted, XForwardedFor, "10.1.2.3:5000", []string{"6.6.6.6, 198.51.100.1"}, "198.51.100.1"},
		{"spoofed trusted entry on the left stays unread", trusted, XForwardedFor, "10.1.2.3:5000", []string{"10.9.9.9, 198.51.100.1"}, "198.51.100.1"},
		{"chain of trusted proxies", trusted, XForwardedFor, "10.1.2.3:5000", []string{"6.6.6.6, 198.51.100.1, 192.0.2.7, 10.0.0.5"}, "198.51.100.1"},
		{"several header lines", trusted, XForwardedFor, "10.1.2.3:5000", []string{"6.6.6.6", "198.51.100.1, 10.0.0.5"}, "198.51.100.1"},
		{"port and IPv6 forms", trusted, XForwardedFor, "[2001:db8:ffff::1]:443", []string{"[2001:db8:1::5]:4711"}, "2001:db8:1::5"},
		{"bare IPv6", trusted, XForwardedFor, "10.1.2.3:5000", []string{"2001:db8:1::5"}, "2001:db8:1::5"},
		{"IPv4 with a port", trusted, XForwardedFor, "10.1.2.3:5000", []string{"198.51.100.1:61000"}, "198.51.100.1"},
		{"IPv4-mapped peer", trusted, XForwardedFor, "[::ffff:10.1.2.3]:5000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"IPv4-mapped client", trusted, XForwardedFor, "10.1.2.3:5000", []string{"::ffff:198.51.100.1"}, "198.51.100.1"},
		{"garbage after a trusted hop stops there", trusted, XForwardedFor, "10.1.2.3:5000", []string{"evil, 10.0.0.5"}, "10.0.0.5"},
		{"garbage right away: the peer", trusted, XForwardedFor, "10.1.2.3:5000", []string{"not-an-ip"}, "10.1.2.3"},
		{"empty elements skipped", trusted, XForwardedFor, "10.1.2.3:5000", []string{"198.51.100.1, , 10.0.0.5,"}, "198.51.100.1"},
		{"every hop trusted: the leftmost", trusted, XForwardedFor, "10.1.2.3:5000", []string{"10.0.0.1, 10.0.0.2"}, "10.0.0.1"},
		{"the other header is not read", trusted, XForwardedFor, "10.1.2.3:5000", nil, "10.1.2.3"},

		{"Forwarded", trusted, Forwarded, "10.1.2.3:5000", []string{"for=198.51.100.1;proto=https;by=10.1.2.3"}, "198.51.100.1"},
		{"Forwarded IPv6 quoted with port", trusted, Forwarded, "10.1.2.3:5000", []string{`for="[2001:db8:cafe::17]:4711"`}, "2001:db8:cafe::17"},
		{"Forwarded chain", trusted, Forwarded, "10.1.2.3:5000", []string{`for=6.6.6.6, for=198.51.100.1;proto=https, for="10.0.0.5"`}, "198.51.100.1"},
		{"Forwarded case-insensitive name", trusted, Forwarded, "10.1.2.3:5000", []string{"FOR=198.51.100.1"}, "198.51.100.1"},
		{"Forwarded comma in a quoted value", trusted, Forwarded, "10.1.2.3:5000", []string{`for=198.51.100.1;ext="a,b"`}, "198.51.100.1"},
		{"Forwarded escaped quote", trusted, Forwarded, "10.1.2.3:5000", []string{`for=198.51.100.1;ext="a\",b"`}, "198.51.100.1"},
		{"Forwarded client's unterminated quote cannot swallow the proxy's entry", trusted, Forwarded, "10.1.2.3:5000", []string{`for="6.6.6.6, for=198.51.100.1`}, "198.51.100.1"},
		{"Forwarded unknown", trusted, Forwarded, "10.1.2.3:5000", []string{"for=unknown, for=10.0.0.5"}, "10.0.0.5"},
		{"Forwarded obfuscated", trusted, Forwarded, "10.1.2.3:5000", []string{"for=_hidden"}, "10.1.2.3"},
		{"Forwarded element without for", trusted, Forwarded, "10.1.2.3:5000", []string{"for=198.51.100.1, proto=https"}, "10.1.2.3"},
		{"Forwarded duplicate for", trusted, Forwarded, "10.1.2.3:5000", []string{"for=198.51.100.1;for=6.6.6.6"}, "10.1.2.3"},
		{"Forwarded ignores X-Forwarded-For", trusted, Forwarded, "10.1.2.3:5000", nil, "10.1.2.3"},
		{"unparseable peer", trusted, XForwardedFor, "@", []string{"198.51.100.1"}, "invalid IP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := New(tt.trusted, tt.header)
			if err != nil {
				t.Fatal(err)
			}
			req := request(tt.peer, tt.header, tt.values...)
			// The header the resolver does not read carries a lie.
			other := XForwardedFor
			if tt.header == XForwardedFor {
				other = Forwarded
			}
			req.Header.Add(string(other), "for=6.6.6.6")
			req.Header.Add(string(other), "6.6.6.6")
			if got := r.ClientAddr(req).String(); got != tt.want {
				t.Fatalf("ClientAddr = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestMaxHops(t *testing.T) {
	r, err := New([]string{"10.0.0.0/8"}, XForwardedFor)
	if err != nil {
		t.Fatal(err)
	}
	hops := make([]string, 0, 1000)
	hops = append(hops, "198.51.100.1")
	for i := range 999 {
		hops = append(hops, netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}).String())
	}
	got := r.ClientAddr(request("10.1.2.3:1", XForwardedFor, strings.Join(hops, ", ")))
	if !r.Trusts(got) {
		t.Fatalf("a chain longer than MaxHops ended at %s, want the last trusted hop examined", got)
	}
}

func TestNewRejects(t *testing.T) {
	for _, tc := range []struct {
		proxies []string
		header  Header
	}{
		{[]string{"10.0.0.0/33"}, XForwardedFor},
		{[]string{"proxy.internal"}, XForwardedFor},
		{[]string{"::ffff:10.0.0.0/104"}, XForwardedFor},
		{[]string{"fe80::1%eth0"}, XForwardedFor},
		{nil, "X-Real-IP"},
	} {
		if _, err := New(tc.proxies, tc.header); err == nil {
			t.Errorf("New(%v, %q) succeeded", tc.proxies, tc.header)
		}
	}
	r, err := New([]string{" 10.0.0.1/8 ", "::1", "2001:db8::/32"}, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"10.200.0.1", "::1", "2001:db8::9", "::ffff:10.0.0.1"} {
		if !r.Trusts(netip.MustParseAddr(a)) {
			t.Errorf("does not trust %s", a)
		}
	}
	if r.Trusts(netip.MustParseAddr("11.0.0.1")) {
		t.Error("trusts 11.0.0.1")
	}
}

func TestParseHeader(t *testing.T) {
	for in, want := range map[string]Header{"x-forwarded-for": XForwardedFor, "FORWARDED": Forwarded} {
		if got, err := ParseHeader(in); err != nil || got != want {
			t.Errorf("ParseHeader(%q) = %q, %v", in, got, err)
		}
	}
}

func TestContext(t *testing.T) {
	if _, ok := FromContext(context.Background()); ok {
		t.Fatal("an address in an empty context")
	}
	a := netip.MustParseAddr("198.51.100.1")
	if got, ok := FromContext(NewContext(context.Background(), a)); !ok || got != a {
		t.Fatalf("FromContext = %v, %v", got, ok)
	}
}

// FuzzClientAddr feeds arbitrary header values from a trusted peer: the
// result is always the peer or an address named in the header, and the
// client can never make itself a trusted proxy by writing to the left of
// the entry the trusted proxy appended.
func FuzzClientAddr(f *testing.F) {
	f.Add("198.51.100.1", false)
	f.Add("6.6.6.6, 10.0.0.5", false)
	f.Add(`for="[2001:db8::1]:80";proto=https, for=10.0.0.5`, true)
	f.Add(`for="a\"b, for=1.2.3.4`, true)
	f.Add(`for="\\"`, true)
	f.Add("for=unknown;by=_x, ,,", true)
	f.Fuzz(func(t *testing.T, value string, forwarded bool) {
		header := XForwardedFor
		if forwarded {
			header = Forwarded
		}
		r, err := New([]string{"10.0.0.0/8"}, header)
		if err != nil {
			t.Fatal(err)
		}
		peer := netip.MustParseAddr("10.1.2.3")
		got := r.ClientAddr(request("10.1.2.3:1", header, value))
		if !got.IsValid() {
			t.Fatalf("invalid address from %q", value)
		}
		// An IPv4 client is spelled out in the header (unless a quoted-pair
		// escapes one of its characters).
		if got != peer && got.Is4() && !strings.Contains(value, `\`) && !strings.Contains(value, got.String()) {
			t.Fatalf("%s is neither the peer nor in %q", got, value)
		}

		// Whatever the client wrote, the entry its untrusted proxy hop
		// appended after it wins.
		appended := ", 198.51.100.1"
		if forwarded {
			appended = ", for=198.51.100.1"
		}
		if got := r.ClientAddr(request("10.1.2.3:1", header, value+appended)); got.String() != "198.51.100.1" {
			t.Fatalf("client value %q made the client %s", value, got)
		}
	})
}

// BenchmarkClientAddr is the per-connection cost of finding the client:
// the common case of one load balancer in front.
func BenchmarkClientAddr(b *testing.B) {
	for _, bc := range []struct {
		name    string
		trusted []string
		header  Header
		value   string
	}{
		{"no proxies", nil, XForwardedFor, "198.51.100.1"},
		{"X-Forwarded-For one hop", []string{"10.0.0.0/8"}, XForwardedFor, "198.51.100.1"},
		{"X-Forwarded-For three hops", []string{"10.0.0.0/8", "192.0.2.0/24"}, XForwardedFor, "6.6.6.6, 198.51.100.1, 192.0.2.7, 10.0.0.5"},
		{"Forwarded one hop", []string{"10.0.0.0/8"}, Forwarded, "for=198.51.100.1;proto=https;by=10.1.2.3"},
		{"Forwarded IPv6 quoted", []string{"10.0.0.0/8"}, Forwarded, `for="[2001:db8:cafe::17]:4711";proto=https`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r, err := New(bc.trusted, bc.header)
			if err != nil {
				b.Fatal(err)
			}
			req := request("10.1.2.3:50000", bc.header, bc.value)
			b.ReportAllocs()
			for b.Loop() {
				if !r.ClientAddr(req).IsValid() {
					b.Fatal("no address")
				}
			}
		})
	}
}
