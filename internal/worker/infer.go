package worker

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"
)

// The Open Inference Protocol (KServe v2) REST API, as its document
// defines it: https://github.com/kserve/open-inference-protocol
// (specification/protocol/inference_rest.md) and the earlier
// https://github.com/kserve/kserve/blob/master/docs/predict-api/v2/required_api.md.

// inferRequest is $inference_request.
type inferRequest struct {
	ID         string            `json:"id"`
	Parameters json.RawMessage   `json:"parameters"`
	Inputs     []inferInput      `json:"inputs"`
	Outputs    []requestedOutput `json:"outputs"`
}

// inferInput is $request_input.
type inferInput struct {
	Name       string          `json:"name"`
	Shape      []int64         `json:"shape"`
	Datatype   string          `json:"datatype"`
	Parameters json.RawMessage `json:"parameters"`
	Data       tensorData      `json:"data"`
}

// requestedOutput is $request_output.
type requestedOutput struct {
	Name       string          `json:"name"`
	Parameters json.RawMessage `json:"parameters"`
}

var inferShapes = fieldShapes{
	"id":                "a string",
	"inputs":            "an array of input tensors (objects)",
	"inputs.name":       "a string",
	"inputs.shape":      "an array of non-negative integers",
	"inputs.datatype":   `a string such as "FP32"`,
	"outputs":           `an array of objects such as {"name":"probabilities"}`,
	"outputs.name":      "a string",
	"parameters":        "an object",
	"inputs.parameters": "an object",
}

const inferKeys = `an inference request holds "id", "parameters", "inputs" and "outputs"; ` +
	`an input "name", "shape", "datatype", "parameters" and "data"; an output "name" and "parameters"`

// Output tensors the worker produces.
type outputKind uint8

const (
	outPredictions outputKind = iota
	outProbabilities
	outConfidences
	outLabel // the predictions under the name "label"
)

var outputNames = [...]string{
	outPredictions:   "predictions",
	outProbabilities: "probabilities",
	outConfidences:   "confidences",
	outLabel:         "label",
}

// defaultOutputs are returned when the request names none: every output
// the model metadata lists ("label" is an alias, so not listed).
var defaultOutputs = []outputKind{outPredictions, outProbabilities, outConfidences}

// inferBatch is a decoded inference request.
type inferBatch struct {
	batch
	id      string
	fp64    bool // answer floats as FP64 (the input was FP64)
	outputs []outputKind
}

// dtype is a tensor datatype this worker accepts for its input.
type dtype struct {
	float    bool
	bits     int     // 32 or 64 for floats
	min, max float64 // integer range: min <= v < max
}

var inputTypes = map[string]dtype{
	"FP32":   {float: true, bits: 32},
	"FP64":   {float: true, bits: 64},
	"INT8":   {min: math.MinInt8, max: math.MaxInt8 + 1},
	"INT16":  {min: math.MinInt16, max: math.MaxInt16 + 1},
	"INT32":  {min: math.MinInt32, max: math.MaxInt32 + 1},
	"INT64":  {min: math.MinInt64, max: -math.MinInt64},
	"UINT8":  {max: math.MaxUint8 + 1},
	"UINT16": {max: math.MaxUint16 + 1},
	"UINT32": {max: math.MaxUint32 + 1},
	"UINT64": {max: 1 << 64},
}

// protocolTypes are the other datatypes of the protocol: known, but not
// a type this model's input can be.
var protocolTypes = map[string]bool{"BOOL": true, "FP16": true, "BYTES": true}

// decodeInfer reads an inference request body. Every error is a
// *requestError with status 400.
func decodeInfer(body []byte, sc *schema, dst []float64) (inferBatch, error) {
	var req inferRequest
	if err := decodeStrict(body, &req, inferShapes, inferKeys); err != nil {
		return inferBatch{}, err
	}
	if err := checkParameters(req.Parameters, `"parameters"`); err != nil {
		return inferBatch{}, err
	}
	nf := len(sc.features)
	ib := inferBatch{id: req.ID}
	ib.batch.key = "rows"
	var err error
	switch n := len(req.Inputs); {
	case req.Inputs == nil:
		return ib, badRequest(`no "inputs": want one input tensor of shape [N,%d] (%s)`, nf, sc.list)
	case n == 0:
		return ib, badRequest(`"inputs" is empty: want one input tensor of shape [N,%d] (%s)`, nf, sc.list)
	case n == 1:
		ib.values, ib.rows, ib.fp64, err = decodeMatrix(&req.Inputs[0], sc, dst[:0])
	case n == nf:
		ib.values, ib.rows, ib.fp64, err = decodeColumns(req.Inputs, sc, dst[:0])
	default:
		return ib, badRequest(`%d input tensors: want one of shape [N,%d], or %d named after the features (%s), each of shape [N]`, n, nf, nf, sc.list)
	}
	if err != nil {
		return ib, err
	}
	ib.outputs, err = decodeOutputs(req.Outputs)
	return ib, err
}

