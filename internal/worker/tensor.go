package worker

import (
	"fmt"
	"math"
	"strconv"
)

// tensorData is the "data" of an Open Inference Protocol input tensor.
// The protocol lets a client send it flat in row-major order or nested in
// the tensor's natural shape ("Tensor Data" in the protocol document), so
// the decoder flattens it and keeps the nesting (dims) for the check
// against the declared shape. Like number, its decoder never fails: a
// problem is kept in err and reported with the input's index afterwards.
type tensorData struct {
	set    bool      // the key was present
	values []float64 // flattened, row-major
	dims   []int     // the nesting: [4] for flat, [3,4] for [[..4..],[..],[..]]
	err    string    // why the data cannot be used, if it cannot
}

// maxTensorDepth bounds the nesting the walker follows; no tensor this
// worker accepts has more than two dimensions.
const maxTensorDepth = 8

// maxTensorValues bounds what one tensor may hold before the walker stops,
// whatever the batch limit: the body size limit bounds it already, this
// keeps a hostile body from growing a slice of millions of values first.
const maxTensorValues = 1 << 20

// UnmarshalJSON walks the data array. encoding/json has already checked
// that b is valid JSON, so the walker only needs to tell values apart.
func (t *tensorData) UnmarshalJSON(b []byte) error {
	*t = tensorData{set: true, values: t.values[:0]}
	w := tensorWalker{buf: b, t: t, leafDepth: -1}
	w.skipSpace()
	if w.pos < len(w.buf) && w.buf[w.pos] == 'n' {
		t.err = "is null: want an array of numbers"
		return nil
	}
	if w.pos >= len(w.buf) || w.buf[w.pos] != '[' {
		t.err = "must be an array of numbers, found " + describeLiteral(w.rest())
		return nil
	}
	if msg := w.array(0); msg != "" {
		t.err = msg
		t.values = t.values[:0]
	}
	return nil
}

type tensorWalker struct {
	buf       []byte
	pos       int
	t         *tensorData
	leafDepth int // the depth numbers were found at, -1 before the first
}

func (w *tensorWalker) skipSpace() {
	for w.pos < len(w.buf) {
		switch w.buf[w.pos] {
		case ' ', '\t', '\n', '\r':
			w.pos++
		default:
			return
		}
	}
}

func (w *tensorWalker) rest() []byte { return w.buf[w.pos:] }

// array reads the array that starts at w.pos, at nesting depth, and
// returns a message if the data cannot form a tensor: mixed scalars and
// arrays, ragged rows, or an element that is not a finite number.
func (w *tensorWalker) array(depth int) string {
	if depth >= maxTensorDepth {
		return fmt.Sprintf("is nested more than %d deep", maxTensorDepth)
	}
	w.pos++ // '['
	n := 0
	var nestedKind byte // '[' when the elements are arrays, '0' when numbers
	for {
		w.skipSpace()
		if w.pos >= len(w.buf) {
			return "ends inside an array"
		}
		c := w.buf[w.pos]
		if c == ']' {
			w.pos++
			break
		}
		if c == ',' {
			w.pos++
			continue
		}
		kind := byte('0')
		if c == '[' {
			kind = '['
		}
		if nestedKind == 0 {
			nestedKind = kind
		} else if kind != nestedKind {
			return fmt.Sprintf("mixes numbers and arrays at depth %d", depth+1)
		}
		if kind == '[' {
			if msg := w.array(depth + 1); msg != "" {
				return msg
			}
		} else {
			if w.leafDepth < 0 {
				w.leafDepth = depth
			} else if w.leafDepth != depth {
				return "mixes numbers and arrays at different depths"
			}
			if msg := w.scalar(); msg != "" {
				return msg
			}
		}
		n++
	}
	for len(w.t.dims) <= depth {
		w.t.dims = append(w.t.dims, -1)
	}
	switch d := w.t.dims[depth]; {
	case d < 0:
		w.t.dims[depth] = n
	case d != n:
		return fmt.Sprintf("is ragged: arrays at depth %d hold %d and %d elements", depth+1, d, n)
	}
	return ""
}

// scalar reads one element that is not an array.
func (w *tensorWalker) scalar() string {
	start := w.pos
	end := w.valueEnd()
	lit := w.buf[start:end]
	w.pos = end
	if len(w.t.values) >= maxTensorValues {
		return fmt.Sprintf("holds more than %d values", maxTensorValues)
	}
	if c := lit[0]; c == '-' || ('0' <= c && c <= '9') {
		f, err := strconv.ParseFloat(string(lit), 64)
		if err == nil && !math.IsInf(f, 0) {
			w.t.values = append(w.t.values, f)
			return ""
		}
	}
	return fmt.Sprintf("element %d is %s", len(w.t.values), describeLiteral(lit))
}

// valueEnd returns the end of the scalar or object at w.pos: a number,
// string, literal or (not allowed, but it must be skipped to be named)
// object.
func (w *tensorWalker) valueEnd() int {
	i := w.pos
	switch w.buf[i] {
	case '"':
		for i++; i < len(w.buf); i++ {
			switch w.buf[i] {
			case '\\':
				i++
			case '"':
				return i + 1
			}
		}
		return len(w.buf)
	case '{':
		depth, inString := 0, false
		for ; i < len(w.buf); i++ {
			c := w.buf[i]
			switch {
			case inString && c == '\\':
				i++
			case c == '"':
				inString = !inString
			case inString:
			case c == '{' || c == '[':
				depth++
			case c == '}' || c == ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return len(w.buf)
	}
	for ; i < len(w.buf); i++ {
		switch w.buf[i] {
		case ',', ']', ' ', '\t', '\n', '\r':
			return i
		}
	}
	return i
}
