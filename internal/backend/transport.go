package backend

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http/httputil"
	"sync"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// BufferLimit is the largest answer a round trip reads into memory before
// handing it on. Larger ones, answers of unknown length (chunked,
// close-delimited) and server-sent events are streamed to the client as
// they arrive, holding the upstream connection until the client has them
// (nginx likewise buffers answers up to its proxy buffers and streams the
// rest).
const BufferLimit = 64 << 10

// Transport is the connection pool to one backend and the round trip over
// it. fasthttp's HostClient keeps the pool (dial, idle connections,
// max_conns and the wait for a free one); the round trip is the gateway's
// own, so that a proxied answer costs no allocation: a small answer with
// a Content-Length is read into the response's own buffer and the
// connection goes back to the pool before the client is written to.
type Transport struct {
	hc *fasthttp.HostClient
}

func newTransport(addr string, s Settings) *Transport {
	return &Transport{hc: &fasthttp.HostClient{
		Addr:                     addr,
		NoDefaultUserAgentHeader: true,
		MaxConns:                 s.MaxConns,
		MaxConnWaitTimeout:       s.Timeout,
		MaxIdleConnDuration:      30 * time.Second,
		ReadBufferSize:           16 << 10,
		// Paths are sent as the gateway rewrote them.
		DisablePathNormalizing: true,
	}}
}

// CloseIdleConnections closes the pooled connections no request is using.
func (t *Transport) CloseIdleConnections() { t.hc.CloseIdleConnections() }

// OpenConns is the number of connections open to the backend, idle in the
// pool or carrying a request.
func (t *Transport) OpenConns() int { return t.hc.ConnsCount() }

// Do sends req over one pooled connection and reads the answer into resp,
// all before deadline: waiting for a free connection, dialing, writing,
// and reading the answer (a streamed body too, as it is read). It makes
// one attempt; retrying on another backend is the caller's decision.
// Response header names are normalised, so that hop-by-hop removal
// matches any case.
//
// One failure it handles itself, as Go's net/http client and nginx's
// upstream keepalive do: a keep-alive connection the backend closed while
// it sat idle in the pool (a worker whose keep-alive timeout is shorter
// than the pool's, or one that restarted). A connection idle for
// checkIdleAfter or longer is checked before it is used again, and one
// closed meanwhile is dropped for the next. A request that still meets a
// closed one (the backend closed it between the check and the write), so
// that not a byte of the answer came back, is sent again on another
// connection when sending it twice is safe (Replayable).
func (t *Transport) Do(req *fasthttp.Request, resp *fasthttp.Response, deadline time.Time) error {
	for resent := 0; ; resent++ {
		stale, err := t.roundTrip(req, resp, deadline)
		if !stale || resent == maxResend || !Replayable(req) {
			return err
		}
	}
}

// maxResend bounds how often one request is sent again after meeting a
// connection the backend had closed.
const maxResend = 2

// checkIdleAfter is how long a pooled connection may sit idle before it is
// checked for having been closed by the backend. Under load connections
// are reused within microseconds and never checked; the check is one
// non-blocking system call.
const checkIdleAfter = 100 * time.Millisecond

