package recorder

import (
	"errors"
	"sort"
)

// DefaultMaxPauses bounds the pauses of one recording when Config.MaxPauses is 0. Each
// pause is kept in the manifest and in the recording's journey, so a client must not
// choose their number; card-payment pauses come a few per call.
const DefaultMaxPauses = 100

// ErrTooManyPauses is Pause's error once the recording has had Config.MaxPauses pauses.
var ErrTooManyPauses = errors.New("this recording has reached its maximum number of pauses")

// pauseView is an immutable picture of a recording's pauses for the writer goroutine,
// which maps every packet to the file timeline with it (PauseSkip): the closed spans with
// their running totals, so a lookup costs a binary search whatever their number, and the
// start of the open pause. Successive views share the closed spans' arrays, which are only
// ever appended to, so a pause or a resume copies nothing.
type pauseView struct {
	closed []pauseWall
	// before[i] is the total length of closed[:i]; it has one more entry than closed.
	before []int64
	open   int64 // start of the open pause, 0 when running
}

func newPauseView() *pauseView { return &pauseView{before: []int64{0}} }

// paused returns the view after a pause begun at start.
func (v *pauseView) paused(start int64) *pauseView {
	return &pauseView{closed: v.closed, before: v.before, open: start}
}

// resumed returns the view after the open pause ended at end.
func (v *pauseView) resumed(end int64) *pauseView {
	span := pauseWall{start: v.open, end: max(end, v.open)}
	return &pauseView{
		closed: append(v.closed, span),
		before: append(v.before, v.before[len(v.before)-1]+span.end-span.start),
	}
}

// skipped is how much of the time before local (unix ns) was paused.
func (v *pauseView) skipped(local int64) int64 {
	// Spans are in order and do not overlap: all but the last that began before local
	// ended before it too.
	n := sort.Search(len(v.closed), func(i int) bool { return v.closed[i].start >= local })
	var s int64
	if n > 0 {
		last := v.closed[n-1]
		s = v.before[n-1] + min(last.end, local) - last.start
	}
	if v.open != 0 && v.open < local {
		s += local - v.open
	}
	return s
}
