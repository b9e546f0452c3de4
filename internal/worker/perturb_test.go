package worker

import (
	"bytes"
	"flag"
	"math"
	"regexp"
	"strings"
	"testing"
	"time"
)

// newServer builds a server for a shipped model without a socket; call
// runs requests through its handler.
func newServer(t *testing.T, file string, cfg Config) *Server {
	t.Helper()
	s, err := New(loadModel(t, file), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// callOK runs one POST through s and returns its body, failing the test
// unless it is answered 200.
func callOK(t *testing.T, s *Server, path, body string) []byte {
	t.Helper()
	status, answer := call(s, "POST", path, []byte(body))
	if status != 200 {
		t.Fatalf("POST %s %s: %d %s", path, body, status, answer)
	}
	return answer
}

// drawAlways makes the server's random source return *draw, so that a
// test knows the noise: (2*draw-1)*amount.
func drawAlways(s *Server, draw *float64) {
	s.faults.random = func() float64 { return *draw }
}

// The answers with -timestamp, decoded strictly.
type stampedSingle struct {
	singleAnswer
	Timestamp string `json:"timestamp"`
}

type stampedBatch struct {
	batchAnswer
	Timestamp string `json:"timestamp"`
}

type stampedInfer struct {
	inferAnswer
	Parameters struct {
		Timestamp string `json:"timestamp"`
	} `json:"parameters"`
}

var stampForm = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$`)

// checkStamp: the stamp is RFC 3339 with nanoseconds, in UTC, and was
// made between before and after.
func checkStamp(t *testing.T, stamp string, before, after time.Time) {
	t.Helper()
	ts, err := time.Parse(time.RFC3339Nano, stamp)
	if err != nil {
		t.Fatalf("timestamp %q: %v", stamp, err)
	}
	if ts.Location() != time.UTC || !stampForm.MatchString(stamp) {
		t.Errorf("timestamp %q is not RFC 3339 with nine digits of nanoseconds in UTC", stamp)
	}
	if ts.Before(before) || ts.After(after) {
		t.Errorf("timestamp %v is outside the request's time, %v to %v", ts, before.UTC(), after.UTC())
	}
}

func TestTimestampStampsEverySuccessfulAnswer(t *testing.T) {
	w := startWorker(t, loadModel(t, "iris-v1.json"), Config{Timestamp: true})
	post := func(path, body string, v any) []byte {
		t.Helper()
		r := w.post(t, path, body)
		if r.status != 200 {
			t.Fatalf("%s: %d %s", path, r.status, r.body)
		}
		decodeJSON(t, r.body, v)
		return r.body
	}

	before := time.Now()
	var one stampedSingle
	body := post("/predict", good, &one)
	checkStamp(t, one.Timestamp, before, time.Now())
	if one.Prediction != "setosa" || one.Model != "iris" {
		t.Errorf("answer %s", body)
	}
	// After the numbers, before "model".
	if i, j := bytes.Index(body, []byte(`"timestamp":`)), bytes.Index(body, []byte(`"model":`)); !(i > bytes.Index(body, []byte(`"confidence":`)) && i < j) {
		t.Errorf("timestamp not just before model: %s", body)
	}

	before = time.Now()
	var many stampedBatch
	body = post("/predict", `{"inputs":[`+rowJSON(setosaRow)+`,`+rowJSON(virginicaRow)+`]}`, &many)
	checkStamp(t, many.Timestamp, before, time.Now())
	if len(many.Predictions) != 2 || !bytes.Contains(body, []byte(`],"timestamp":"`)) || bytes.Index(body, []byte(`"timestamp":`)) > bytes.Index(body, []byte(`"model":`)) {
		t.Errorf("batch answer %s", body)
	}

	before = time.Now()
	var inf stampedInfer
	post("/v2/models/iris/infer", infer(`{"name":"x","shape":[4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}`), &inf)
	checkStamp(t, inf.Parameters.Timestamp, before, time.Now())
	if got := inf.output(t, "predictions").strings(t); len(got) != 1 || got[0] != "setosa" {
		t.Errorf("infer predictions %v", got)
	}

	// Errors are not stamped: the body is {"error"} alone.
	if r := w.post(t, "/predict", `{"input":[1]}`); r.status != 400 {
		t.Errorf("bad input: %d", r.status)
	} else {
		errorMessage(t, r.body)
	}
}

