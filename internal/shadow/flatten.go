package shadow

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strconv"
	"sync"

	"github.com/buger/jsonparser"
)

// maxLeaves bounds how much of a body is compared: an answer this large is
// compared on its first maxLeaves leaves.
const maxLeaves = 10000

// errNotJSON is a body that is not one valid JSON value.
var errNotJSON = errors.New("not a single valid JSON value")

// A flat is one body flattened: its leaves, sorted by path. The paths lie
// end to end in one buffer and the values point into the body, so
// flattening allocates nothing per leaf, and flats are pooled: it runs
// twice for every mirrored request.
type flat struct {
	paths   []byte
	leaves  []leaf
	members []member // of the objects being walked, the innermost last
	path    []byte   // the path of the value being walked
}

// leafKind says how a leaf compares.
type leafKind uint8

const (
	kindLiteral leafKind = iota // true, false, null, {}, [], a number out of float64's range: by its text
	kindNumber                  // by value, within the tolerances
	kindString                  // by its unescaped bytes
)

// leaf is one flattened value.
type leaf struct {
	start, end int // its path: paths[start:end] of its flat
	kind       leafKind
	escaped    bool // a string with escapes, compared unescaped
	num        float64
	raw        []byte // as in the body; a string without its quotes
}

// member is one key of an object and its value.
type member struct {
	key   []byte // unescaped
	value []byte
	typ   jsonparser.ValueType
}

var (
	emptyObject = []byte("{}")
	emptyArray  = []byte("[]")
)

var flats = sync.Pool{New: func() any { return new(flat) }}

// flatten walks a JSON body into its leaves, in place (buger/jsonparser)
// rather than decoding it into maps and interfaces; encoding/json only
// checks that the body is one valid JSON value first, which also bounds
// its nesting (and so walk's recursion). Release the flat when done with
// it.
func flatten(body []byte) (*flat, error) {
	if !json.Valid(body) {
		return nil, errNotJSON
	}
	f := flats.Get().(*flat)
	f.walk(topLevel(body))
	// Two leaves share a path when a key holds a dot or a bracket
	// ({"a.b":1,"a":{"b":2}}); the one walked last wins, as a map would
	// have it.
	slices.SortStableFunc(f.leaves, func(a, b leaf) int { return bytes.Compare(f.pathOf(a), f.pathOf(b)) })
	n := 0
	for i := range f.leaves {
		if i+1 < len(f.leaves) && bytes.Equal(f.pathOf(f.leaves[i]), f.pathOf(f.leaves[i+1])) {
			continue
		}
		f.leaves[n] = f.leaves[i]
		n++
	}
	f.leaves = f.leaves[:n]
	return f, nil
}

// topLevel is the value a valid JSON body holds, as jsonparser hands
// values over (a string without its quotes), and its type: the first byte
// tells, once the body is known to be one valid value.
func topLevel(body []byte) ([]byte, jsonparser.ValueType) {
	v := bytes.Trim(body, " \t\r\n")
	switch v[0] {
	case '{':
		return v, jsonparser.Object
	case '[':
		return v, jsonparser.Array
	case '"':
		return v[1 : len(v)-1], jsonparser.String
	case 't', 'f':
		return v, jsonparser.Boolean
	case 'n':
		return v, jsonparser.Null
	}
	return v, jsonparser.Number
}

// release gives the flat back to the pool; a huge body's buffers are not
// kept.
func (f *flat) release() {
	if cap(f.paths) > 64<<10 || cap(f.leaves) > 1024 {
		return
	}
	// Leaves and members point into the body: keep no body alive.
	clear(f.leaves[:cap(f.leaves)])
	clear(f.members[:cap(f.members)])
	f.paths, f.leaves, f.members, f.path = f.paths[:0], f.leaves[:0], f.members[:0], f.path[:0]
	flats.Put(f)
}

// pathOf is a leaf's path.
func (f *flat) pathOf(l leaf) []byte { return f.paths[l.start:l.end] }

