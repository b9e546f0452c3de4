package worker

import (
	"fmt"
	"strings"
	"testing"
)

// malformedCase is a request the worker must refuse with status and a
// message containing want.
type malformedCase struct {
	name   string
	path   string
	body   string
	status int
	want   string
}

const good = `{"input":[5.1,3.5,1.4,0.2]}`

// rows returns a batch of n copies of the setosa row, as JSON rows.
func rows(n int) string {
	return strings.TrimSuffix(strings.Repeat(rowJSON(setosaRow)+",", n), ",")
}

// infer wraps one input tensor in an inference request.
func infer(tensor string) string { return `{"inputs":[` + tensor + `]}` }

var malformedPredict = []malformedCase{
	{"empty body", "", ``, 400, "empty body"},
	{"white space only", "", "  \n\t ", 400, "empty body"},
	{"truncated JSON", "", `{"input":[5.1,3.5,1.4,0.2]`, 400, "invalid JSON: the body ends inside a value"},
	{"unquoted key", "", `{input:[5.1,3.5,1.4,0.2]}`, 400, "invalid JSON at byte 2"},
	{"trailing garbage", "", good + ` x`, 400, "unexpected data after the top-level value"},
	{"two objects", "", good + good, 400, "unexpected data after the top-level value"},
	{"trailing comma", "", `{"input":[5.1,3.5,1.4,0.2,]}`, 400, "invalid JSON"},
	{"leading plus", "", `{"input":[+5.1,3.5,1.4,0.2]}`, 400, "invalid JSON"},
	{"hex number", "", `{"input":[0x5,3.5,1.4,0.2]}`, 400, "invalid JSON"},
	{"bare NaN", "", `{"input":[NaN,3.5,1.4,0.2]}`, 400, "invalid JSON"},
	{"top-level array", "", `[5.1,3.5,1.4,0.2]`, 400, "the body must be a JSON object, not an array"},
	{"top-level string", "", `"5.1,3.5,1.4,0.2"`, 400, "the body must be a JSON object, not a string"},
	{"top-level null", "", `null`, 400, "no input"},
	{"empty object", "", `{}`, 400, "no input"},
	{"input null", "", `{"input":null}`, 400, "no input"},
	{"unknown key", "", `{"imput":[5.1,3.5,1.4,0.2]}`, 400, `unknown key "imput"`},
	{"two shapes at once", "", `{"input":[5.1,3.5,1.4,0.2],"inputs":[[5.1,3.5,1.4,0.2]]}`, 400, `"input" and "inputs" are given together`},
	{"too few features", "", `{"input":[5.1,3.5,1.4]}`, 400, "input has 3 values, want 4 (sepal_length, sepal_width, petal_length, petal_width)"},
	{"too many features", "", `{"input":[5.1,3.5,1.4,0.2,9]}`, 400, "input has 5 values, want 4"},
	{"empty input", "", `{"input":[]}`, 400, "input is empty: want 4 numbers"},
	{"string value", "", `{"input":[5.1,"3.5",1.4,0.2]}`, 400, `input[1] (sepal_width) is the string "3.5", not a number`},
	{"NaN string", "", `{"input":[5.1,3.5,"NaN",0.2]}`, 400, `input[2] (petal_length) is the string "NaN", not a number (NaN and infinities are not valid inputs)`},
	{"Infinity string", "", `{"input":[5.1,3.5,1.4,"-Infinity"]}`, 400, "NaN and infinities are not valid inputs"},
	{"overflowing number", "", `{"input":[5.1,1e999,1.4,0.2]}`, 400, "input[1] (sepal_width) is 1e999, which is out of range for a 64-bit float"},
	{"overflowing negative", "", `{"input":[-1e400,3.5,1.4,0.2]}`, 400, "is -1e400, which is out of range"},
	{"null value", "", `{"input":[5.1,null,1.4,0.2]}`, 400, "input[1] (sepal_width) is null, not a number"},
	{"boolean value", "", `{"input":[true,3.5,1.4,0.2]}`, 400, "input[0] (sepal_length) is a boolean, not a number"},
	{"nested rows in input", "", `{"input":[[5.1,3.5],[1.4,0.2]]}`, 400, "input[0] (sepal_length) is an array, not a number"},
	{"object value", "", `{"input":[{"v":5.1},3.5,1.4,0.2]}`, 400, "is an object, not a number"},
	{"input is an object", "", `{"input":{"sepal_length":5.1}}`, 400, `"input" must be an array of numbers (one row), found an object`},
	{"input is a number", "", `{"input":5.1}`, 400, `"input" must be an array of numbers (one row), found a number`},
	{"empty batch", "", `{"inputs":[]}`, 400, `"inputs" is an empty batch: want 1 to 1000 rows`},
	{"flat batch", "", `{"inputs":[5.1,3.5,1.4,0.2]}`, 400, `"inputs" must be an array of rows, each an array of numbers, found a number`},
	{"short row in batch", "", `{"inputs":[[5.1,3.5,1.4,0.2],[1,2,3]]}`, 400, "inputs[1] has 3 values, want 4"},
	{"null row in batch", "", `{"inputs":[[5.1,3.5,1.4,0.2],null]}`, 400, "inputs[1] is null"},
	{"empty row in batch", "", `{"inputs":[[]]}`, 400, "inputs[0] is empty"},
	{"bad value deep in batch", "", `{"inputs":[[5.1,3.5,1.4,0.2],[5.1,3.5,1.4,"x"]]}`, 400, `inputs[1][3] (petal_width) is the string "x"`},
	{"batch of 2000 rows", "", `{"inputs":[` + rows(2000) + `]}`, 400, `"inputs" has 2000 rows, over the limit of 1000 per request`},
	{"record lacks a feature", "", `{"data":[{"sepal_length":5.1,"sepal_width":3.5,"petal_length":1.4}]}`, 400, `data[0] lacks feature "petal_width"`},
	{"record has an unknown feature", "", `{"data":[{"sepal_length":5.1,"sepal_width":3.5,"petal_length":1.4,"petal_widht":0.2}]}`, 400, `data[0] has unknown feature "petal_widht"`},
	{"record has a string", "", `{"data":[{"sepal_length":5.1,"sepal_width":"wide","petal_length":1.4,"petal_width":0.2}]}`, 400, `data[0].sepal_width is the string "wide"`},
	{"record is an array", "", `{"data":[[5.1,3.5,1.4,0.2]]}`, 400, `"data" must be an array of objects that map feature names to numbers, found an array`},
	{"record is null", "", `{"data":[null]}`, 400, "data[0] is null"},
	{"empty records", "", `{"data":[]}`, 400, `"data" is an empty batch`},
	{"data is an object", "", `{"data":{"sepal_length":5.1}}`, 400, `"data" must be an array of objects`},
	{"nesting past the JSON limit", "", `{"input":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`, 400, "invalid JSON"},
	{"values that overflow the model", "", `{"input":[1e308,-1e308,1e308,-1e308]}`, 400, "too large"},
}

