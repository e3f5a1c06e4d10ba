package evidence

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Canonical JSON: the JSON Canonicalization Scheme, RFC 8785 (JCS). The signature covers
// these bytes, so any verifier that canonicalizes the same way (JavaScript's
// JSON.stringify with sorted keys does, see docs/examples/verify-manifest.mjs) gets the
// same bytes from the same document, however it was pretty-printed on the way.
//
//   - no whitespace between tokens;
//   - object members sorted by name, comparing names as sequences of UTF-16 code units;
//     a name appearing twice in one object is an error;
//   - strings as UTF-8, escaping only '"' and '\' (as \" and \\), and the control
//     characters U+0000..U+001F: \b \t \n \f \r by name, the others as \u00xx in lower
//     case; a lone surrogate is an error;
//   - numbers as ECMAScript's Number.prototype.toString prints the IEEE 754 double they
//     denote (integers below 2^53 are exact; 1e21 and above, and below 1e-6, use an
//     exponent);
//   - true, false and null as they are.

// canonicalWithout parses an object, and returns the canonical form of it without its
// member name, and that member's canonical form (nil if absent).
func canonicalWithout(b []byte, name string) (rest, member []byte, err error) {
	v, err := parseJSON(b)
	if err != nil {
		return nil, nil, err
	}
	if v.kind != 'o' {
		return nil, nil, errors.New("canonical json: not an object")
	}
	for i, m := range v.members {
		if m.name == name {
			member = m.value.appendTo(nil)
			v.members = slices.Delete(v.members, i, i+1)
			break
		}
	}
	return v.appendTo(nil), member, nil
}

// maxDepth bounds nesting so a hostile document cannot exhaust the stack.
const maxDepth = 64

// Canonicalize returns the RFC 8785 canonical form of the JSON document b.
func Canonicalize(b []byte) ([]byte, error) {
	v, err := parseJSON(b)
	if err != nil {
		return nil, err
	}
	return v.appendTo(nil), nil
}

// parseJSON parses one JSON document.
func parseJSON(b []byte) (jsonValue, error) {
	if !utf8.Valid(b) {
		return jsonValue{}, errors.New("canonical json: not UTF-8")
	}
	p := &jsonParser{s: string(b)}
	v, err := p.value(0)
	if err != nil {
		return v, err
	}
	if p.space(); p.i != len(p.s) {
		return v, p.errorf("data after the document")
	}
	return v, nil
}

// jsonValue is a parsed value: one of the kinds below.
type jsonValue struct {
	kind    byte // 'o' object, 'a' array, 's' string, 'n' number, 'l' literal
	str     string
	num     float64
	members []jsonMember
	items   []jsonValue
}

type jsonMember struct {
	name  string
	utf16 []uint16
	value jsonValue
}

type jsonParser struct {
	s string
	i int
}

func (p *jsonParser) errorf(format string, a ...any) error {
	return fmt.Errorf("canonical json: at byte %d: %s", p.i, fmt.Sprintf(format, a...))
}

func (p *jsonParser) space() {
	for p.i < len(p.s) && strings.IndexByte(" \t\n\r", p.s[p.i]) >= 0 {
		p.i++
	}
}

func (p *jsonParser) value(depth int) (jsonValue, error) {
	if depth > maxDepth {
		return jsonValue{}, p.errorf("nested too deeply")
	}
	p.space()
	if p.i >= len(p.s) {
		return jsonValue{}, p.errorf("unexpected end")
	}
	switch c := p.s[p.i]; {
	case c == '{':
		return p.object(depth)
	case c == '[':
		p.i++
		v := jsonValue{kind: 'a'}
		p.space()
		if p.i < len(p.s) && p.s[p.i] == ']' {
			p.i++
			return v, nil
		}
		for {
			item, err := p.value(depth + 1)
			if err != nil {
				return v, err
			}
			v.items = append(v.items, item)
			if done, err := p.next(']'); err != nil || done {
				return v, err
			}
		}
	case c == '"':
		s, err := p.string()
		return jsonValue{kind: 's', str: s}, err
	case c == '-' || c >= '0' && c <= '9':
		return p.number()
	default:
		for _, lit := range []string{"true", "false", "null"} {
			if strings.HasPrefix(p.s[p.i:], lit) {
				p.i += len(lit)
				return jsonValue{kind: 'l', str: lit}, nil
			}
		}
		return jsonValue{}, p.errorf("unexpected %q", c)
	}
}

