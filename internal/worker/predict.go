package worker

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// schema is what decoding needs to know of the model: its features in
// input order and the batch limit.
type schema struct {
	features []string
	index    map[string]int // feature name -> position
	list     string         // "sepal_length, sepal_width, ..." for messages
	maxBatch int
}

func newSchema(features []string, maxBatch int) *schema {
	idx := make(map[string]int, len(features))
	for i, f := range features {
		idx[f] = i
	}
	return &schema{features: features, index: idx, list: strings.Join(features, ", "), maxBatch: maxBatch}
}

// batch is a decoded request: rows of len(features) values each, flat in
// row-major order.
type batch struct {
	values []float64
	rows   int
	single bool   // the client sent "input": answer with the singular shape
	key    string // what the client called the rows, for messages: "input", "inputs", "data", "rows"
}

// rowName names row r for a message: "input", "inputs[3]".
func (b *batch) rowName(r int) string {
	if b.single {
		return b.key
	}
	return fmt.Sprintf("%s[%d]", b.key, r)
}

// predictRequest is the body of POST /predict. Exactly one field is set.
type predictRequest struct {
	Input  []number            `json:"input"`
	Inputs [][]number          `json:"inputs"`
	Data   []map[string]number `json:"data"`
}

var predictShapes = fieldShapes{
	"input":  "an array of numbers (one row)",
	"inputs": "an array of rows, each an array of numbers",
	"data":   "an array of objects that map feature names to numbers",
}

const predictKeys = `the body holds one of "input" (one row), "inputs" (rows) or "data" (records)`

// number is one feature value as the client sent it. Its decoder never
// fails, so that encoding/json fills the whole request and the validation
// that follows can say where the bad value is (inputs[3][1]) and what it
// was; a value that is not a finite number keeps its literal in bad.
type number struct {
	v   float64
	bad string
}

// UnmarshalJSON gets every value in a feature position, null included
// (encoding/json hands null to an Unmarshaler), already checked to be
// valid JSON.
func (n *number) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && (b[0] == '-' || ('0' <= b[0] && b[0] <= '9')) {
		f, err := strconv.ParseFloat(string(b), 64)
		if err == nil && !math.IsInf(f, 0) {
			n.v, n.bad = f, ""
			return nil
		}
	}
	n.v, n.bad = 0, describeLiteral(b)
	return nil
}

// describeLiteral says what a JSON value is, for "inputs[0][2] is ...":
// the only values that reach it are not finite float64 numbers.
func describeLiteral(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return "empty, not a number"
	}
	switch b[0] {
	case '"':
		var s string
		_ = json.Unmarshal(b, &s)
		desc := "the string " + quoteShort(s) + ", not a number"
		switch strings.ToLower(strings.TrimLeft(strings.TrimSpace(s), "+-")) {
		case "nan", "inf", "infinity":
			desc += " (NaN and infinities are not valid inputs)"
		}
		return desc
	case 'n':
		return "null, not a number"
	case 't', 'f':
		return "a boolean, not a number"
	case '[':
		return "an array, not a number"
	case '{':
		return "an object, not a number"
	}
	return shorten(string(b)) + ", which is out of range for a 64-bit float"
}

// quoteShort quotes s for a message, cut to a length a log line can hold.
func quoteShort(s string) string { return strconv.Quote(shorten(s)) }

func shorten(s string) string {
	const max = 40
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}