// walk adds the leaves of value, found at f.path, and leaves f.path as it
// found it.
func (f *flat) walk(value []byte, typ jsonparser.ValueType) {
	if len(f.leaves) >= maxLeaves {
		return
	}
	switch typ {
	case jsonparser.Object:
		f.walkObject(value)
	case jsonparser.Array:
		base, i := len(f.path), 0
		_, _ = jsonparser.ArrayEach(value, func(v []byte, t jsonparser.ValueType, _ int, _ error) {
			f.path = append(f.path, '[')
			f.path = strconv.AppendInt(f.path, int64(i), 10)
			f.path = append(f.path, ']')
			f.walk(v, t)
			f.path = f.path[:base]
			i++
		})
		if i == 0 {
			f.add(leaf{raw: emptyArray})
		}
	case jsonparser.Number:
		l := leaf{kind: kindNumber, raw: value}
		var err error
		if l.num, err = strconv.ParseFloat(string(value), 64); err != nil {
			l.kind = kindLiteral
		}
		f.add(l)
	case jsonparser.String:
		f.add(leaf{kind: kindString, raw: value, escaped: bytes.IndexByte(value, '\\') >= 0})
	default: // true, false, null
		f.add(leaf{raw: value})
	}
}

// walkObject walks an object's members in key order, so that a body cut
// at maxLeaves is always cut at the same leaves. A repeated key keeps its
// last value, as encoding/json does.
func (f *flat) walkObject(value []byte) {
	start := len(f.members)
	_ = jsonparser.ObjectEach(value, func(k, v []byte, t jsonparser.ValueType, _ int) error {
		if key, err := jsonparser.Unescape(k, nil); err == nil {
			k = key
		}
		f.members = append(f.members, member{k, v, t})
		return nil
	})
	ms := f.members[start:]
	if len(ms) == 0 {
		f.add(leaf{raw: emptyObject})
		return
	}
	slices.SortStableFunc(ms, func(a, b member) int { return bytes.Compare(a.key, b.key) })
	n := 0
	for i := range ms {
		if i+1 < len(ms) && bytes.Equal(ms[i].key, ms[i+1].key) {
			continue
		}
		ms[n] = ms[i]
		n++
	}
	// The members below append after these, and ms keeps them whether or
	// not that moves f.members.
	ms = ms[:n]
	f.members = f.members[:start+n]
	base := len(f.path)
	for _, m := range ms {
		if base > 0 {
			f.path = append(f.path, '.')
		}
		f.path = append(f.path, m.key...)
		f.walk(m.value, m.typ)
		f.path = f.path[:base]
	}
	f.members = f.members[:start]
}

// add appends a leaf at the current path.
func (f *flat) add(l leaf) {
	l.start = len(f.paths)
	f.paths = append(f.paths, f.path...)
	l.end = len(f.paths)
	f.leaves = append(f.leaves, l)
}

// equal reports whether two leaves hold the same value: numbers within
// the tolerances, strings once unescaped, the rest by their text.
func (a leaf) equal(b leaf, absTol, relTol float64) bool {
	if a.kind != b.kind {
		return false
	}
	switch a.kind {
	case kindNumber:
		d := math.Abs(a.num - b.num)
		return a.num == b.num || d <= absTol || d <= relTol*math.Max(math.Abs(a.num), math.Abs(b.num))
	case kindString:
		if a.escaped || b.escaped {
			return bytes.Equal(a.unescaped(), b.unescaped())
		}
	}
	return bytes.Equal(a.raw, b.raw)
}

// unescaped is a string leaf's value (its raw text if an escape is bad).
func (a leaf) unescaped() []byte {
	if u, err := jsonparser.Unescape(a.raw, nil); err == nil {
		return u
	}
	return a.raw
}

// text is the leaf's value as JSON text, for a report: a string quoted.
func (a leaf) text() string {
	if a.kind == kindString {
		return strconv.Quote(string(a.unescaped()))
	}
	return string(a.raw)
}