// The protocol's own datatypes and shapes, wrongly: each must be named.
var malformedInfer = []malformedCase{
	{"empty body", "", ``, 400, "empty body"},
	{"invalid JSON", "", `{"inputs":[`, 400, "invalid JSON"},
	{"no inputs", "", `{}`, 400, `no "inputs"`},
	{"empty inputs", "", `{"inputs":[]}`, 400, `"inputs" is empty`},
	{"inputs is an object", "", `{"inputs":{"name":"x"}}`, 400, `"inputs" must be an array of input tensors (objects), found an object`},
	{"unknown top-level key", "", `{"input":[]}`, 400, `unknown key "input"`},
	{"unknown tensor key", "", infer(`{"name":"x","shape":[4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2],"dtype":"FP32"}`), 400, `unknown key "dtype"`},
	{"id not a string", "", `{"id":42,"inputs":[{"name":"x","shape":[4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}`, 400, `"id" must be a string, found a number`},
	{"parameters not an object", "", `{"parameters":5,"inputs":[{"name":"x","shape":[4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}`, 400, `"parameters" must be an object`},
	{"no name", "", infer(`{"shape":[4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}`), 400, `inputs[0] has no "name"`},
	{"no datatype", "", infer(`{"name":"x","shape":[4],"data":[5.1,3.5,1.4,0.2]}`), 400, `inputs[0] has no "datatype"`},
	{"no shape", "", infer(`{"name":"x","datatype":"FP32","data":[5.1,3.5,1.4,0.2]}`), 400, `inputs[0] has no "shape"`},
	{"no data", "", infer(`{"name":"x","shape":[4],"datatype":"FP32"}`), 400, `inputs[0] has no "data"`},
	{"unknown datatype", "", infer(`{"name":"x","shape":[4],"datatype":"FLOAT","data":[5.1,3.5,1.4,0.2]}`), 400, `unknown datatype "FLOAT"`},
	{"lower-case datatype", "", infer(`{"name":"x","shape":[4],"datatype":"fp32","data":[5.1,3.5,1.4,0.2]}`), 400, "(datatypes are upper case)"},
	{"BYTES input", "", infer(`{"name":"x","shape":[4],"datatype":"BYTES","data":["a","b","c","d"]}`), 400, `datatype "BYTES", which this model cannot take`},
	{"shape of the wrong width", "", infer(`{"name":"x","shape":[2,3],"datatype":"FP32","data":[1,2,3,4,5,6]}`), 400, "inputs[0] has shape [2,3]: want [4] for one row or [N,4]"},
	{"three-dimensional shape", "", infer(`{"name":"x","shape":[1,1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}`), 400, "has shape [1,1,4]"},
	{"variable dimension in a request", "", infer(`{"name":"x","shape":[-1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}`), 400, "-1 is for metadata only"},
	{"fractional dimension", "", infer(`{"name":"x","shape":[1.5,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}`), 400, `"inputs.shape" must be an array of non-negative integers, found the number 1.5`},
	{"dimension past int64", "", infer(`{"name":"x","shape":[1e30,4],"datatype":"FP32","data":[]}`), 400, `"inputs.shape" must be an array of non-negative integers`},
	{"too little data for the shape", "", infer(`{"name":"x","shape":[2,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}`), 400, "inputs[0].data holds 4 values, shape [2,4] needs 8"},
	{"too much data for the shape", "", infer(`{"name":"x","shape":[4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2,1]}`), 400, "holds 5 values, shape [4] needs 4"},
	{"nesting that is not the shape", "", infer(`{"name":"x","shape":[2,4],"datatype":"FP32","data":[[1,2],[3,4],[5,6],[7,8]]}`), 400, "is nested as [4,2], which is neither flat nor the shape [2,4]"},
	{"ragged rows", "", infer(`{"name":"x","shape":[2,4],"datatype":"FP32","data":[[1,2,3,4],[5,6,7]]}`), 400, "is ragged"},
	{"numbers mixed with arrays", "", infer(`{"name":"x","shape":[4],"datatype":"FP32","data":[1,[2,3],4]}`), 400, "mixes numbers and arrays"},
	{"NaN string in data", "", infer(`{"name":"x","shape":[4],"datatype":"FP32","data":[5.1,"NaN",1.4,0.2]}`), 400, `inputs[0].data element 1 is the string "NaN", not a number (NaN and infinities`},
	{"null in data", "", infer(`{"name":"x","shape":[4],"datatype":"FP32","data":[5.1,null,1.4,0.2]}`), 400, "element 1 is null, not a number"},
	{"boolean in data", "", infer(`{"name":"x","shape":[4],"datatype":"FP32","data":[5.1,3.5,false,0.2]}`), 400, "element 2 is a boolean"},
	{"object in data", "", infer(`{"name":"x","shape":[4],"datatype":"FP32","data":[5.1,3.5,{"a":[1,"]"]},0.2]}`), 400, "element 2 is an object"},
	{"overflow in data", "", infer(`{"name":"x","shape":[4],"datatype":"FP64","data":[5.1,3.5,1e999,0.2]}`), 400, "element 2 is 1e999, which is out of range for a 64-bit float"},
	{"overflow of FP32", "", infer(`{"name":"x","shape":[4],"datatype":"FP32","data":[5.1,3.5,1e39,0.2]}`), 400, "element 2 (1e+39) is out of range for FP32"},
	{"fraction in INT32", "", infer(`{"name":"x","shape":[4],"datatype":"INT32","data":[5.1,3,1,0]}`), 400, "element 0 (5.1) is not an integer, as datatype INT32 needs"},
	{"UINT8 out of range", "", infer(`{"name":"x","shape":[4],"datatype":"UINT8","data":[5,3,300,0]}`), 400, "element 2 (300) is out of range for UINT8"},
	{"data is null", "", infer(`{"name":"x","shape":[4],"datatype":"FP32","data":null}`), 400, "inputs[0].data is null"},
	{"data is an object", "", infer(`{"name":"x","shape":[4],"datatype":"FP32","data":{"a":1}}`), 400, "inputs[0].data must be an array of numbers, found an object"},
	{"data is a string", "", infer(`{"name":"x","shape":[4],"datatype":"FP32","data":"5.1,3.5,1.4,0.2"}`), 400, "must be an array of numbers, found the string"},
	{"empty batch", "", infer(`{"name":"x","shape":[0,4],"datatype":"FP32","data":[]}`), 400, "inputs[0] is an empty batch (0 rows)"},
	{"batch of 2000 rows", "", infer(`{"name":"x","shape":[2000,4],"datatype":"FP32","data":[` + rows(2000) + `]}`), 400, "inputs[0] has 2000 rows, over the limit of 1000 per request"},
	{"two tensors", "", `{"inputs":[{"name":"a","shape":[4],"datatype":"FP32","data":[1,2,3,4]},{"name":"b","shape":[4],"datatype":"FP32","data":[1,2,3,4]}]}`, 400, "2 input tensors: want one of shape [N,4]"},
	{"columns with a stranger", "", columns("sepal_length", "sepal_width", "petal_length", "petal_wide"), 400, `inputs[3] is named "petal_wide", which is not a feature`},
	{"columns with a repeat", "", columns("sepal_length", "sepal_width", "petal_length", "petal_length"), 400, `inputs[3] repeats feature "petal_length"`},
	{"unknown output", "", `{"inputs":[{"name":"x","shape":[4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}],"outputs":[{"name":"logits"}]}`, 400, `outputs[0] asks for unknown output "logits"`},
	{"output twice", "", `{"inputs":[{"name":"x","shape":[4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}],"outputs":[{"name":"probabilities"},{"name":"probabilities"}]}`, 400, `outputs[1] asks for "probabilities" twice`},
	{"output without a name", "", `{"inputs":[{"name":"x","shape":[4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}],"outputs":[{}]}`, 400, `outputs[0] has no "name"`},
	{"unknown model", "/v2/models/mnist/infer", infer(`{"name":"x","shape":[4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}`), 404, `unknown model "mnist": this worker serves "iris"`},
	{"unknown version", "/v2/models/iris/versions/9/infer", infer(`{"name":"x","shape":[4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}`), 404, `model "iris" has no version "9"`},
}