// roundTrip is one try of Do. stale reports a failure on a connection
// taken from the pool before any byte of the answer was read: the backend
// had closed it.
func (t *Transport) roundTrip(req *fasthttp.Request, resp *fasthttp.Response, deadline time.Time) (stale bool, err error) {
	timeout := time.Until(deadline)
	if timeout <= 0 {
		return false, fasthttp.ErrTimeout
	}
	resp.Reset()
	resp.Header.SetNoDefaultContentType(true)
	req.URI().DisablePathNormalizing = true

	cc, err := t.hc.AcquireConn(timeout, req.ConnectionClose())
	for err == nil && closedWhileIdle(cc.LastUseTime(), cc.Conn()) {
		t.hc.CloseConn(cc)
		cc, err = t.hc.AcquireConn(time.Until(deadline), req.ConnectionClose())
	}
	if err != nil {
		return false, err
	}
	reused := !cc.LastUseTime().IsZero()
	conn := cc.Conn()
	if err := conn.SetDeadline(deadline); err != nil {
		t.hc.CloseConn(cc)
		return false, err
	}
	bw := t.hc.AcquireWriter(conn)
	err = req.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	t.hc.ReleaseWriter(bw)
	if err != nil {
		t.hc.CloseConn(cc)
		err = timeoutErr(err)
		return reused && err != fasthttp.ErrTimeout, err
	}

	br := t.hc.AcquireReader(conn)
	if err := readHeader(br, resp); err != nil {
		t.hc.ReleaseReader(br)
		t.hc.CloseConn(cc)
		return reused && err == io.EOF, readErr(err)
	}
	keep := !req.ConnectionClose() && !resp.ConnectionClose()
	n := resp.Header.ContentLength()
	switch {
	case req.Header.IsHead() || noBody(resp.StatusCode()):
		resp.SkipBody = true
	case n >= 0 && n <= BufferLimit && !eventStream(resp):
		if err := resp.ReadBody(br, BufferLimit); err != nil {
			t.hc.ReleaseReader(br)
			t.hc.CloseConn(cc)
			return false, readErr(err)
		}
	default:
		s := openStream(t.hc, cc, (*fasthttp.HostClient).ReleaseConn, (*fasthttp.HostClient).CloseConn, br, n, keep)
		resp.SetBodyStream(s, n)
		return false, nil // the stream hands the connection back once read
	}
	t.hc.ReleaseReader(br)
	if keep {
		t.hc.ReleaseConn(cc)
	} else {
		t.hc.CloseConn(cc)
	}
	return false, nil
}

