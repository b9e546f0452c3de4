// Package cache holds the gateway's response cache. Cache keys include a
// digest of the request body (BodyDigest), taken over a canonical form of
// JSON bodies (Canonical) so that bodies denoting the same JSON value share
// an entry and bodies denoting different values never do.
package cache

import (
	"bytes"
	"crypto/sha256"
	"hash"
	"math"
	"slices"
	"strconv"
	"sync"
	"unicode/utf16"
	"unicode/utf8"
)

// maxDepth is the deepest nesting of arrays and objects Canonical accepts:
// 64 levels are fine, 65 are refused. It bounds the recursion (and so the
// stack a hostile body can make us use) well above what request bodies need.
const maxDepth = 64

// Canonical appends the canonical form of the JSON text body to dst and
// reports whether body is canonicalisable JSON. ok is false for anything
// that is not one valid JSON value (RFC 8259) with only whitespace around
// it, for invalid UTF-8 anywhere, for an object with a duplicate member
// name (after unescaping), for nesting deeper than maxDepth (64), and for
// a number whose exponent does not fit an int32 after normalisation.
//
// The canonical form, one text per JSON value:
//
//   - No whitespace outside strings. true, false and null are written as is.
//   - Strings, values and member names alike, are decoded (every escape of
//     RFC 8259 section 7, \uXXXX surrogate pairs included) and re-encoded one
//     way: '"' as \" and '\' as \\; the control characters U+0000..U+001F as
//     \b \f \n \r \t where they have a short form and as \u00xx (lowercase
//     hex) otherwise; every other character, U+007F and U+2028 included, as
//     its literal UTF-8. So "\u00e9" and "é" are the same, and so are "\/"
//     and "/".
//   - Object members are sorted by their decoded names, comparing the UTF-8
//     bytes (RFC 8785 sorts by UTF-16 code units instead; byte order is
//     simpler and serves equally as a canonical order), and written as
//     name:value joined by commas.
//   - Arrays keep their order, elements joined by commas.
//   - A number is written by its exact decimal value, never through float64:
//     0 for every zero (-0, 0.0 and 0e7 included); otherwise an optional
//     '-', then DIGITS, the significant decimal digits with leading and
//     trailing zeros stripped (so the first and the last are not 0), then,
//     unless EXP is 0, 'e' and EXP in decimal with a '-' when negative; the
//     value is DIGITS × 10^EXP. So 1, 1.0, 1e0, 10E-1 and 0.1e+1 are all "1",
//     100 is "1e2", 1.5 is "15e-1" and 0.25 is "25e-2". Each number has one
//     such form and the form gives back the number, so distinct numbers stay
//     distinct however many digits they have.
//
// RFC 8785 (the JSON Canonicalization Scheme) is the standard answer, but it
// serialises numbers through IEEE 754 doubles: 12345678901234567 and
// 12345678901234568 would both become 12345678901234568 and share a cache
// entry although a model may treat them differently (IDs, seeds). That is
// why we do not use it; the rules above are exact instead.
//
// In detail, Canonical refuses (ok is false): anything that is not one
// JSON value by the RFC 8259 grammar with only JSON whitespace (space, tab,
// LF, CR) around it, a leading byte order mark included (section 8.1 lets
// parsers ignore one; we do not); invalid UTF-8 anywhere (section 8.1
// requires UTF-8; Go's decoder, like RFC 3629, also refuses UTF-8-encoded
// surrogates); a \u escape of a lone surrogate (section 8.2 leaves its
// meaning unpredictable); an object with two members of the same decoded
// name (section 4 leaves their meaning unpredictable); arrays and objects
// nested deeper than maxDepth; and a number whose EXP above does not fit an
// int32.
//
// When ok is false, nothing is appended: out holds just dst's bytes
// (possibly in a larger array, which the caller may reuse).
//
// Canonical takes time linear in len(body), plus sorting the members of
// objects that are not already in order (each reordered object is copied
// once, so at most maxDepth times over for nested ones). When dst has room
// it does not allocate, unless an object has more members than the pooled
// scratch space has held before.
func Canonical(dst, body []byte) (out []byte, ok bool) {
	// Validating UTF-8 in one fast pass up front means the scanner can copy
	// non-ASCII bytes inside strings verbatim. Outside strings any non-ASCII
	// byte is a syntax error anyway, so this rejects nothing valid.
	if !utf8.Valid(body) {
		return dst, false
	}
	c := canon{body: body, dst: dst}
	ok = c.document()
	if c.s != nil {
		c.s.release()
	}
	if !ok {
		// Drop what was appended, but keep any capacity gained.
		return c.dst[:len(dst)], false
	}
	return c.dst, true
}

