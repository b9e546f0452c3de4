package worker

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/valyala/fasthttp"
)

// requestError is an error with the status to answer: a problem with the
// client's request (4xx) and a message that names what is wrong. Every
// error the decoders return is one. The one 500 is internalError, for a
// broken invariant of the worker's own.
type requestError struct {
	status int
	msg    string
}

func (e *requestError) Error() string { return e.msg }

func badRequest(format string, args ...any) *requestError {
	return &requestError{status: fasthttp.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

// internalError is a bug of the worker's, not the client's: 500.
func internalError(err error) *requestError {
	return &requestError{status: fasthttp.StatusInternalServerError, msg: "internal error: " + err.Error()}
}

// statusOf returns the status and message an error is answered with.
func statusOf(err error) (int, string) {
	var re *requestError
	if errors.As(err, &re) {
		return re.status, re.msg
	}
	return fasthttp.StatusBadRequest, err.Error()
}

// writeError answers {"error": msg}, the error object of the Open
// Inference Protocol, used by every endpoint of the worker.
func writeError(ctx *fasthttp.RequestCtx, status int, msg string) {
	ctx.SetStatusCode(status)
	ctx.SetContentType(contentJSON)
	b := make([]byte, 0, len(msg)+16)
	b = append(b, `{"error":`...)
	b = appendJSONString(b, msg)
	b = append(b, '}')
	ctx.SetBody(b)
}

// appendJSONString appends s as a JSON string. Plain ASCII is copied as
// it is; anything else goes through encoding/json, which escapes control
// characters and replaces invalid UTF-8 (messages quote what clients sent).
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, err := json.Marshal(s)
			if err != nil { // cannot happen for a string
				return append(b, `""`...)
			}
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// fieldShapes says, per JSON field path as encoding/json reports it
// ("inputs.shape"), what the field should hold; jsonError uses it to turn
// a type mismatch into a sentence.
type fieldShapes map[string]string

// jsonError turns an encoding/json error into a requestError that a
// client can act on.
func jsonError(err error, shapes fieldShapes, keys string) *requestError {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return badRequest("empty body: want a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("invalid JSON: the body ends inside a value")
	case errors.As(err, &syntax):
		return badRequest("invalid JSON at byte %d: %s", syntax.Offset, strings.TrimPrefix(syntax.Error(), "json: "))
	case errors.As(err, &typ):
		found := describeJSONKind(typ.Value)
		if typ.Field == "" {
			return badRequest("the body must be a JSON object, not %s", found)
		}
		if want, ok := shapes[typ.Field]; ok {
			return badRequest("%q must be %s, found %s", typ.Field, want, found)
		}
		return badRequest("%q has the wrong type: found %s", typ.Field, found)
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return badRequest("unknown key %s: %s", name, keys)
	}
	return badRequest("invalid JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
}

// describeJSONKind names the kinds encoding/json reports in
// UnmarshalTypeError.Value ("number", "string", "bool", "array",
// "object", or "number 1e999" for a number the target cannot hold).
func describeJSONKind(v string) string {
	switch v {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "array":
		return "an array"
	case "object":
		return "an object"
	case "number":
		return "a number"
	}
	if lit, ok := strings.CutPrefix(v, "number "); ok {
		return "the number " + lit
	}
	return v
}
