package cluster

import (
	"reflect"
	"testing"
)

// entry turns a frame's values into what XREAD returns for it.
func entry(v []any) map[string]any {
	m := map[string]any{}
	for i := 0; i+1 < len(v); i += 2 {
		switch x := v[i+1].(type) {
		case []byte:
			m[v[i].(string)] = string(x)
		default:
			m[v[i].(string)] = x
		}
	}
	return m
}

func TestFrameRoundTrip(t *testing.T) {
	frames := []frame{
		{Kind: kindOpen, From: "node-1", FromInc: "0a1b", ToInc: "2c3d", Link: "abcdef01", Seq: 1, Token: "eyJ.x.y", Opts: &LinkOptions{CompleteGathering: true, Remote: "192.0.2.1"}},
		{Kind: kindMsg, From: "node-1", FromInc: "0a1b", ToInc: "2c3d", Link: "abcdef01", Seq: 7, Msg: []byte(`{"type":"ping"}`)},
		{Kind: kindClose, From: "n", FromInc: "01", ToInc: "02", Link: "ff", Seq: 9, Cause: causeRefused, Code: "unauthorized", Text: "token has expired"},
		{Kind: kindClose, From: "n", FromInc: "01", ToInc: "02", Link: "ff", Cause: causeUnknown},
		{Kind: kindSync, From: "n", FromInc: "01", ToInc: "02", Links: map[string]uint64{"aa": 3, "bb": 12}},
	}
	for _, f := range frames {
		got, err := decodeFrame(entry(f.values()))
		if err != nil {
			t.Fatalf("%s: %v", f.Kind, err)
		}
		if !reflect.DeepEqual(got, f) {
			t.Fatalf("%s: decoded %+v, want %+v", f.Kind, got, f)
		}
	}
}

func TestFrameRefusals(t *testing.T) {
	good := func() map[string]any {
		return entry((&frame{Kind: kindMsg, From: "n", FromInc: "01", ToInc: "02", Link: "ab", Seq: 2, Msg: []byte("{}")}).values())
	}
	cases := map[string]func(map[string]any){
		"unknown kind":       func(m map[string]any) { m["k"] = "nope" },
		"sender with space":  func(m map[string]any) { m["from"] = "a b" },
		"upper-case link id": func(m map[string]any) { m["l"] = "AB" },
		"no incarnation":     func(m map[string]any) { delete(m, "fi") },
		"bad sequence":       func(m map[string]any) { m["s"] = "-1" },
		"message as seq 1":   func(m map[string]any) { m["s"] = "1" },
		"empty message":      func(m map[string]any) { m["m"] = "" },
		"oversized message":  func(m map[string]any) { m["m"] = string(make([]byte, maxFrameMsgLen+1)) },
		"value not a string": func(m map[string]any) { m["from"] = 7 },
	}
	for name, spoil := range cases {
		m := good()
		spoil(m)
		if _, err := decodeFrame(m); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// FuzzDecodeFrame: whatever a stream entry holds, decoding never panics,
// and what it accepts encodes back to the same frame.
func FuzzDecodeFrame(f *testing.F) {
	f.Add("msg", "node-1", "0a", "1b", "ab", "2", `{"type":"ping"}`, "", "")
	f.Add("open", "n", "0a", "1b", "ab", "1", "", "tok", `{"remote":"x"}`)
	f.Add("sync", "n", "0a", "1b", "", "", "", "", `{"ab":3}`)
	f.Add("close", "n", "0a", "1b", "ab", "", "", "refused", "")
	f.Fuzz(func(t *testing.T, kind, from, fi, ti, link, seq, m, a, b string) {
		e := map[string]any{"k": kind, "from": from, "fi": fi, "ti": ti, "l": link, "s": seq, "m": m,
			"t": a, "o": b, "c": a, "code": a, "text": b, "ls": b}
		fr, err := decodeFrame(e)
		if err != nil {
			return
		}
		again, err := decodeFrame(entry(fr.values()))
		if err != nil {
			t.Fatalf("re-decoding %+v: %v", fr, err)
		}
		if !reflect.DeepEqual(again, fr) {
			t.Fatalf("round trip changed %+v into %+v", fr, again)
		}
	})
}