// answerSkeleton replaces every number of an answer, so that answers can
// be compared for their bytes without depending on the float arithmetic
// of the platform.
var answerNumber = regexp.MustCompile(`-?[0-9][0-9.eE+-]*`)

func answerSkeleton(b []byte) string { return answerNumber.ReplaceAllString(string(b), "N") }

// TestDefaultAnswersAreUnchanged: without -timestamp and -perturb (or
// with only zero amounts) the answers are those the worker gave before
// the two options existed, byte for byte.
func TestDefaultAnswersAreUnchanged(t *testing.T) {
	const (
		batchBody = `{"inputs":[[5.1,3.5,1.4,0.2],[6.3,3.3,6.0,2.5]]}`
		inferBody = `{"id":"7","inputs":[{"name":"x","shape":[2,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2,6.3,3.3,6.0,2.5]}]}`
	)
	// Recorded from the worker before -timestamp and -perturb.
	before := map[string]string{
		good: `{"prediction":"setosa","probabilities":{"setosa":0.9970992554505473,"versicolor":0.002900744547428968,"virginica":2.023562900860075e-12},"confidence":0.9970992554505473,"model":"iris","model_version":"1"}`,
		batchBody: `{"predictions":["setosa","virginica"],"probabilities":[{"setosa":0.9970992554505473,"versicolor":0.002900744547428968,"virginica":2.023562900860075e-12},` +
			`{"setosa":5.4946706368310136e-08,"versicolor":0.00029820266213038396,"virginica":0.9997017423911632}],"confidences":[0.9970992554505473,0.9997017423911632],"model":"iris","model_version":"1"}`,
		inferBody: `{"model_name":"iris","model_version":"1","id":"7","outputs":[{"name":"predictions","shape":[2],"datatype":"BYTES","data":["setosa","virginica"]},` +
			`{"name":"probabilities","shape":[2,3],"datatype":"FP32","data":[0.9970993,0.0029007434,2.023562e-12,5.494665e-08,0.00029820268,0.99970174]},` +
			`{"name":"confidences","shape":[2],"datatype":"FP32","data":[0.9970993,0.99970174]}]}`,
	}
	plain := newServer(t, "iris-v1.json", Config{})
	zero := newServer(t, "iris-v1.json", Config{Perturb: Perturbations{{"confidence", 0}, {"probabilities.setosa", 0}}})
	for body, want := range before {
		path := "/predict"
		if strings.Contains(body, `"name"`) {
			path = "/v2/models/iris/infer"
		}
		got := callOK(t, plain, path, body)
		if answerSkeleton(got) != answerSkeleton([]byte(want)) {
			t.Errorf("%s:\n got %s\nwant %s", body, got, want)
		}
		if bytes.Contains(got, []byte("timestamp")) || bytes.Contains(got, []byte("parameters")) {
			t.Errorf("stamped by default: %s", got)
		}
		if z := callOK(t, zero, path, body); !bytes.Equal(z, got) {
			t.Errorf("-perturb with zero amounts changed the answer:\n%s\n%s", z, got)
		}
	}
}