// columns is a columnar request of one row with tensors of these names.
func columns(names ...string) string {
	var t []string
	for _, n := range names {
		t = append(t, fmt.Sprintf(`{"name":%q,"shape":[1],"datatype":"FP32","data":[1]}`, n))
	}
	return `{"inputs":[` + strings.Join(t, ",") + `]}`
}

// TestMalformedBodiesGet4xxAndTheWorkerKeepsServing is acceptance point 5:
// every malformed body gets its status with a message that names the
// problem, and the worker answers a good request after each.
func TestMalformedBodiesGet4xxAndTheWorkerKeepsServing(t *testing.T) {
	w := startWorker(t, loadModel(t, "iris-v1.json"), Config{})
	run := func(t *testing.T, defaultPath string, cases []malformedCase, goodBody string) {
		if len(cases) < 30 {
			t.Errorf("only %d kinds of malformed body", len(cases))
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				path := tc.path
				if path == "" {
					path = defaultPath
				}
				r := w.post(t, path, tc.body)
				if r.status != tc.status {
					t.Errorf("status %d, want %d: %s", r.status, tc.status, r.body)
				}
				if ct := string(r.header.ContentType()); ct != "application/json" {
					t.Errorf("content type %q", ct)
				}
				if msg := errorMessage(t, r.body); !strings.Contains(msg, tc.want) {
					t.Errorf("message %q\ndoes not contain %q", msg, tc.want)
				}
				if r := w.post(t, defaultPath, goodBody); r.status != 200 {
					t.Fatalf("a good request after it: %d %s", r.status, r.body)
				}
			})
		}
	}
	t.Run("predict", func(t *testing.T) { run(t, "/predict", malformedPredict, good) })
	t.Run("infer", func(t *testing.T) {
		run(t, "/v2/models/iris/infer", malformedInfer, infer(`{"name":"x","shape":[4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}`))
	})
}