// next consumes ',' (false) or the closing delimiter (true).
func (p *jsonParser) next(closing byte) (bool, error) {
	p.space()
	if p.i < len(p.s) {
		switch p.s[p.i] {
		case ',':
			p.i++
			return false, nil
		case closing:
			p.i++
			return true, nil
		}
	}
	return false, p.errorf("expected ',' or %q", closing)
}

func (p *jsonParser) object(depth int) (jsonValue, error) {
	p.i++
	v := jsonValue{kind: 'o'}
	p.space()
	if p.i < len(p.s) && p.s[p.i] == '}' {
		p.i++
		return v, nil
	}
	seen := map[string]bool{}
	for {
		p.space()
		if p.i >= len(p.s) || p.s[p.i] != '"' {
			return v, p.errorf("expected a member name")
		}
		name, err := p.string()
		if err != nil {
			return v, err
		}
		if seen[name] {
			return v, p.errorf("member %q appears twice", name)
		}
		seen[name] = true
		p.space()
		if p.i >= len(p.s) || p.s[p.i] != ':' {
			return v, p.errorf("expected ':'")
		}
		p.i++
		val, err := p.value(depth + 1)
		if err != nil {
			return v, err
		}
		v.members = append(v.members, jsonMember{name: name, utf16: utf16.Encode([]rune(name)), value: val})
		if done, err := p.next('}'); err != nil {
			return v, err
		} else if done {
			break
		}
	}
	slices.SortFunc(v.members, func(a, b jsonMember) int { return slices.Compare(a.utf16, b.utf16) })
	return v, nil
}

func (p *jsonParser) string() (string, error) {
	p.i++ // opening quote
	var b strings.Builder
	for {
		if p.i >= len(p.s) {
			return "", p.errorf("unterminated string")
		}
		c := p.s[p.i]
		switch {
		case c == '"':
			p.i++
			return b.String(), nil
		case c < 0x20:
			return "", p.errorf("control character in a string")
		case c != '\\':
			b.WriteByte(c)
			p.i++
			continue
		}
		if p.i+1 >= len(p.s) {
			return "", p.errorf("unterminated escape")
		}
		e := p.s[p.i+1]
		p.i += 2
		if i := strings.IndexByte(`"\/bfnrt`, e); i >= 0 {
			b.WriteByte("\"\\/\b\f\n\r\t"[i])
			continue
		}
		if e != 'u' {
			return "", p.errorf("bad escape \\%c", e)
		}
		r, err := p.hex4()
		if err != nil {
			return "", err
		}
		if utf16.IsSurrogate(r) {
			if r >= 0xDC00 || !strings.HasPrefix(p.s[p.i:], `\u`) {
				return "", p.errorf("lone surrogate")
			}
			p.i += 2
			lo, err := p.hex4()
			if err != nil {
				return "", err
			}
			if r = utf16.DecodeRune(r, lo); r == utf8.RuneError {
				return "", p.errorf("lone surrogate")
			}
		}
		b.WriteRune(r)
	}
}

func (p *jsonParser) hex4() (rune, error) {
	if p.i+4 > len(p.s) {
		return 0, p.errorf("short \\u escape")
	}
	v, err := strconv.ParseUint(p.s[p.i:p.i+4], 16, 32)
	if err != nil {
		return 0, p.errorf("bad \\u escape")
	}
	p.i += 4
	return rune(v), nil
}