// TestPerturbAddsBoundedNoise: with a known draw, each perturbed number
// is the plain one plus exactly (2*draw-1)*amount, so within the amount;
// every other field is as without -perturb.
func TestPerturbAddsBoundedNoise(t *testing.T) {
	const confAmount, setosaAmount = 0.01, 0.001
	plain := newServer(t, "iris-v1.json", Config{})
	noisy := newServer(t, "iris-v1.json", Config{Perturb: Perturbations{{"confidence", confAmount}, {"probabilities.setosa", setosaAmount}}})
	var draw float64
	drawAlways(noisy, &draw)

	var base singleAnswer
	decodeJSON(t, callOK(t, plain, "/predict", good), &base)
	seen := map[float64]bool{}
	for _, draw = range []float64{0, 0.25, 0.5, 0.999999} {
		var got singleAnswer
		decodeJSON(t, callOK(t, noisy, "/predict", good), &got)
		noise := 2*draw - 1
		if want := base.Confidence + noise*confAmount; got.Confidence != want || math.Abs(got.Confidence-base.Confidence) > within(confAmount) {
			t.Errorf("draw %v: confidence %v, want %v", draw, got.Confidence, want)
		}
		if want := base.Probabilities["setosa"] + noise*setosaAmount; got.Probabilities["setosa"] != want || math.Abs(got.Probabilities["setosa"]-base.Probabilities["setosa"]) > within(setosaAmount) {
			t.Errorf("draw %v: setosa %v, want %v", draw, got.Probabilities["setosa"], want)
		}
		seen[got.Confidence] = true
		// Everything else as without noise.
		got.Confidence, got.Probabilities["setosa"] = base.Confidence, base.Probabilities["setosa"]
		if !sameSingle(got, base) {
			t.Errorf("draw %v: %+v, want %+v apart from the perturbed fields", draw, got, base)
		}
	}
	if len(seen) != 4 {
		t.Errorf("four draws gave %d confidences", len(seen))
	}
}

// within is amount and the rounding of a float64 subtraction: the
// difference of x-amount and x may pass amount in the last bit.
func within(amount float64) float64 { return amount * (1 + 1e-12) }

func sameSingle(a, b singleAnswer) bool {
	if a.Prediction != b.Prediction || a.Confidence != b.Confidence || a.Model != b.Model || a.ModelVersion != b.ModelVersion || len(a.Probabilities) != len(b.Probabilities) {
		return false
	}
	for c, p := range a.Probabilities {
		if b.Probabilities[c] != p {
			return false
		}
	}
	return true
}

// TestPerturbDiffersEachTime: with the real random source two identical
// requests get different numbers, each within the amount of the plain
// answer, on both APIs.
func TestPerturbDiffersEachTime(t *testing.T) {
	const amount = 1e-3
	m := loadModel(t, "iris-v1.json")
	plain := startWorker(t, m, Config{})
	noisy := startWorker(t, m, Config{Perturb: Perturbations{{"confidence", amount}, {"probabilities.virginica", amount}}})

	var base, a, b singleAnswer
	decodeJSON(t, plain.post(t, "/predict", good).body, &base)
	decodeJSON(t, noisy.post(t, "/predict", good).body, &a)
	decodeJSON(t, noisy.post(t, "/predict", good).body, &b)
	if a.Confidence == b.Confidence || a.Probabilities["virginica"] == b.Probabilities["virginica"] {
		t.Errorf("two requests got the same numbers: %+v %+v", a, b)
	}
	for _, got := range []singleAnswer{a, b} {
		if math.Abs(got.Confidence-base.Confidence) > amount || math.Abs(got.Probabilities["virginica"]-base.Probabilities["virginica"]) > amount {
			t.Errorf("%+v is not within %v of %+v", got, amount, base)
		}
		if got.Prediction != base.Prediction || got.Probabilities["setosa"] != base.Probabilities["setosa"] || got.Probabilities["versicolor"] != base.Probabilities["versicolor"] {
			t.Errorf("unperturbed fields changed: %+v, plain %+v", got, base)
		}
	}

	body := infer(`{"name":"x","shape":[4],"datatype":"FP64","data":[5.1,3.5,1.4,0.2]}`)
	var ia, ib inferAnswer
	decodeJSON(t, noisy.post(t, "/v2/models/iris/infer", body).body, &ia)
	decodeJSON(t, noisy.post(t, "/v2/models/iris/infer", body).body, &ib)
	if ca, cb := ia.output(t, "confidences").floats(t), ib.output(t, "confidences").floats(t); ca[0] == cb[0] || math.Abs(ca[0]-base.Confidence) > amount {
		t.Errorf("infer confidences %v and %v, plain %v", ca, cb, base.Confidence)
	}
}

