package sdptrim

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// recordable is what rtmrec records.
func recordable(codec string) bool {
	return slices.Contains([]string{"opus", "vp8", "vp9", "h264"}, strings.ToLower(codec))
}

func TestOffer(t *testing.T) {
	chrome, err := os.ReadFile("testdata/chrome-156-audio-video-offer.sdp")
	if err != nil {
		t.Fatal(err)
	}
	const small = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n" +
		"m=audio 9 UDP/TLS/RTP/SAVPF 111 0 8\r\n" +
		"a=mid:0\r\n" +
		"a=rtpmap:111 opus/48000/2\r\n" +
		"a=rtcp-fb:111 transport-cc\r\n" +
		"a=fmtp:111 minptime=10;useinbandfec=1\r\n" +
		"a=rtpmap:0 PCMU/8000\r\n" +
		"a=rtpmap:8 PCMA/8000\r\n" +
		"a=rtcp-fb:* nack\r\n" +
		"m=video 9 UDP/TLS/RTP/SAVPF 96 97 45 46\r\n" +
		"a=mid:1\r\n" +
		"a=rtpmap:96 VP8/90000\r\n" +
		"a=rtcp-fb:96 nack pli\r\n" +
		"a=rtpmap:97 rtx/90000\r\n" +
		"a=fmtp:97 apt=96\r\n" +
		"a=rtpmap:45 AV1/90000\r\n" +
		"a=rtcp-fb:45 nack pli\r\n" +
		"a=rtpmap:46 rtx/90000\r\n" +
		"a=fmtp:46 apt=45\r\n" +
		"a=ssrc:1 cname:x\r\n" +
		"m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n" +
		"a=mid:2\r\n"
	const smallTrimmed = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n" +
		"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n" +
		"a=mid:0\r\n" +
		"a=rtpmap:111 opus/48000/2\r\n" +
		"a=rtcp-fb:111 transport-cc\r\n" +
		"a=fmtp:111 minptime=10;useinbandfec=1\r\n" +
		"a=rtcp-fb:* nack\r\n" +
		"m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\n" +
		"a=mid:1\r\n" +
		"a=rtpmap:96 VP8/90000\r\n" +
		"a=rtcp-fb:96 nack pli\r\n" +
		"a=rtpmap:97 rtx/90000\r\n" +
		"a=fmtp:97 apt=96\r\n" +
		"a=ssrc:1 cname:x\r\n" +
		"m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n" +
		"a=mid:2\r\n"
	unchanged := func(in string) string { return in }
	tests := []struct {
		name string
		in   string
		want string
		// mlines are the trimmed m= lines, where want is not given.
		mlines []string
	}{
		{name: "audio, video and data", in: small, want: smallTrimmed},
		{name: "LF line ends", in: strings.ReplaceAll(small, "\r\n", "\n"), want: strings.ReplaceAll(smallTrimmed, "\r\n", "\n")},
		{name: "Chrome 156", in: string(chrome), mlines: []string{
			"m=audio 9 UDP/TLS/RTP/SAVPF 111",
			"m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 104 107 108 109 114 115 116 117 39 40 98 99 100 101",
		}},
		{name: "nothing recordable: left for the answerer to reject", in: "v=0\r\nm=audio 9 RTP/SAVPF 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n", want: unchanged("v=0\r\nm=audio 9 RTP/SAVPF 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n")},
		{name: "nothing to take out", in: "v=0\r\nm=audio 9 RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n", want: unchanged("v=0\r\nm=audio 9 RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n")},
		{name: "simulcast restricted to payload types", in: "v=0\r\nm=video 9 RTP/SAVPF 96 45\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:45 AV1/90000\r\na=rid:h send pt=45\r\n", want: unchanged("v=0\r\nm=video 9 RTP/SAVPF 96 45\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:45 AV1/90000\r\na=rid:h send pt=45\r\n")},
		{name: "static payload type without rtpmap goes", in: "m=audio 9 RTP/SAVPF 0 111\na=rtpmap:111 OPUS/48000/2\n", want: "m=audio 9 RTP/SAVPF 111\na=rtpmap:111 OPUS/48000/2\n"},
		{name: "rtx of nothing kept goes", in: "m=video 9 RTP/SAVPF 96 97\na=rtpmap:96 VP8/90000\na=rtpmap:97 rtx/90000\na=fmtp:97 apt=45\n", want: "m=video 9 RTP/SAVPF 96\na=rtpmap:96 VP8/90000\n"},
		{name: "not an SDP", in: "hello\nm=\nm=video\n", want: unchanged("hello\nm=\nm=video\n")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Offer(tt.in, recordable)
			if tt.mlines != nil {
				var ms []string
				for _, l := range strings.Split(got, "\r\n") {
					if strings.HasPrefix(l, "m=") {
						ms = append(ms, l)
					}
				}
				if !slices.Equal(ms, tt.mlines) {
					t.Fatalf("m= lines\n%s\nwant\n%s", strings.Join(ms, "\n"), strings.Join(tt.mlines, "\n"))
				}
				checkLines(t, tt.in, got)
				return
			}
			if got != tt.want {
				t.Fatalf("got\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

// checkLines checks what Offer promises of any input: the same sections,
// and every other line either kept, in order, or one about a payload type
// that its m= line no longer lists; and trimming again changes nothing.
func checkLines(t *testing.T, in, out string) {
	t.Helper()
	if again := Offer(out, recordable); again != out {
		t.Fatalf("trimming twice changed it again:\n%q\n→\n%q", out, again)
	}
	inLines, outLines := strings.Split(in, "\n"), strings.Split(out, "\n")
	count := func(ls []string) (n int) {
		for _, l := range ls {
			if strings.HasPrefix(l, "m=") {
				n++
			}
		}
		return n
	}
	if count(inLines) != count(outLines) {
		t.Fatalf("%d sections became %d", count(inLines), count(outLines))
	}
	j := 0
	var listed map[string]bool // the payload types of the current output m= line
	for _, l := range inLines {
		if j < len(outLines) && (l == outLines[j] || strings.HasPrefix(l, "m=") && strings.HasPrefix(outLines[j], "m=")) {
			if strings.HasPrefix(outLines[j], "m=") {
				listed = map[string]bool{}
				if f := strings.Fields(strings.TrimSuffix(outLines[j], "\r")); len(f) > 3 {
					for _, pt := range f[3:] {
						listed[pt] = true
					}
				}
			}
			j++
			continue
		}
		l = strings.TrimSuffix(l, "\r")
		gone := false
		for _, prefix := range []string{"a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"} {
			if pt, _, ok := attr(l, prefix); ok && len(listed) > 0 && !listed[pt] {
				gone = true
			}
		}
		if !gone {
			t.Fatalf("line %q was taken out, though its payload type is still listed (%v)", l, listed)
		}
	}
	if j != len(outLines) {
		t.Fatalf("output line %q is not from the input", outLines[j])
	}
}

func FuzzOffer(f *testing.F) {
	chrome, err := os.ReadFile("testdata/chrome-156-audio-video-offer.sdp")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(chrome))
	f.Add("m=video 9 RTP/SAVPF 96 97 45\na=rtpmap:96 VP8/90000\na=rtpmap:97 rtx/90000\na=fmtp:97 apt=96\na=rtpmap:45 AV1/90000\na=rtcp-fb:45 nack\n")
	f.Add("m=audio 9 RTP/SAVPF 111 111 0\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:0 apt=111;apt=0\r\n")
	f.Fuzz(func(t *testing.T, in string) {
		checkLines(t, in, Offer(in, recordable))
	})
}