// decodeMatrix reads the one-tensor form: shape [F] is one row, [N,F] is N
// rows, data flat or nested as the shape.
func decodeMatrix(in *inferInput, sc *schema, dst []float64) ([]float64, int, bool, error) {
	const where = "inputs[0]"
	nf := len(sc.features)
	dt, err := checkTensorHeader(in, where)
	if err != nil {
		return dst, 0, false, err
	}
	var rows int
	switch {
	case len(in.Shape) == 1 && in.Shape[0] == int64(nf):
		rows = 1
	case len(in.Shape) == 2 && in.Shape[1] == int64(nf):
		if err := checkBatchDim(in.Shape[0], sc, where); err != nil {
			return dst, 0, false, err
		}
		rows = int(in.Shape[0])
	default:
		return dst, 0, false, badRequest("%s has shape %s: want [%d] for one row or [N,%d] for N rows of %d features (%s)",
			where, formatShape(in.Shape), nf, nf, nf, sc.list)
	}
	if err := checkTensorData(in, rows*nf, dt, where); err != nil {
		return dst, 0, false, err
	}
	return append(dst, in.Data.values...), rows, dt.float && dt.bits == 64, nil
}

// decodeColumns reads the columnar form: one tensor per feature, each of
// shape [N] or [N,1], named after its feature, in any order.
func decodeColumns(inputs []inferInput, sc *schema, dst []float64) ([]float64, int, bool, error) {
	nf := len(sc.features)
	cols := make([]*inferInput, nf)
	rows := -1
	fp64 := true
	for i := range inputs {
		in := &inputs[i]
		where := fmt.Sprintf("inputs[%d]", i)
		j, ok := sc.index[in.Name]
		if !ok {
			return dst, 0, false, badRequest("%s is named %s, which is not a feature: with one tensor per feature, the names are %s",
				where, quoteShort(in.Name), sc.list)
		}
		if cols[j] != nil {
			return dst, 0, false, badRequest("%s repeats feature %q", where, in.Name)
		}
		cols[j] = in
		dt, err := checkTensorHeader(in, where)
		if err != nil {
			return dst, 0, false, err
		}
		fp64 = fp64 && dt.float && dt.bits == 64
		if !(len(in.Shape) == 1 || (len(in.Shape) == 2 && in.Shape[1] == 1)) {
			return dst, 0, false, badRequest("%s (%s) has shape %s: a feature column has shape [N] or [N,1]", where, in.Name, formatShape(in.Shape))
		}
		if err := checkBatchDim(in.Shape[0], sc, where); err != nil {
			return dst, 0, false, err
		}
		n := int(in.Shape[0])
		if rows >= 0 && n != rows {
			return dst, 0, false, badRequest("%s (%s) has %d rows, the tensors before it %d", where, in.Name, n, rows)
		}
		rows = n
		if err := checkTensorData(in, n, dt, where); err != nil {
			return dst, 0, false, err
		}
	}
	for r := 0; r < rows; r++ {
		for j := range nf {
			dst = append(dst, cols[j].Data.values[r])
		}
	}
	return dst, rows, fp64, nil
}

// checkTensorHeader checks name, datatype, shape and parameters of an
// input and returns its datatype.
func checkTensorHeader(in *inferInput, where string) (dtype, error) {
	if in.Name == "" {
		return dtype{}, badRequest(`%s has no "name"`, where)
	}
	if in.Datatype == "" {
		return dtype{}, badRequest(`%s has no "datatype": want "FP32" or "FP64"`, where)
	}
	dt, ok := inputTypes[in.Datatype]
	if !ok {
		if protocolTypes[in.Datatype] {
			return dtype{}, badRequest(`%s has datatype %q, which this model cannot take: want "FP32" or "FP64"`, where, in.Datatype)
		}
		hint := ""
		if _, ok := inputTypes[strings.ToUpper(in.Datatype)]; ok {
			hint = " (datatypes are upper case)"
		}
		return dtype{}, badRequest(`%s has unknown datatype %s%s: want "FP32" or "FP64"`, where, quoteShort(in.Datatype), hint)
	}
	if in.Shape == nil {
		return dtype{}, badRequest(`%s has no "shape"`, where)
	}
	for _, d := range in.Shape {
		if d < 0 {
			return dtype{}, badRequest("%s has shape %s: a request gives every dimension's size (-1 is for metadata only)", where, formatShape(in.Shape))
		}
	}
	if !in.Data.set {
		return dtype{}, badRequest(`%s has no "data"`, where)
	}
	return dt, checkParameters(in.Parameters, where+".parameters")
}