// TestPerturbEveryRowOfABatch: every row's confidence and probability of
// the class get the noise; the predictions and other classes do not.
func TestPerturbEveryRowOfABatch(t *testing.T) {
	const amount = 0.05
	plain := newServer(t, "iris-v2.json", Config{})
	noisy := newServer(t, "iris-v2.json", Config{Perturb: Perturbations{{"probabilities.versicolor", amount}, {"confidence", amount}}})
	draw := 0.75
	drawAlways(noisy, &draw)
	noise := (2*draw - 1) * amount

	for _, body := range []string{
		`{"inputs":[` + rowJSON(setosaRow) + `,` + rowJSON(versicolorRow) + `,` + rowJSON(virginicaRow) + `]}`,
		`{"data":[` + record(plain.model.Features, setosaRow) + `,` + record(plain.model.Features, versicolorRow) + `]}`,
	} {
		var base, got batchAnswer
		decodeJSON(t, callOK(t, plain, "/predict", body), &base)
		decodeJSON(t, callOK(t, noisy, "/predict", body), &got)
		if strings.Join(got.Predictions, ",") != strings.Join(base.Predictions, ",") || len(got.Confidences) != len(base.Confidences) {
			t.Fatalf("predictions %v, plain %v", got.Predictions, base.Predictions)
		}
		for r := range base.Predictions {
			if want := base.Confidences[r] + noise; got.Confidences[r] != want {
				t.Errorf("row %d: confidence %v, want %v", r, got.Confidences[r], want)
			}
			for _, c := range plain.model.Classes {
				want := base.Probabilities[r][c]
				if c == "versicolor" {
					want += noise
				}
				if got.Probabilities[r][c] != want {
					t.Errorf("row %d: %s %v, want %v", r, c, got.Probabilities[r][c], want)
				}
			}
		}
	}
}

// TestPerturbInferOutputs: the probabilities and confidences tensors get
// the noise, at the precision of the datatype asked.
func TestPerturbInferOutputs(t *testing.T) {
	const amount = 0.01
	plain := newServer(t, "iris-v1.json", Config{})
	noisy := newServer(t, "iris-v1.json", Config{Perturb: Perturbations{{"probabilities.setosa", amount}, {"confidence", amount}}})
	draw := 0.1
	drawAlways(noisy, &draw)
	noise := (2*draw - 1) * amount

	data := strings.Trim(rowJSON(append(append([]float64{}, setosaRow...), virginicaRow...)), "[]")
	for _, dt := range []string{"FP64", "FP32"} {
		body := infer(`{"name":"x","shape":[2,4],"datatype":"` + dt + `","data":[` + data + `]}`)
		var base, got inferAnswer
		decodeJSON(t, callOK(t, plain, "/v2/models/iris/infer", body), &base)
		decodeJSON(t, callOK(t, noisy, "/v2/models/iris/infer", body), &got)
		baseProbs, baseConf := base.output(t, "probabilities").floats(t), base.output(t, "confidences").floats(t)
		// An FP32 answer is rounded to float32 after the noise, the plain
		// one without it: they agree to float32 precision.
		same := func(got, want float64) bool {
			if dt == "FP32" {
				return math.Abs(got-want) <= 1e-7
			}
			return got == want
		}
		if p := got.output(t, "predictions").strings(t); strings.Join(p, ",") != "setosa,virginica" {
			t.Errorf("%s: predictions %v", dt, p)
		}
		probs, conf := got.output(t, "probabilities").floats(t), got.output(t, "confidences").floats(t)
		for i, p := range probs {
			want := baseProbs[i]
			if i%3 == 0 { // setosa
				want += noise
			}
			if !same(p, want) {
				t.Errorf("%s: probabilities[%d] %v, want %v", dt, i, p, want)
			}
		}
		for r, c := range conf {
			if !same(c, baseConf[r]+noise) {
				t.Errorf("%s: confidences[%d] %v, want %v", dt, r, c, baseConf[r]+noise)
			}
		}
	}
}

