package proxy

import (
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sluice-gw/sluice/internal/metrics"
)

// Failure is an answer the gateway gives itself, with the status and code
// of SPEC section 3. Every error a request can meet becomes one of these
// here, and nowhere else.
type Failure struct {
	Status  int
	Code    string
	Message string
}

// The gateway's own answers.
var (
	FailBadRequest      = Failure{400, "bad_request", "malformed HTTP request"}
	FailNoRoute         = Failure{404, "no_route", "no route matches this request"}
	FailRequestTimeout  = Failure{408, "request_timeout", "the request did not arrive in time"}
	FailBodyTooLarge    = Failure{413, "body_too_large", "request body is larger than this route accepts"}
	FailURITooLong      = Failure{414, "uri_too_long", "the request line is longer than max_header_bytes"}
	FailRateLimited     = Failure{429, "rate_limited", "too many requests; retry after the time in Retry-After"}
	FailHeadersTooLarge = Failure{431, "headers_too_large", "request headers are too large"}
	FailTooManyHeaders  = Failure{431, "headers_too_large", "request has too many header fields"}
	FailUpstreamError   = Failure{502, "upstream_error", "the model worker failed or answered garbage"}
	FailConnectError    = Failure{502, "upstream_error", "could not connect to the model worker"}
	FailUnavailable     = Failure{503, "unavailable", "no backend is available for this route"}
	FailNoFreeConn      = Failure{503, "unavailable", "every connection to the model worker is busy"}
	FailOverCapacity    = Failure{503, "unavailable", "the route has as many requests in progress as it accepts"}
	FailUpstreamTimeout = Failure{504, "upstream_timeout", "the model worker did not answer in time"}
)

// retryAfterSeconds is what a 503 tells clients to wait.
const retryAfterSeconds = 1

// clientFailure maps an error from reading the client's request, as the
// fasthttp server reports it, to the gateway's answer.
func clientFailure(err error) Failure {
	var small *fasthttp.ErrSmallBuffer
	var netErr net.Error
	switch {
	case errors.As(err, &small):
		if requestLineTooLong(small) {
			return FailURITooLong
		}
		return FailHeadersTooLarge
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		return FailBodyTooLarge
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return FailRequestTimeout
	}
	return FailBadRequest
}

// requestLineTooLong tells, as well as fasthttp lets us, a request line
// that alone overflows the read buffer (max_header_bytes) from a header
// block that does: RFC 9112 3 wants 414 for the first, RFC 6585 5 431 for
// the second, and nginx answers so. fasthttp reports both as one
// ErrSmallBuffer and resets the parsed header before the error handler
// runs; what is left is the error text, which quotes the buffer's first
// and last 200 bytes (Server.SecureErrorLogMessage must stay off). With
// no line end in either, the request line has not ended within them: 414.
// A request line of 200 bytes or more followed by too many header bytes
// is answered 414 too; TestEdgeRejects guards the text's format.
func requestLineTooLong(small *fasthttp.ErrSmallBuffer) bool {
	msg := small.Error()
	i := strings.Index(msg, "contents: ")
	if i < 0 {
		return false
	}
	msg = msg[i+len("contents: "):]
	for len(msg) > 0 && msg[0] == '"' {
		q, err := strconv.QuotedPrefix(msg)
		if err != nil {
			return false
		}
		if s, err := strconv.Unquote(q); err != nil || strings.IndexByte(s, '\n') >= 0 {
			return false
		}
		msg = strings.TrimPrefix(msg[len(q):], "...")
	}
	return true
}

// upstreamFailure maps an error from one attempt to the client's answer
// and the attempt's outcome label.
func upstreamFailure(err error) (Failure, string) {
	var opErr *net.OpError
	switch {
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		return FailNoFreeConn, metrics.OutcomeNoConn
	case errors.Is(err, fasthttp.ErrDialTimeout),
		errors.Is(err, syscall.ECONNREFUSED),
		errors.As(err, &opErr) && opErr.Op == "dial":
		return FailConnectError, metrics.OutcomeConnectError
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, os.ErrDeadlineExceeded):
		return FailUpstreamTimeout, metrics.OutcomeTimeout
	}
	return FailUpstreamError, metrics.OutcomeBadResponse
}

// unavailableError is a request that found no backend to try: every one
// of its pool (and of the route's fallback) is down, unhealthy, ejected
// or behind an open breaker. retryAfter is when the first of them may be
// back, or 0 when nothing says.
type unavailableError struct{ retryAfter time.Duration }

func (e *unavailableError) Error() string { return "no backend is available" }

// unavailable builds the error for a variant's pool and the route's
// fallback (nil when none).
func unavailable(pool *Pool, fallback *Variant) error {
	d := pool.retryAfter()
	if fallback != nil {
		if f := fallback.Pool.retryAfter(); f > 0 && (d == 0 || f < d) {
			d = f
		}
	}
	return &unavailableError{retryAfter: d}
}

// failureOf maps what try returned to the client's answer.
func failureOf(err error) Failure {
	if _, ok := err.(*unavailableError); ok {
		return FailUnavailable
	}
	f, _ := upstreamFailure(err)
	return f
}

// retryAfterOf is how long a 503 should tell the client to wait, when
// more is known than the default second.
func retryAfterOf(err error) time.Duration {
	if u, ok := err.(*unavailableError); ok {
		return u.retryAfter
	}
	return 0
}

// writeFailure replaces whatever response was under way with the JSON
// error body of SPEC section 3.
func writeFailure(ctx *fasthttp.RequestCtx, f Failure, requestID []byte) {
	resp := &ctx.Response
	resp.Reset()
	resp.SetStatusCode(f.Status)
	resp.Header.SetContentType("application/json")
	if f.Status == fasthttp.StatusServiceUnavailable {
		resp.Header.Set("Retry-After", strconv.Itoa(retryAfterSeconds))
	}
	if len(requestID) > 0 {
		resp.Header.SetBytesV(headerRequestID, requestID)
	}
	var buf [256]byte
	b := append(buf[:0], `{"error":{"code":`...)
	b = appendJSONString(b, f.Code)
	b = append(b, `,"message":`...)
	b = appendJSONString(b, f.Message)
	b = append(b, `,"request_id":`...)
	b = appendJSONString(b, string(requestID))
	b = append(b, "}}\n"...)
	resp.SetBody(b)
}

// appendJSONString quotes s as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}