// TestBodyOverTheLimitGets413 sends a body past MaxBodyBytes: fasthttp
// refuses it before the handler, and the worker's error handler answers
// in JSON.
func TestBodyOverTheLimitGets413(t *testing.T) {
	w := startWorker(t, loadModel(t, "iris-v1.json"), Config{MaxBodyBytes: 1 << 10})
	r := w.post(t, "/predict", `{"inputs":[`+rows(100)+`]}`)
	if r.status != 413 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if msg := errorMessage(t, r.body); !strings.Contains(msg, "request body too large: the limit is 1024 bytes") {
		t.Errorf("message %q", msg)
	}
	if r := w.post(t, "/predict", good); r.status != 200 {
		t.Fatalf("a good request after it: %d %s", r.status, r.body)
	}
}

// TestWrongMethodsAndPaths: 405 with Allow for a known path, 404 for an
// unknown one, both in JSON.
func TestWrongMethodsAndPaths(t *testing.T) {
	w := startWorker(t, loadModel(t, "iris-v1.json"), Config{})
	for _, tc := range []struct {
		method, path string
		status       int
		allow        string
	}{
		{"GET", "/predict", 405, "POST"},
		{"PUT", "/predict", 405, "POST"},
		{"GET", "/v2/models/iris/infer", 405, "POST"},
		{"POST", "/health", 405, "GET, HEAD"},
		{"DELETE", "/v2/models/iris", 405, "GET, HEAD"},
		{"POST", "/metrics", 405, "GET, HEAD"},
		{"POST", "/v2/health/ready", 405, "GET, HEAD"},
		{"GET", "/nope", 404, ""},
		{"POST", "/predict/", 404, ""},
		{"GET", "/v2/models/iris/explain", 404, ""},
		{"GET", "/v2/models/iris/versions/1/nope", 404, ""},
		{"GET", "/v2/models/mnist", 404, ""},
		{"GET", "/v2/models/iris/versions/2", 404, ""},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			r := w.do(t, tc.method, tc.path, "")
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if got := string(r.header.Peek("Allow")); got != tc.allow {
				t.Errorf("Allow %q, want %q", got, tc.allow)
			}
			errorMessage(t, r.body)
		})
	}
}
