// Package sdptrim takes out of a remote offer the payload types the
// answerer will never accept, before the WebRTC stack reads it.
//
// pion looks up every payload type of an offer by re-reading every codec
// line of the whole description, so applying an offer costs the product of
// the two. A browser offers 30 or more payload types (Chromium 156: 8
// audio, 23 video, with 100 lines about them) of which a recorder takes a
// few; most of the server's CPU for an audio+video setup went there. The answer cannot
// contain a codec the answerer does not support, so removing those from the
// offer changes nothing it negotiates.
package sdptrim

import (
	"strings"
)

// Offer returns sdp with, in each audio and video section, only the payload
// types whose codec keep accepts (keep is given the rtpmap's encoding name,
// as written) and the retransmission ("rtx") payload types of those; the
// rtpmap, fmtp and rtcp-fb lines of the others go too. Everything else is
// kept byte for byte. A section is left as it was when none of its payload
// types would be kept (the answerer then rejects it, as it would have),
// when none would go, and when its simulcast restrictions name payload
// types (a=rid with pt=).
func Offer(sdp string, keep func(codec string) bool) string {
	lines := strings.Split(sdp, "\n")
	drop := make([]bool, len(lines))
	changed := false
	start := -1
	for i := 0; i <= len(lines); i++ {
		if i < len(lines) && !strings.HasPrefix(lines[i], "m=") {
			continue
		}
		if start >= 0 && trimSection(lines[start:i], drop[start:i], keep) {
			changed = true
		}
		start = i
	}
	if !changed {
		return sdp
	}
	out := make([]string, 0, len(lines))
	for i, l := range lines {
		if !drop[i] {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// trimSection trims one media section (its first line is the m= line):
// it rewrites the m= line in place and marks in drop the lines to leave
// out. It reports whether it changed anything.
func trimSection(sec []string, drop []bool, keep func(string) bool) bool {
	mline, cr := strings.CutSuffix(sec[0], "\r")
	fields := strings.Fields(strings.TrimPrefix(mline, "m="))
	if len(fields) < 4 || (fields[0] != "audio" && fields[0] != "video") || !strings.Contains(fields[2], "RTP") {
		return false
	}
	codec := map[string]string{} // payload type → encoding name
	apt := map[string]string{}   // rtx payload type → the payload type it repairs
	for _, raw := range sec[1:] {
		l := strings.TrimSuffix(raw, "\r")
		if pt, rest, ok := attr(l, "a=rtpmap:"); ok {
			name, _, _ := strings.Cut(rest, "/")
			codec[pt] = name
		} else if pt, rest, ok := attr(l, "a=fmtp:"); ok {
			for _, p := range strings.Split(rest, ";") {
				if v, ok := strings.CutPrefix(strings.TrimSpace(p), "apt="); ok {
					apt[pt] = v
				}
			}
		} else if strings.HasPrefix(l, "a=rid:") && strings.Contains(l, "pt=") {
			return false
		}
	}
	kept := map[string]bool{}
	for _, pt := range fields[3:] {
		if name := codec[pt]; name != "" && !strings.EqualFold(name, "rtx") && keep(name) {
			kept[pt] = true
		}
	}
	for _, pt := range fields[3:] {
		if strings.EqualFold(codec[pt], "rtx") && kept[apt[pt]] {
			kept[pt] = true
		}
	}
	var pts []string
	for _, pt := range fields[3:] {
		if kept[pt] {
			pts = append(pts, pt)
		}
	}
	if len(pts) == 0 || len(pts) == len(fields)-3 {
		return false
	}
	sec[0] = "m=" + strings.Join(append(fields[:3:3], pts...), " ")
	if cr {
		sec[0] += "\r"
	}
	for i, raw := range sec[1:] {
		l := strings.TrimSuffix(raw, "\r")
		for _, prefix := range []string{"a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"} {
			if pt, _, ok := attr(l, prefix); ok && pt != "*" && !kept[pt] {
				drop[1+i] = true
			}
		}
	}
	return true
}

// attr splits a line "<prefix><pt> <rest>" into pt and rest.
func attr(l, prefix string) (pt, rest string, ok bool) {
	v, ok := strings.CutPrefix(l, prefix)
	if !ok {
		return "", "", false
	}
	pt, rest, _ = strings.Cut(v, " ")
	return pt, rest, pt != ""
}