// number checks the JSON number grammar (RFC 8259 §6) and parses it as a double.
func (p *jsonParser) number() (jsonValue, error) {
	start := p.i
	digits := func() int {
		n := 0
		for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
			p.i++
			n++
		}
		return n
	}
	if p.s[p.i] == '-' {
		p.i++
	}
	if p.i < len(p.s) && p.s[p.i] == '0' {
		p.i++
	} else if digits() == 0 {
		return jsonValue{}, p.errorf("bad number")
	}
	if p.i < len(p.s) && p.s[p.i] == '.' {
		p.i++
		if digits() == 0 {
			return jsonValue{}, p.errorf("bad number")
		}
	}
	if p.i < len(p.s) && (p.s[p.i] == 'e' || p.s[p.i] == 'E') {
		p.i++
		if p.i < len(p.s) && (p.s[p.i] == '+' || p.s[p.i] == '-') {
			p.i++
		}
		if digits() == 0 {
			return jsonValue{}, p.errorf("bad number")
		}
	}
	f, err := strconv.ParseFloat(p.s[start:p.i], 64)
	if err != nil || math.IsInf(f, 0) {
		return jsonValue{}, p.errorf("number out of range")
	}
	return jsonValue{kind: 'n', num: f}, nil
}

func (v *jsonValue) appendTo(b []byte) []byte {
	switch v.kind {
	case 'o':
		b = append(b, '{')
		for i, m := range v.members {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, m.name)
			b = append(b, ':')
			b = m.value.appendTo(b)
		}
		return append(b, '}')
	case 'a':
		b = append(b, '[')
		for i := range v.items {
			if i > 0 {
				b = append(b, ',')
			}
			b = v.items[i].appendTo(b)
		}
		return append(b, ']')
	case 's':
		return appendString(b, v.str)
	case 'n':
		return appendNumber(b, v.num)
	}
	return append(b, v.str...)
}

// appendString writes s as RFC 8785 §3.2.2.2 requires.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c >= 0x20:
			b = append(b, c)
		default:
			if j := strings.IndexByte("\b\t\n\f\r", c); j >= 0 {
				b = append(b, '\\', "btnfr"[j])
			} else {
				b = append(b, '\\', 'u', '0', '0', "0123456789abcdef"[c>>4], "0123456789abcdef"[c&15])
			}
		}
	}
	return append(b, '"')
}

// appendNumber writes f as ECMAScript's Number::toString does (ECMA-262 §6.1.6.1.20):
// the shortest digits that round-trip, in plain notation for 1e-7 < |f| < 1e21, with an
// exponent otherwise.
func appendNumber(b []byte, f float64) []byte {
	if f == 0 {
		return append(b, '0') // also -0
	}
	if f < 0 {
		b = append(b, '-')
		f = -f
	}
	// Shortest round-trip digits and the decimal exponent: f = 0.d1d2... × 10^n.
	e := strconv.FormatFloat(f, 'e', -1, 64) // d.ddde±xx
	mant, exp, _ := strings.Cut(e, "e")
	digits := strings.Replace(mant, ".", "", 1)
	x, _ := strconv.Atoi(exp)
	n, k := x+1, len(digits)
	switch {
	case k <= n && n <= 21:
		b = append(b, digits...)
		for range n - k {
			b = append(b, '0')
		}
	case 0 < n && n <= 21:
		b = append(b, digits[:n]...)
		b = append(b, '.')
		b = append(b, digits[n:]...)
	case -6 < n && n <= 0:
		b = append(b, '0', '.')
		for range -n {
			b = append(b, '0')
		}
		b = append(b, digits...)
	default:
		b = append(b, digits[0])
		if k > 1 {
			b = append(b, '.')
			b = append(b, digits[1:]...)
		}
		b = append(b, 'e')
		if n-1 >= 0 {
			b = append(b, '+')
		}
		b = strconv.AppendInt(b, int64(n-1), 10)
	}
	return b
}
