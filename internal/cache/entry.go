package cache

import (
	"encoding/binary"
	"errors"
	"time"
)

// Entry is one cached answer: the worker's 200 response headers and body,
// with the route and pool it belongs to (for purges) and when it was
// stored. An entry is immutable once built; hits hand its bytes to the
// client without copying.
type Entry struct {
	Route, Pool string
	Stored      time.Time
	Expires     time.Time
	// data holds the headers, each as uvarint-length-prefixed name and
	// value, after a uvarint count; then the body. The same bytes go to
	// Redis for a shared cache.
	data    []byte
	bodyAt  int
	headers int
}

// entryOverhead is what an entry costs besides its data: the struct, the
// cache's node and map slot. It is counted against max_bytes with the
// data, so many small entries cannot pass the bound.
const entryOverhead = 160

// NewEntry builds an entry from response headers (name/value pairs, in
// order) and body.
func NewEntry(route, pool string, headers [][2][]byte, body []byte, stored time.Time, ttl time.Duration) *Entry {
	n := binary.MaxVarintLen64 + len(body)
	for _, h := range headers {
		n += 2*binary.MaxVarintLen64 + len(h[0]) + len(h[1])
	}
	data := make([]byte, 0, n)
	data = binary.AppendUvarint(data, uint64(len(headers)))
	for _, h := range headers {
		data = binary.AppendUvarint(data, uint64(len(h[0])))
		data = append(data, h[0]...)
		data = binary.AppendUvarint(data, uint64(len(h[1])))
		data = append(data, h[1]...)
	}
	e := &Entry{Route: route, Pool: pool, Stored: stored, Expires: stored.Add(ttl), data: data, bodyAt: len(data), headers: len(headers)}
	e.data = append(e.data, body...)
	return e
}

// Body is the cached response body.
func (e *Entry) Body() []byte { return e.data[e.bodyAt:] }

// Headers calls fn with each cached header in order.
func (e *Entry) Headers(fn func(name, value []byte)) {
	b := e.data
	_, n := binary.Uvarint(b)
	b = b[n:]
	for range e.headers {
		name, rest := field(b)
		value, rest := field(rest)
		fn(name, value)
		b = rest
	}
}

// field reads one uvarint-length-prefixed field; the data was written by
// NewEntry or checked by decodeEntry.
func field(b []byte) ([]byte, []byte) {
	l, n := binary.Uvarint(b)
	return b[n : n+int(l)], b[n+int(l):]
}

// Size is what the entry counts against max_bytes.
func (e *Entry) Size() int { return len(e.data) + len(e.Route) + len(e.Pool) + entryOverhead }

// Shared entries in Redis are a version byte, the stored and expiry times
// in unix milliseconds, and the data.
const sharedVersion = 1

// encode is the entry as Redis keeps it.
func (e *Entry) encode() []byte {
	b := make([]byte, 0, 17+len(e.data))
	b = append(b, sharedVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(e.Stored.UnixMilli()))
	b = binary.BigEndian.AppendUint64(b, uint64(e.Expires.UnixMilli()))
	return append(b, e.data...)
}

var errBadEntry = errors.New("cache: malformed shared entry")

// decodeEntry reads what encode wrote, checking every length: Redis is
// shared, and a value another program wrote must not crash the gateway.
func decodeEntry(route, pool string, b []byte) (*Entry, error) {
	if len(b) < 17 || b[0] != sharedVersion {
		return nil, errBadEntry
	}
	e := &Entry{
		Route: route, Pool: pool,
		Stored:  time.UnixMilli(int64(binary.BigEndian.Uint64(b[1:9]))),
		Expires: time.UnixMilli(int64(binary.BigEndian.Uint64(b[9:17]))),
		data:    b[17:],
	}
	rest := e.data
	count, n := binary.Uvarint(rest)
	if n <= 0 || count > uint64(len(rest)) {
		return nil, errBadEntry
	}
	rest = rest[n:]
	for range 2 * count {
		l, n := binary.Uvarint(rest)
		if n <= 0 || l > uint64(len(rest)-n) {
			return nil, errBadEntry
		}
		rest = rest[n+int(l):]
	}
	e.headers = int(count)
	e.bodyAt = len(e.data) - len(rest)
	return e, nil
}