// decodePredict reads a /predict body into a batch, appending the values
// to dst[:0]. Every error is a *requestError with status 400.
func decodePredict(body []byte, sc *schema, dst []float64) (batch, error) {
	var req predictRequest
	if err := decodeStrict(body, &req, predictShapes, predictKeys); err != nil {
		return batch{}, err
	}
	given := make([]string, 0, 3)
	if req.Input != nil {
		given = append(given, `"input"`)
	}
	if req.Inputs != nil {
		given = append(given, `"inputs"`)
	}
	if req.Data != nil {
		given = append(given, `"data"`)
	}
	switch len(given) {
	case 0:
		return batch{}, badRequest("no input: %s", predictKeys)
	case 1:
	default:
		return batch{}, badRequest("%s are given together: send only one of them", strings.Join(given, " and "))
	}

	nf := len(sc.features)
	switch {
	case req.Input != nil:
		vals, err := appendRow(dst[:0], req.Input, position{"input", -1}, sc)
		return batch{values: vals, rows: 1, single: true, key: "input"}, err

	case req.Inputs != nil:
		if err := sc.checkRows(len(req.Inputs), "inputs"); err != nil {
			return batch{}, err
		}
		vals := dst[:0]
		for i, row := range req.Inputs {
			var err error
			if vals, err = appendRow(vals, row, position{"inputs", i}, sc); err != nil {
				return batch{}, err
			}
		}
		return batch{values: vals, rows: len(req.Inputs), key: "inputs"}, nil

	default:
		if err := sc.checkRows(len(req.Data), "data"); err != nil {
			return batch{}, err
		}
		vals := dst[:0]
		for i, rec := range req.Data {
			where := position{"data", i}
			if rec == nil {
				return batch{}, badRequest("%s is null: want an object of %d features (%s)", where, nf, sc.list)
			}
			if hasUnknown(rec, sc) {
				return batch{}, unknownFeatures(rec, sc, where)
			}
			for _, f := range sc.features {
				n, ok := rec[f]
				if !ok {
					return batch{}, badRequest("%s lacks feature %q: want all of %s", where, f, sc.list)
				}
				if n.bad != "" {
					return batch{}, badRequest("%s.%s is %s", where, f, n.bad)
				}
				vals = append(vals, n.v)
			}
		}
		return batch{values: vals, rows: len(req.Data), key: "data"}, nil
	}
}

func hasUnknown(rec map[string]number, sc *schema) bool {
	for name := range rec {
		if _, ok := sc.index[name]; !ok {
			return true
		}
	}
	return false
}

// unknownFeatures names every unknown key of a record, sorted, so that
// the message is the same for the same body whatever the map order.
func unknownFeatures(rec map[string]number, sc *schema, where position) error {
	var unknown []string
	for name := range rec {
		if _, ok := sc.index[name]; !ok {
			unknown = append(unknown, quoteShort(name))
		}
	}
	slices.Sort(unknown)
	if len(unknown) > 5 {
		unknown = append(unknown[:5], fmt.Sprintf("and %d more", len(unknown)-5))
	}
	what := "feature"
	if len(unknown) > 1 {
		what = "features"
	}
	return badRequest("%s has unknown %s %s: the features are %s", where, what, strings.Join(unknown, ", "), sc.list)
}

// position names a row for messages: "input", "inputs[3]". It is
// formatted only when there is an error to report.
type position struct {
	key   string
	index int // -1 for the single row of "input"
}

func (p position) String() string {
	if p.index < 0 {
		return p.key
	}
	return p.key + "[" + strconv.Itoa(p.index) + "]"
}

// checkRows checks a batch size against the limit.
func (sc *schema) checkRows(n int, key string) error {
	switch {
	case n == 0:
		return badRequest("%q is an empty batch: want 1 to %d rows", key, sc.maxBatch)
	case n > sc.maxBatch:
		return badRequest("%q has %d rows, over the limit of %d per request", key, n, sc.maxBatch)
	}
	return nil
}

// appendRow checks one row of values and appends it to dst. A value that
// is not a number is reported before a wrong count, because it usually
// explains the count: {"input":[[...]]} is a batch sent as one row.
func appendRow(dst []float64, row []number, where position, sc *schema) ([]float64, error) {
	nf := len(sc.features)
	for j, n := range row {
		if n.bad == "" {
			continue
		}
		name := ""
		if j < nf {
			name = " (" + sc.features[j] + ")"
		}
		hint := ""
		if where.index < 0 && strings.HasPrefix(n.bad, "an array") {
			hint = `: several rows go in "inputs"`
		}
		return dst, badRequest("%s[%d]%s is %s%s", where, j, name, n.bad, hint)
	}
	switch {
	case row == nil:
		return dst, badRequest("%s is null: want %d numbers (%s)", where, nf, sc.list)
	case len(row) == 0:
		return dst, badRequest("%s is empty: want %d numbers (%s)", where, nf, sc.list)
	case len(row) != nf:
		return dst, badRequest("%s has %d values, want %d (%s)", where, len(row), nf, sc.list)
	}
	for _, n := range row {
		dst = append(dst, n.v)
	}
	return dst, nil
}

// decodeStrict decodes one JSON value into v: unknown keys are errors,
// and so is anything but white space after the value.
func decodeStrict(body []byte, v any, shapes fieldShapes, keys string) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err, shapes, keys)
	}
	if off := dec.InputOffset(); len(bytes.TrimSpace(body[off:])) != 0 {
		return badRequest("invalid JSON: unexpected data after the top-level value at byte %d", off)
	}
	return nil
}