// canon is the state of one Canonical call: the input with a read position
// and the output being appended to.
type canon struct {
	body []byte
	pos  int
	dst  []byte
	s    *scratch // taken from scratchPool at the first object, if any
}

// member is one object member already written to canon.dst: the name,
// quotes included, is dst[start:nameEnd], and the whole name:value is
// dst[start:end].
type member struct {
	start, nameEnd, end int
}

// scratch is the reusable memory for sorting object members. Objects nest,
// so members is a stack: each object uses the entries from its own base and
// truncates back to it when done.
type scratch struct {
	members []member
	tmp     []byte
}

// maxPooledBytes and maxPooledMembers bound the scratch kept in the pools,
// so that one huge body does not pin its memory for good.
const (
	maxPooledBytes   = 256 << 10
	maxPooledMembers = 4096
)

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

func (s *scratch) release() {
	s.members = s.members[:0]
	if cap(s.tmp) > maxPooledBytes {
		s.tmp = nil
	}
	if cap(s.members) > maxPooledMembers {
		s.members = nil
	}
	scratchPool.Put(s)
}

// document is RFC 8259's JSON-text = ws value ws.
func (c *canon) document() bool {
	c.skipWS()
	if !c.value(0) {
		return false
	}
	c.skipWS()
	return c.pos == len(c.body)
}

// skipWS skips RFC 8259 whitespace: space, horizontal tab, LF and CR.
func (c *canon) skipWS() {
	for c.pos < len(c.body) {
		switch c.body[c.pos] {
		case ' ', '\t', '\n', '\r':
			c.pos++
		default:
			return
		}
	}
}

// value canonicalises the value at c.pos; depth is the number of arrays and
// objects that enclose it.
func (c *canon) value(depth int) bool {
	if c.pos >= len(c.body) {
		return false
	}
	switch b := c.body[c.pos]; {
	case b == '{':
		return c.object(depth + 1)
	case b == '[':
		return c.array(depth + 1)
	case b == '"':
		return c.str()
	case b == 't':
		return c.literal("true")
	case b == 'f':
		return c.literal("false")
	case b == 'n':
		return c.literal("null")
	case b == '-' || '0' <= b && b <= '9':
		return c.number()
	}
	return false
}

func (c *canon) literal(lit string) bool {
	if len(c.body)-c.pos < len(lit) || string(c.body[c.pos:c.pos+len(lit)]) != lit {
		return false
	}
	c.pos += len(lit)
	c.dst = append(c.dst, lit...)
	return true
}

// array canonicalises the array at c.pos, which is its own depth-th level.
func (c *canon) array(depth int) bool {
	if depth > maxDepth {
		return false
	}
	c.pos++ // '['
	c.dst = append(c.dst, '[')
	c.skipWS()
	if c.pos < len(c.body) && c.body[c.pos] == ']' {
		c.pos++
		c.dst = append(c.dst, ']')
		return true
	}
	for {
		if !c.value(depth) {
			return false
		}
		c.skipWS()
		if c.pos >= len(c.body) {
			return false
		}
		switch c.body[c.pos] {
		case ',':
			c.pos++
			c.dst = append(c.dst, ',')
			c.skipWS()
		case ']':
			c.pos++
			c.dst = append(c.dst, ']')
			return true
		default:
			return false
		}
	}
}

// object canonicalises the object at c.pos, which is its own depth-th
// level. Members are written in input order as they are scanned, then
// reordered in place if they were not already sorted.
func (c *canon) object(depth int) bool {
	if depth > maxDepth {
		return false
	}
	c.pos++ // '{'
	c.dst = append(c.dst, '{')
	c.skipWS()
	if c.pos < len(c.body) && c.body[c.pos] == '}' {
		c.pos++
		c.dst = append(c.dst, '}')
		return true
	}
	if c.s == nil {
		c.s = scratchPool.Get().(*scratch)
	}
	base := len(c.s.members)
	bodyStart := len(c.dst) // just after '{'
	for {
		if c.pos >= len(c.body) || c.body[c.pos] != '"' {
			return false
		}
		start := len(c.dst)
		if !c.str() {
			return false
		}
		nameEnd := len(c.dst)
		c.skipWS()
		if c.pos >= len(c.body) || c.body[c.pos] != ':' {
			return false
		}
		c.pos++
		c.dst = append(c.dst, ':')
		c.skipWS()
		if !c.value(depth) {
			return false
		}
		c.s.members = append(c.s.members, member{start, nameEnd, len(c.dst)})
		c.skipWS()
		if c.pos >= len(c.body) {
			return false
		}
		if c.body[c.pos] == '}' {
			c.pos++
			break
		}
		if c.body[c.pos] != ',' {
			return false
		}
		c.pos++
		c.dst = append(c.dst, ',')
		c.skipWS()
	}
	ok := c.sortMembers(bodyStart, c.s.members[base:])
	c.s.members = c.s.members[:base]
	c.dst = append(c.dst, '}')
	return ok
}

