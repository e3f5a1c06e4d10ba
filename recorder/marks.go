package recorder

import (
	"strconv"
	"strings"
)

// fileMark is a labelled span of the file timeline that the file itself shows: Matroska
// chapters, Ogg comments (see opus.go). Pauses are marked "paused", redactions "redacted".
type fileMark struct {
	startMS, endMS int64
	label          string
}

// Mark labels.
const (
	markPaused   = "paused"
	markRedacted = "redacted"
)

// commentKey is the machine-readable Ogg comment of a mark.
func (m fileMark) commentKey() string {
	if m.label == markPaused {
		return "RTMREC_PAUSE"
	}
	return "RTMREC_" + strings.ToUpper(m.label)
}

// pauseMarks turns the manifest's pauses into marks; a pause a crash left open has endMS
// -1 (see untilEnd).
func pauseMarks(pauses []PauseSpan) []fileMark {
	out := make([]fileMark, 0, len(pauses))
	for _, p := range pauses {
		end := max(p.EndMS, p.StartMS)
		if p.EndedAt == nil {
			end = -1
		}
		out = append(out, fileMark{startMS: p.StartMS, endMS: end, label: markPaused})
	}
	return out
}

// untilEnd makes marks with no end last until endMS.
func untilEnd(marks []fileMark, endMS int64) []fileMark {
	for i := range marks {
		if marks[i].endMS < 0 {
			marks[i].endMS = max(endMS, marks[i].startMS)
		}
	}
	return marks
}

// marksFromComments reads back the machine-readable marks of an Ogg comment header.
func marksFromComments(comments []string) []fileMark {
	var out []fileMark
	for _, c := range comments {
		k, v, ok := strings.Cut(c, "=")
		if !ok || !strings.HasPrefix(strings.ToUpper(k), "RTMREC_") {
			continue
		}
		var label string
		switch strings.ToUpper(k) {
		case "RTMREC_PAUSE":
			label = markPaused
		case "RTMREC_REDACTED":
			label = markRedacted
		default:
			continue
		}
		a, b, ok := strings.Cut(v, "-")
		s, err1 := strconv.ParseInt(a, 10, 64)
		e, err2 := strconv.ParseInt(b, 10, 64)
		if !ok || err1 != nil || err2 != nil || s < 0 || e < s {
			continue
		}
		out = append(out, fileMark{startMS: s, endMS: e, label: label})
	}
	return out
}