// checkBatchDim checks the row count of a tensor against the batch limit.
func checkBatchDim(n int64, sc *schema, where string) error {
	switch {
	case n == 0:
		return badRequest("%s is an empty batch (0 rows): want 1 to %d rows", where, sc.maxBatch)
	case n > int64(sc.maxBatch):
		return badRequest("%s has %d rows, over the limit of %d per request", where, n, sc.maxBatch)
	}
	return nil
}

// checkTensorData checks that the data holds want values, nested either
// flat or exactly as the shape, and coerces them to the datatype.
func checkTensorData(in *inferInput, want int, dt dtype, where string) error {
	d := &in.Data
	if d.err != "" {
		return badRequest("%s.data %s", where, d.err)
	}
	if len(d.values) != want {
		return badRequest("%s.data holds %d values, shape %s needs %d", where, len(d.values), formatShape(in.Shape), want)
	}
	if len(d.dims) != 1 && !sameDims(d.dims, in.Shape) {
		return badRequest("%s.data is nested as %s, which is neither flat nor the shape %s", where, formatDims(d.dims), formatShape(in.Shape))
	}
	for i, v := range d.values {
		switch {
		case dt.float && dt.bits == 32:
			f := float32(v)
			if math.IsInf(float64(f), 0) {
				return badRequest("%s.data element %d (%g) is out of range for FP32", where, i, v)
			}
			d.values[i] = float64(f)
		case dt.float:
		case v != math.Trunc(v):
			return badRequest("%s.data element %d (%g) is not an integer, as datatype %s needs", where, i, v, in.Datatype)
		case v < dt.min || v >= dt.max:
			return badRequest("%s.data element %d (%g) is out of range for %s", where, i, v, in.Datatype)
		}
	}
	return nil
}

func sameDims(dims []int, shape []int64) bool {
	if len(dims) != len(shape) {
		return false
	}
	for i := range dims {
		if int64(dims[i]) != shape[i] {
			return false
		}
	}
	return true
}

// checkParameters accepts a parameters object (the protocol defines none,
// so their contents are ignored) or its absence.
func checkParameters(raw json.RawMessage, where string) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] == '{' || bytes.Equal(raw, []byte("null")) {
		return nil
	}
	return badRequest("%s must be an object, found %s", where, strings.TrimSuffix(describeLiteral(raw), ", not a number"))
}

// decodeOutputs resolves the requested outputs; none means all.
func decodeOutputs(req []requestedOutput) ([]outputKind, error) {
	if len(req) == 0 {
		return defaultOutputs, nil
	}
	out := make([]outputKind, 0, len(req))
	for i, o := range req {
		where := fmt.Sprintf("outputs[%d]", i)
		if o.Name == "" {
			return nil, badRequest(`%s has no "name"`, where)
		}
		kind, ok := outputByName(o.Name)
		if !ok {
			return nil, badRequest("%s asks for unknown output %s: this model produces predictions (or label), probabilities and confidences",
				where, quoteShort(o.Name))
		}
		for _, k := range out {
			if k == kind {
				return nil, badRequest("%s asks for %q twice", where, o.Name)
			}
		}
		if err := checkParameters(o.Parameters, where+".parameters"); err != nil {
			return nil, err
		}
		out = append(out, kind)
	}
	return out, nil
}

func outputByName(name string) (outputKind, bool) {
	for k, n := range outputNames {
		if n == name {
			return outputKind(k), true
		}
	}
	return 0, false
}

func formatShape(shape []int64) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, d := range shape {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprint(&b, d)
	}
	b.WriteByte(']')
	return b.String()
}

func formatDims(dims []int) string {
	s := make([]int64, len(dims))
	for i, d := range dims {
		s[i] = int64(d)
	}
	return formatShape(s)
}