// sortMembers puts the members ms, written as dst[bodyStart:] in input
// order, into canonical order, and reports false if two share a name.
func (c *canon) sortMembers(bodyStart int, ms []member) bool {
	// Most bodies are written by programs that already emit sorted keys, or
	// have one member; check before paying for a sort and a copy.
	sorted := true
	for i := 1; i < len(ms); i++ {
		switch c.cmpNames(ms[i-1], ms[i]) {
		case 0:
			return false
		case 1:
			sorted = false
		}
	}
	if sorted {
		return true
	}
	slices.SortFunc(ms, c.cmpNames)
	// Canonical names are equal exactly when the decoded names are, and
	// equal names are now adjacent.
	for i := 1; i < len(ms); i++ {
		if c.cmpNames(ms[i-1], ms[i]) == 0 {
			return false
		}
	}
	// Rewrite dst[bodyStart:] from a copy, in sorted order. Its length does
	// not change: the same members and the same number of commas.
	s := c.s
	s.tmp = append(s.tmp[:0], c.dst[bodyStart:]...)
	c.dst = c.dst[:bodyStart]
	for i, m := range ms {
		if i > 0 {
			c.dst = append(c.dst, ',')
		}
		c.dst = append(c.dst, s.tmp[m.start-bodyStart:m.end-bodyStart]...)
	}
	return true
}

// cmpNames compares the decoded names of two members, bytewise.
func (c *canon) cmpNames(a, b member) int {
	// Drop the quotes.
	return cmpCanonStrings(c.dst[a.start+1:a.nameEnd-1], c.dst[b.start+1:b.nameEnd-1])
}

// cmpCanonStrings compares the decoded bytes of two strings in canonical
// encoding (without quotes). Comparing the encodings directly would be
// wrong: '"' (0x22) sorts before '#' (0x23), but its encoding \" starts
// with '\' (0x5C).
func cmpCanonStrings(a, b []byte) int {
	// Fast path: the bytes agree up to k. If no escape is in a[:k] or
	// starts at k, a[k] and b[k] are the first decoded bytes that differ.
	// (Both strings decode a[:k] the same way, so escapes cannot be out of
	// step there.) Escapes in member names are rare.
	k := 0
	for k < len(a) && k < len(b) && a[k] == b[k] {
		k++
	}
	if k == len(a) || k == len(b) {
		// One is a prefix of the other, in bytes and so in decoded bytes.
		switch {
		case len(a) < len(b):
			return -1
		case len(a) > len(b):
			return 1
		}
		return 0
	}
	if a[k] != '\\' && b[k] != '\\' && bytes.IndexByte(a[:k], '\\') < 0 {
		if a[k] < b[k] {
			return -1
		}
		return 1
	}
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		var x, y byte
		x, i = canonByte(a, i)
		y, j = canonByte(b, j)
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	switch {
	case i < len(a):
		return 1
	case j < len(b):
		return -1
	}
	return 0
}

// canonByte decodes the byte at s[i] of a string in canonical encoding and
// returns it with the index of the next one. Only the escapes that
// appendRune writes can occur.
func canonByte(s []byte, i int) (byte, int) {
	if s[i] != '\\' {
		return s[i], i + 1
	}
	switch s[i+1] {
	case 'b':
		return '\b', i + 2
	case 'f':
		return '\f', i + 2
	case 'n':
		return '\n', i + 2
	case 'r':
		return '\r', i + 2
	case 't':
		return '\t', i + 2
	case 'u': // \u00xx
		return unhex(s[i+4])<<4 | unhex(s[i+5]), i + 6
	}
	return s[i+1], i + 2 // \" or \\
}

// unhex is the value of a hexadecimal digit, or 0xff if b is not one.
func unhex(b byte) byte {
	switch {
	case '0' <= b && b <= '9':
		return b - '0'
	case 'a' <= b && b <= 'f':
		return b - 'a' + 10
	case 'A' <= b && b <= 'F':
		return b - 'A' + 10
	}
	return 0xff
}

