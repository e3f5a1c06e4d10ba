package evidence

import (
	"math"
	"strings"
	"testing"
)

func TestCanonicalize(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		// RFC 8785 §3.2.3.
		{"rfc 8785 example",
			`{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
			  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
			  "literals": [null, true, false]}`,
			`{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}`},
		// RFC 8785 §3.2.3, sorting on UTF-16 code units (the emoji's surrogates sort
		// before U+FB33).
		{"utf-16 order",
			`{"\u20ac":1,"\r":2,"\ufb33":3,"1":4,"\ud83d\ude00":5,"\u0080":6,"\u00f6":7}`,
			"{\"\\r\":2,\"1\":4,\"\u0080\":6,\"ö\":7,\"€\":1,\"😀\":5,\"\ufb33\":3}"},
		{"nested and empty", ` { "b" : [ { } , [ ] , "" ] , "a" : { "y" : 1 , "x" : -0 } } `, `{"a":{"x":0,"y":1},"b":[{},[],""]}`},
		{"control characters", `"\u0000\u0008\t\u001f\u007f"`, `"\u0000\b\t\u001f` + "\x7f" + `"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Canonicalize([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
			again, err := Canonicalize(got)
			if err != nil || string(again) != string(got) {
				t.Errorf("not idempotent: %s %v", again, err)
			}
		})
	}
}

// TestCanonicalNumbers: ECMAScript's Number::toString, the cases of RFC 8785 Appendix B.
func TestCanonicalNumbers(t *testing.T) {
	for bits, want := range map[uint64]string{
		0x0000000000000000: "0",
		0x8000000000000000: "0",
		0x0000000000000001: "5e-324",
		0x8000000000000001: "-5e-324",
		0x7fefffffffffffff: "1.7976931348623157e+308",
		0xffefffffffffffff: "-1.7976931348623157e+308",
		0x4340000000000000: "9007199254740992",
		0xc340000000000000: "-9007199254740992",
		0x4430000000000000: "295147905179352830000",
		0x44b52d02c7e14af5: "9.999999999999997e+22",
		0x44b52d02c7e14af6: "1e+23",
		0x44b52d02c7e14af7: "1.0000000000000001e+23",
		0x444b1ae4d6e2ef4e: "999999999999999700000",
		0x444b1ae4d6e2ef4f: "999999999999999900000",
		0x444b1ae4d6e2ef50: "1e+21",
		0x3eb0c6f7a0b5ed8c: "9.999999999999997e-7",
		0x3eb0c6f7a0b5ed8d: "0.000001",
		0x41b3de4355555553: "333333333.3333332",
		0x41b3de4355555554: "333333333.33333325",
		0x41b3de4355555555: "333333333.3333333",
		0x41b3de4355555556: "333333333.3333334",
		0x41b3de4355555557: "333333333.33333343",
		0xbecbf647612f3696: "-0.0000033333333333333333",
		0x43143ff3c1cb0959: "1424953923781206.2",
	} {
		if got := string(appendNumber(nil, math.Float64frombits(bits))); got != want {
			t.Errorf("%#016x: %s, want %s", bits, got, want)
		}
	}
}

func TestCanonicalizeRefuses(t *testing.T) {
	for _, in := range []string{
		`{"a":1,"a":2}`, `"\ud800"`, `"\udc00\ud800"`, `[1,]`, `{"a" 1}`, `01`, `1.`, `-`, `1e`, `1e999`,
		`"a` + "\n" + `"`, `[1] [2]`, `tru`, "\"\xff\"", strings.Repeat("[", 100) + strings.Repeat("]", 100), ``,
	} {
		if got, err := Canonicalize([]byte(in)); err == nil {
			t.Errorf("%q accepted as %s", in, got)
		}
	}
}

// FuzzCanonicalize: no input panics, and canonical output is canonical.
func FuzzCanonicalize(f *testing.F) {
	f.Add([]byte(`{"numbers":[1e30,4.5,-0,0.000001],"s":"\u20ac\n","l":[true,false,null]}`))
	f.Add([]byte(`"\ud83d\ude00"`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Canonicalize(b)
		if err != nil {
			return
		}
		again, err := Canonicalize(c)
		if err != nil || string(again) != string(c) {
			t.Fatalf("%q -> %q -> %q, %v", b, c, again, err)
		}
	})
}