// closedWhileIdle reports whether a connection taken from the pool, last
// used at lastUse (zero: just dialed), has been idle long enough to be
// checked and turns out to be unusable: the backend closed it, reset it,
// or sent something nobody asked for.
func closedWhileIdle(lastUse time.Time, c net.Conn) bool {
	if lastUse.IsZero() || time.Since(lastUse) < checkIdleAfter {
		return false
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false // not a socket the check can peek into (TLS)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	var buf [1]byte
	var n int
	var peekErr error
	if err := raw.Read(func(fd uintptr) bool {
		n, _, peekErr = syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true // one look, never wait
	}); err != nil {
		return true
	}
	return peekErr != syscall.EAGAIN && peekErr != syscall.EWOULDBLOCK || n > 0
}

// Replayable reports whether a request may be sent again after a
// connection failed under it: its method is idempotent, or it carries an
// Idempotency-Key (the IETF httpapi draft's header), and its body is in
// memory rather than a stream already consumed.
func Replayable(req *fasthttp.Request) bool {
	return !req.IsBodyStream() && (Idempotent(req.Header.Method()) || len(req.Header.Peek("Idempotency-Key")) > 0)
}

// Idempotent reports whether a method may be sent twice with the effect of
// once (RFC 9110 section 9.2.2).
func Idempotent(method []byte) bool {
	switch string(method) {
	case "GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE":
		return true
	}
	return false
}

// readHeader reads the final answer's header, skipping interim (1xx)
// answers other than 101, at most a few of them.
// io.EOF means not a byte of an answer came back.
func readHeader(br *bufio.Reader, resp *fasthttp.Response) error {
	for i := range maxInterim + 1 {
		if err := resp.Header.Read(br); err != nil {
			if err == io.EOF && i > 0 {
				return io.ErrUnexpectedEOF // after an interim answer
			}
			return err
		}
		if code := resp.StatusCode(); code < 100 || code > 199 || code == fasthttp.StatusSwitchingProtocols {
			return nil
		}
	}
	return errTooManyInterim
}

const maxInterim = 8

var errTooManyInterim = errors.New("too many interim (1xx) answers")

// noBody reports whether an answer with this status never has a body
// (RFC 9110 6.4.1).
func noBody(code int) bool {
	return code < 200 || code == fasthttp.StatusNoContent || code == fasthttp.StatusNotModified
}

// eventStream reports whether the answer is server-sent events, which are
// streamed whatever their length says.
func eventStream(resp *fasthttp.Response) bool {
	return bytes.HasPrefix(resp.Header.ContentType(), []byte("text/event-stream"))
}

// timeoutErr maps a write that ran out of time to fasthttp.ErrTimeout, as
// fasthttp's own client does.
func timeoutErr(err error) error {
	if t, ok := err.(interface{ Timeout() bool }); ok && t.Timeout() {
		return fasthttp.ErrTimeout
	}
	return err
}

// readErr maps a connection the backend closed before answering to
// fasthttp.ErrConnectionClosed, as fasthttp's own client does.
func readErr(err error) error {
	if err == io.EOF {
		return fasthttp.ErrConnectionClosed
	}
	return err
}

// stream is a streamed answer's body: it reads from the upstream
// connection and gives it back to the pool when closed, or closes it when
// the body was not read to its end. fasthttp closes it once the client
// has the body (or could not be written to). C is the pool's connection
// type, which fasthttp does not export.
type stream[C any] struct {
	hc      *fasthttp.HostClient
	cc      C
	release func(*fasthttp.HostClient, C) // hands cc back to the pool
	discard func(*fasthttp.HostClient, C) // closes cc
	br      *bufio.Reader
	r       io.Reader // the body: limited, chunked or to EOF
	limited io.LimitedReader
	chunked bool // the body ends with a trailer section
	keep    bool // the connection may carry another request once the body is read
	done    bool // the body was read to its end
}

var streamPool sync.Pool

// openStream starts reading a body of n bytes (-1 chunked, -2 until the
// backend closes) from br, over cc.
func openStream[C any](hc *fasthttp.HostClient, cc C, release, discard func(*fasthttp.HostClient, C), br *bufio.Reader, n int, keep bool) *stream[C] {
	s, _ := streamPool.Get().(*stream[C])
	if s == nil {
		s = new(stream[C])
	}
	*s = stream[C]{hc: hc, cc: cc, release: release, discard: discard, br: br, keep: keep}
	switch {
	case n >= 0:
		s.limited = io.LimitedReader{R: br, N: int64(n)}
		s.r = &s.limited
	case n == -1:
		s.r, s.chunked = httputil.NewChunkedReader(br), true
	default:
		s.r, s.keep = br, false // close-delimited: the connection ends with it
	}
	return s
}

func (s *stream[C]) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err == io.EOF && !s.done {
		s.done = true
		// The chunked reader stops at the last chunk; what follows it on
		// the wire, up to an empty line, is still this answer's. Left
		// unread it would be taken for the start of the next answer on
		// this connection.
		if s.chunked && skipTrailer(s.br) != nil {
			s.keep = false
		}
	}
	return n, err
}

// maxTrailerLines bounds the trailer section skipped after a chunked body.
const maxTrailerLines = 64

// skipTrailer reads the trailer section that ends a chunked body, up to
// and including its empty line (RFC 9112 section 7.1.2). Trailers are not
// forwarded.
func skipTrailer(br *bufio.Reader) error {
	for range maxTrailerLines {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			return nil
		}
	}
	return errLongTrailer
}

var errLongTrailer = errors.New("trailer section too long")

// Close hands the connection back, or closes it when the body was not read
// through or the connection cannot carry another request.
func (s *stream[C]) Close() error {
	if s.hc == nil {
		return nil
	}
	if s.limited.R != nil && s.limited.N == 0 {
		s.done = true // the exact length was read; EOF was never asked for
	}
	s.hc.ReleaseReader(s.br)
	if s.done && s.keep {
		s.release(s.hc, s.cc)
	} else {
		s.discard(s.hc, s.cc)
	}
	*s = stream[C]{}
	streamPool.Put(s)
	return nil
}