// str canonicalises the string at c.pos (which is '"').
func (c *canon) str() bool {
	b := c.body
	i := c.pos + 1
	c.dst = append(c.dst, '"')
	for {
		// Copy the run of bytes that stand for themselves in one go. The
		// body is valid UTF-8, so bytes >= 0x80 need no look.
		run := i
		for i < len(b) && b[i] >= 0x20 && b[i] != '"' && b[i] != '\\' {
			i++
		}
		c.dst = append(c.dst, b[run:i]...)
		if i >= len(b) || b[i] < 0x20 {
			// Unterminated, or a raw control character: RFC 8259 section 7
			// requires those to be escaped.
			return false
		}
		if b[i] == '"' {
			c.pos = i + 1
			c.dst = append(c.dst, '"')
			return true
		}
		// An escape.
		if i+1 >= len(b) {
			return false
		}
		switch e := b[i+1]; e {
		case '"', '\\', '/':
			c.appendRune(rune(e))
			i += 2
		case 'b':
			c.appendRune('\b')
			i += 2
		case 'f':
			c.appendRune('\f')
			i += 2
		case 'n':
			c.appendRune('\n')
			i += 2
		case 'r':
			c.appendRune('\r')
			i += 2
		case 't':
			c.appendRune('\t')
			i += 2
		case 'u':
			r, ok := hex4(b, i+2)
			if !ok {
				return false
			}
			i += 6
			if utf16.IsSurrogate(r) {
				// Only a high surrogate followed by an escaped low one
				// denotes a character; anything else is a lone surrogate.
				if r >= 0xdc00 || i+1 >= len(b) || b[i] != '\\' || b[i+1] != 'u' {
					return false
				}
				lo, ok := hex4(b, i+2)
				if !ok {
					return false
				}
				if r = utf16.DecodeRune(r, lo); r == utf8.RuneError {
					return false
				}
				i += 6
			}
			c.appendRune(r)
		default:
			return false
		}
	}
}

// hex4 decodes the four hexadecimal digits at b[i:].
func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, h := range b[i : i+4] {
		d := unhex(h)
		if d == 0xff {
			return 0, false
		}
		r = r<<4 | rune(d)
	}
	return r, true
}

// appendRune writes r, a character of a decoded string, in the canonical
// string encoding.
func (c *canon) appendRune(r rune) {
	switch {
	case r == '"' || r == '\\':
		c.dst = append(c.dst, '\\', byte(r))
	case r >= 0x20:
		c.dst = utf8.AppendRune(c.dst, r)
	case r == '\b':
		c.dst = append(c.dst, '\\', 'b')
	case r == '\f':
		c.dst = append(c.dst, '\\', 'f')
	case r == '\n':
		c.dst = append(c.dst, '\\', 'n')
	case r == '\r':
		c.dst = append(c.dst, '\\', 'r')
	case r == '\t':
		c.dst = append(c.dst, '\\', 't')
	default:
		const hexDigits = "0123456789abcdef"
		c.dst = append(c.dst, '\\', 'u', '0', '0', hexDigits[r>>4], hexDigits[r&0xf])
	}
}

// expSaturate caps the explicit exponent while it is parsed so that it
// cannot overflow an int64. An exponent that large can never be brought
// back into int32 range by the digit count, which is below 2^48 (no address
// space holds a longer body), so the cap does not change which numbers are
// refused.
const expSaturate = 1 << 59