// TestPerturbNeverChangesThePrediction: noise that puts another class
// above the predicted one changes the numbers, not the prediction.
func TestPerturbNeverChangesThePrediction(t *testing.T) {
	s := newServer(t, "iris-v1.json", Config{Perturb: Perturbations{{"probabilities.versicolor", 1}, {"probabilities.setosa", 1}}})
	draw := 1.0
	s.faults.random = func() float64 { // 0, 0.999, 0, ...: setosa down, versicolor up
		draw = 1 - draw
		return draw * 0.999
	}
	var got singleAnswer
	decodeJSON(t, callOK(t, s, "/predict", good), &got)
	if !(got.Probabilities["versicolor"] > got.Probabilities["setosa"]) {
		t.Fatalf("the noise did not reorder the classes: %+v", got)
	}
	if got.Prediction != "setosa" {
		t.Errorf("prediction %q, want setosa: %+v", got.Prediction, got)
	}
	var inf inferAnswer
	decodeJSON(t, callOK(t, s, "/v2/models/iris/infer", infer(`{"name":"x","shape":[4],"datatype":"FP64","data":[5.1,3.5,1.4,0.2]}`)), &inf)
	if p := inf.output(t, "predictions").strings(t); p[0] != "setosa" {
		t.Errorf("infer prediction %v", p)
	}
}

// TestPerturbFlag: the flag repeats, takes comma-separated entries, and
// refuses a malformed value whole.
func TestPerturbFlag(t *testing.T) {
	var ps Perturbations
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.Var(&ps, "perturb", "")
	if err := fs.Parse([]string{"-perturb", "confidence=1e-7", "-perturb", "probabilities.setosa=0.5, probabilities.a=b=1"}); err != nil {
		t.Fatal(err)
	}
	want := Perturbations{{"confidence", 1e-7}, {"probabilities.setosa", 0.5}, {"probabilities.a=b", 1}}
	if len(ps) != len(want) {
		t.Fatalf("got %v, want %v", ps, want)
	}
	for i := range want {
		if ps[i] != want[i] {
			t.Errorf("entry %d: %+v, want %+v", i, ps[i], want[i])
		}
	}
	if s := ps.String(); s != "confidence=1e-07,probabilities.setosa=0.5,probabilities.a=b=1" {
		t.Errorf("String() = %q", s)
	}

	for _, tc := range []struct{ value, want string }{
		{"", `empty entry in ""`},
		{"confidence=1,", `empty entry in "confidence=1,"`},
		{"confidence", `"confidence" is not FIELD=AMOUNT`},
		{"=1", `"=1" is not FIELD=AMOUNT`},
		{"confidence=", `"confidence=" is not FIELD=AMOUNT`},
		{"confidence=1e-7,probabilities.setosa=abc", `"probabilities.setosa=abc": the amount "abc" is not a number`},
		{"confidence=1e999", `the amount "1e999" is out of range`},
	} {
		before := len(ps)
		err := ps.Set(tc.value)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Set(%q) = %v, want %q", tc.value, err, tc.want)
		}
		if len(ps) != before {
			t.Errorf("Set(%q) failed but added entries: %v", tc.value, ps)
		}
	}
}

// TestValidateForNamesTheModelsFields: a -perturb field must name the
// confidence or a class of the model; the message lists the fields.
func TestValidateForNamesTheModelsFields(t *testing.T) {
	m := loadModel(t, "iris-v1.json")
	const fields = "the fields are confidence, probabilities.setosa, probabilities.versicolor, probabilities.virginica"
	for _, tc := range []struct {
		name    string
		perturb Perturbations
		want    []string
	}{
		{"every field", Perturbations{{"confidence", 1}, {"probabilities.setosa", 0}, {"probabilities.versicolor", 1e-9}, {"probabilities.virginica", 0.5}}, nil},
		{"unknown class", Perturbations{{"probabilities.rose", 0.1}},
			[]string{`-perturb: unknown field "probabilities.rose" (model "iris" has no class "rose"): ` + fields}},
		{"unknown field", Perturbations{{"latency", 0.1}}, []string{`-perturb: unknown field "latency": ` + fields}},
		{"case matters", Perturbations{{"Confidence", 0.1}}, []string{`unknown field "Confidence"`}},
		{"no class", Perturbations{{"probabilities.", 0.1}}, []string{`has no class ""`}},
		{"and the amounts", Perturbations{{"probabilities.rose", 2}}, []string{`unknown field "probabilities.rose"`, "got 2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Perturb: tc.perturb}
			err := cfg.ValidateFor(m)
			if !wantErrors(t, err, tc.want) {
				return
			}
			if _, err := New(m, cfg); err == nil {
				t.Error("New accepted it")
			}
		})
	}
}
