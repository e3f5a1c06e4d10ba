package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/rtmrec/rtmrec/auth"
	"github.com/rtmrec/rtmrec/rtm"
)

// A frame is one entry of a node's relay stream. Its fields are the
// entry's fields, so an RTM message travels as the client sent it, without
// a second layer of JSON.
type frame struct {
	Kind    frameKind
	From    string // the sending node
	FromInc string // its incarnation
	ToInc   string // the incarnation it is meant for; others drop it
	Link    string
	// Seq numbers a link's frames in each direction, so that duplicates (a
	// retried write) are dropped and gaps (lost frames) detected. 1 is the
	// open (implicit from the acceptor); messages start at 2.
	Seq uint64
	Msg []byte // kindMsg: the RTM message, JSON
	// Secret marks a message that carries a bearer token (token_refresh):
	// its entry is deleted once read, as an open frame's is.
	Secret bool
	Token  string       // kindOpen: the client's bearer token, verified again by the receiver
	Opts   *LinkOptions // kindOpen
	Cause  closeCause   // kindClose
	Code   rtm.Code     // kindClose, causeRefused: what the client is answered
	Text   string       // kindClose, causeRefused
	// Links, in a sync frame, is the last Seq the sender sent on each of
	// its recently active links to the receiver, so that a receiver that
	// saw less knows frames were lost even when nothing follows them.
	Links map[string]uint64
}

type frameKind string

const (
	kindOpen  frameKind = "open"
	kindMsg   frameKind = "msg"
	kindClose frameKind = "close"
	kindSync  frameKind = "sync"
)

type closeCause string

const (
	causeClosed   closeCause = "closed"   // its owner closed it
	causeRefused  closeCause = "refused"  // the core refused to open it
	causeUnknown  closeCause = "unknown"  // the receiver has no such link
	causeBroken   closeCause = "broken"   // frames were lost
	causeStopping closeCause = "stopping" // the sender is shutting down
)

// Bounds on what a stream entry may hold; the relay never trusts Redis
// with its memory more than a front end trusts the network.
const (
	maxFrameMsgLen = 1<<20 + 64<<10 // an RTM frame (1 MiB) and some slack
	maxSyncLinks   = 1 << 16
	maxIDField     = 64
	maxTextLen     = 1024
)

// values is the frame as stream entry fields.
func (f *frame) values() []any {
	v := []any{"k", string(f.Kind), "from", f.From, "fi", f.FromInc, "ti", f.ToInc}
	if f.Link != "" {
		v = append(v, "l", f.Link)
	}
	if f.Seq != 0 {
		v = append(v, "s", strconv.FormatUint(f.Seq, 10))
	}
	switch f.Kind {
	case kindOpen:
		v = append(v, "t", f.Token)
		if f.Opts != nil {
			o, _ := json.Marshal(f.Opts)
			v = append(v, "o", string(o))
		}
	case kindMsg:
		v = append(v, "m", f.Msg)
		if f.Secret {
			v = append(v, "x", "1")
		}
	case kindClose:
		v = append(v, "c", string(f.Cause))
		if f.Code != "" {
			v = append(v, "code", string(f.Code), "text", f.Text)
		}
	case kindSync:
		ls, _ := json.Marshal(f.Links)
		v = append(v, "ls", string(ls))
	}
	return v
}

// size is about what the frame takes in the backlog.
func (f *frame) size() int { return 128 + len(f.Msg) + len(f.Token) + 48*len(f.Links) }

// decodeFrame reads a stream entry back, bounding and checking every field.
func decodeFrame(values map[string]any) (frame, error) {
	str := func(k string) string {
		s, _ := values[k].(string)
		return s
	}
	f := frame{
		Kind: frameKind(str("k")), From: str("from"), FromInc: str("fi"), ToInc: str("ti"), Link: str("l"),
	}
	if err := ValidNodeID(f.From); err != nil {
		return frame{}, fmt.Errorf("frame sender: %w", err)
	}
	if !isToken(f.FromInc) || !isToken(f.ToInc) {
		return frame{}, errors.New("frame has malformed incarnations")
	}
	if s := str("s"); s != "" {
		seq, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return frame{}, errors.New("frame has a malformed sequence number")
		}
		f.Seq = seq
	}
	if f.Kind != kindSync && !isToken(f.Link) {
		return frame{}, errors.New("frame has a malformed link id")
	}
	switch f.Kind {
	case kindOpen:
		f.Token = str("t")
		if len(f.Token) > auth.MaxTokenLen {
			return frame{}, errors.New("open frame's token is too long")
		}
		if o := str("o"); o != "" {
			f.Opts = new(LinkOptions)
			if len(o) > maxTextLen || json.Unmarshal([]byte(o), f.Opts) != nil {
				return frame{}, errors.New("open frame has malformed options")
			}
		}
		if f.Seq != 1 {
			return frame{}, errors.New("open frame is not the link's first")
		}
	case kindMsg:
		m := str("m")
		if m == "" || len(m) > maxFrameMsgLen {
			return frame{}, errors.New("message frame is empty or too large")
		}
		f.Msg = []byte(m)
		f.Secret = str("x") == "1"
		if f.Seq < 2 {
			return frame{}, errors.New("message frame has no sequence number")
		}
	case kindClose:
		f.Cause = closeCause(str("c"))
		f.Code, f.Text = rtm.Code(str("code")), str("text")
		if len(f.Code) > maxIDField || len(f.Text) > maxTextLen {
			return frame{}, errors.New("close frame's reason is too long")
		}
	case kindSync:
		ls := str("ls")
		if len(ls) > maxSyncLinks*(maxIDField+24) || json.Unmarshal([]byte(ls), &f.Links) != nil {
			return frame{}, errors.New("sync frame is malformed")
		}
		if len(f.Links) > maxSyncLinks {
			return frame{}, errors.New("sync frame lists too many links")
		}
	default:
		return frame{}, errors.New("frame of an unknown kind")
	}
	return f, nil
}

// isToken reports whether s is a non-empty id of hex digits (incarnations
// and link ids) of bounded length.
func isToken(s string) bool {
	if s == "" || len(s) > maxIDField {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// closeError is what a close frame means to the end that receives it; nil
// for a link its peer closed normally.
func closeError(f frame) error {
	switch f.Cause {
	case causeClosed:
		return nil
	case causeRefused:
		return &LinkRefusedError{Code: f.Code, Message: f.Text}
	case causeStopping:
		return ErrNodeStopping
	default:
		return ErrLinkBroken
	}
}