// number canonicalises the number at c.pos, per RFC 8259 section 6:
// [ minus ] int [ frac ] [ exp ], int = zero / ( digit1-9 *DIGIT ).
func (c *canon) number() bool {
	b := c.body
	i := c.pos
	neg := false
	if b[i] == '-' {
		neg = true
		i++
	}
	intStart := i
	switch {
	case i >= len(b):
		return false
	case b[i] == '0':
		i++ // no leading zeros: "01" ends the number after "0"
	case '1' <= b[i] && b[i] <= '9':
		i = skipDigits(b, i)
	default:
		return false
	}
	intEnd := i
	fracStart, fracEnd := i, i
	if i < len(b) && b[i] == '.' {
		fracStart = i + 1
		i = skipDigits(b, fracStart)
		if i == fracStart {
			return false // "1." has no fraction digits
		}
		fracEnd = i
	}
	var exp int64
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		expNeg := false
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			expNeg = b[i] == '-'
			i++
		}
		expStart := i
		for ; i < len(b) && '0' <= b[i] && b[i] <= '9'; i++ {
			if exp < expSaturate {
				exp = exp*10 + int64(b[i]-'0')
			}
		}
		if i == expStart {
			return false
		}
		if expNeg {
			exp = -exp
		}
	}
	c.pos = i

	// The value is D × 10^(exp - len(frac)) where D is the integer written
	// by the int and frac digits together. Find D's first and last nonzero
	// digits, as body indexes.
	first := -1
	for j := intStart; j < fracEnd; j++ {
		if b[j] != '0' && b[j] != '.' {
			first = j
			break
		}
	}
	if first < 0 {
		c.dst = append(c.dst, '0') // every zero, -0 included
		return true
	}
	last := fracEnd - 1
	for b[last] == '0' || b[last] == '.' {
		last--
	}
	// Trailing zeros dropped from D raise the exponent.
	trailing := fracEnd - 1 - last
	if last < intEnd && fracEnd > fracStart {
		trailing-- // the '.' between last and fracEnd is no digit
	}
	e := exp - int64(fracEnd-fracStart) + int64(trailing)
	if e < math.MinInt32 || e > math.MaxInt32 {
		return false
	}
	if neg {
		c.dst = append(c.dst, '-')
	}
	if first < intEnd && last >= fracStart {
		c.dst = append(c.dst, b[first:intEnd]...)
		c.dst = append(c.dst, b[fracStart:last+1]...)
	} else {
		c.dst = append(c.dst, b[first:last+1]...)
	}
	switch {
	case e == 0:
	case 0 < e && e < 10: // the common short exponents, without strconv
		c.dst = append(c.dst, 'e', '0'+byte(e))
	case -10 < e && e < 0:
		c.dst = append(c.dst, 'e', '-', '0'+byte(-e))
	default:
		c.dst = append(c.dst, 'e')
		c.dst = strconv.AppendInt(c.dst, e, 10)
	}
	return true
}

func skipDigits(b []byte, i int) int {
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	return i
}

// Domain prefixes hashed before the bytes, so that a raw body whose bytes
// happen to be some other body's canonical form gets a different digest.
const (
	prefixCanonical = 'c'
	prefixRaw       = 'r'
)

// rawPrefix is prefixRaw as a slice that hash.Hash.Write can take without
// allocating.
var rawPrefix = [1]byte{prefixRaw}

// BodyDigest is the SHA-256 (crypto/sha256) of the body for the cache key:
// of its canonical form when the body is JSON by its Content-Type
// (application/json, or any */*+json, parameters like charset ignored,
// case-insensitive) or has no Content-Type, and Canonical accepts it;
// else of the raw bytes. A one-byte domain prefix ('c' canonical, 'r' raw)
// is hashed first so a raw digest never equals a canonical one.
//
// A body labelled JSON that Canonical refuses (malformed, duplicate names,
// ...) is hashed raw: it is still a usable key, just without the
// canonical equivalences. A JSON-labelled body with a charset other than
// UTF-8 is not valid UTF-8 in general and so ends up hashed raw too.
func BodyDigest(contentType, body []byte) [32]byte {
	d := digestPool.Get().(*digester)
	defer d.release()
	if isJSONType(contentType) {
		d.buf = append(d.buf[:0], prefixCanonical)
		out, ok := Canonical(d.buf, body)
		d.buf = out // keep any growth for the next call
		if ok {
			return sha256.Sum256(out)
		}
	}
	// Raw: stream the bytes through a hasher rather than copying a
	// possibly large body behind the prefix.
	d.h.Reset()
	d.h.Write(rawPrefix[:])
	d.h.Write(body)
	var sum [32]byte
	d.buf = d.h.Sum(d.buf[:0])
	copy(sum[:], d.buf)
	return sum
}

// digester is BodyDigest's pooled scratch.
type digester struct {
	buf []byte
	h   hash.Hash
}

var digestPool = sync.Pool{New: func() any {
	return &digester{buf: make([]byte, 0, 1024), h: sha256.New()}
}}

func (d *digester) release() {
	if cap(d.buf) > maxPooledBytes {
		d.buf = make([]byte, 0, 1024)
	}
	digestPool.Put(d)
}

// isJSONType reports whether a Content-Type header value names JSON:
// application/json or a structured syntax suffix type */*+json (RFC 6839),
// in any case, with any parameters; an empty (or blank) value counts as
// JSON too, since clients often omit the header on JSON APIs.
func isJSONType(ct []byte) bool {
	if i := bytes.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = bytes.Trim(ct, " \t")
	if len(ct) == 0 {
		return true
	}
	slash := bytes.IndexByte(ct, '/')
	if slash <= 0 {
		return false
	}
	typ, sub := ct[:slash], ct[slash+1:]
	if bytes.EqualFold(typ, []byte("application")) && bytes.EqualFold(sub, []byte("json")) {
		return true
	}
	const suffix = "+json"
	return len(sub) > len(suffix) && bytes.EqualFold(sub[len(sub)-len(suffix):], []byte(suffix))
}
