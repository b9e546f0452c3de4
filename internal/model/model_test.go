package model

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseRejects(t *testing.T) {
	valid := string(marshal(t, tinyMLP()))
	tests := []struct {
		name   string
		raw    string      // the file as text, or
		mutate func(*file) // a change to the valid tiny MLP
		want   string      // in the error
	}{
		{name: "empty", raw: "", want: "invalid JSON: EOF"},
		{name: "truncated", raw: valid[:40], want: "invalid JSON: unexpected EOF"},
		{name: "not an object", raw: "[1,2]", want: "invalid JSON: cannot unmarshal array"},
		{name: "trailing data", raw: valid + "{}", want: "data after the model object"},
		{name: "trailing brace", raw: valid + "}", want: "data after the model object"},
		{name: "unknown key", raw: strings.Replace(valid, `"name"`, `"colour":"blue","name"`, 1), want: `unknown field "colour"`},
		{name: "string for a list", raw: strings.Replace(valid, `"features":["a","b"]`, `"features":"a,b"`, 1), want: "cannot unmarshal string"},
		{name: "number too large for float64", raw: strings.Replace(valid, `"mean":[0,0]`, `"mean":[0,1e999]`, 1), want: "cannot unmarshal number 1e999"},
		{name: "format_version missing", mutate: func(f *file) { f.FormatVersion = 0 }, want: "format_version is missing, want 1"},
		{name: "format_version from the future", mutate: func(f *file) { f.FormatVersion = 2 }, want: "format_version is 2, this build reads 1"},
		{name: "name missing", mutate: func(f *file) { f.Name = "" }, want: "name is missing"},
		{name: "name with a slash", mutate: func(f *file) { f.Name = "ir/is" }, want: `name "ir/is" has '/'`},
		{name: "version missing", mutate: func(f *file) { f.Version = "" }, want: "version is missing"},
		{name: "version too long", mutate: func(f *file) { f.Version = strings.Repeat("9", 65) }, want: "longer than 64 characters"},
		{name: "kind missing", mutate: func(f *file) { f.Kind = "" }, want: `kind is missing, want "softmax" or "mlp"`},
		{name: "kind unknown", mutate: func(f *file) { f.Kind = "tree" }, want: `kind is "tree"`},
		{name: "no features", mutate: func(f *file) { f.Features = nil }, want: "features has 0 names, want at least 1"},
		{name: "too many features", mutate: func(f *file) { f.Features = make([]string, MaxFeatures+1) }, want: "features has 257 names, at most 256"},
		{name: "feature repeated", mutate: func(f *file) { f.Features = []string{"a", "a"} }, want: `features[1] "a" repeats features[0]`},
		{name: "feature unnamed", mutate: func(f *file) { f.Features = []string{"a", " "} }, want: "features[1] is empty"},
		{name: "one class", mutate: func(f *file) { f.Classes = []string{"yes"} }, want: "classes has 1 names, want at least 2"},
		{name: "class repeated", mutate: func(f *file) { f.Classes = []string{"yes", "yes"} }, want: `classes[1] "yes" repeats classes[0]`},
		{name: "mean short", mutate: func(f *file) { f.Scaling.Mean = []float64{0} }, want: "scaling.mean has 1 values, want 2"},
		{name: "std long", mutate: func(f *file) { f.Scaling.Std = []float64{1, 1, 1} }, want: "scaling.std has 3 values, want 2"},
		{name: "std zero", mutate: func(f *file) { f.Scaling.Std[1] = 0 }, want: "scaling.std[1] is 0, want a positive value"},
		{name: "std negative", mutate: func(f *file) { f.Scaling.Std[0] = -1 }, want: "scaling.std[0] is -1"},
		{name: "mean huge", mutate: func(f *file) { f.Scaling.Mean[0] = 1e300 }, want: "scaling.mean[0] is 1e+300, want a finite value"},
		{name: "no layers", mutate: func(f *file) { f.Layers = nil }, want: "layers has 0 layers, want 2 to 3 for this kind"},
		{name: "softmax with a hidden layer", mutate: func(f *file) { f.Kind = KindSoftmax; f.Training = nil }, want: "layers has 2 layers, want 1 for this kind"},
		{name: "mlp without a hidden layer", mutate: func(f *file) { f.Layers = f.Layers[1:] }, want: "layers has 1 layers, want 2 to 3"},
		{name: "mlp with three hidden layers", mutate: func(f *file) {
			f.Layers = []fileLayer{f.Layers[0], f.Layers[0], f.Layers[0], f.Layers[1]}
		}, want: "layers has 4 layers, want 2 to 3"},
		{name: "weight row short", mutate: func(f *file) { f.Layers[0].Weights[1] = []float64{1} }, want: "layers[0].weights[1] has 1 values, want 2 (the feature count)"},
		{name: "weight row long in the output layer", mutate: func(f *file) { f.Layers[1].Weights[0] = []float64{1, 2, 3} }, want: "layers[1].weights[0] has 3 values, want 2 (the width of layers[0])"},
		{name: "output rows not one per class", mutate: func(f *file) { f.Layers[1].Weights = f.Layers[1].Weights[:1] }, want: "layers[1].weights has 1 rows, the output layer needs 2, one per class"},
		{name: "biases short", mutate: func(f *file) { f.Layers[0].Biases = []float64{0} }, want: "layers[0].biases has 1 values, want 2, one per weight row"},
		{name: "hidden layer too wide", mutate: func(f *file) {
			f.Layers[0].Weights = make([][]float64, MaxHidden+1)
			f.Layers[0].Biases = make([]float64, MaxHidden+1)
		}, want: "layers[0].weights has 65 rows, a hidden layer has 1 to 64 units"},
		{name: "weight huge", mutate: func(f *file) { f.Layers[1].Weights[1][0] = -2e6 }, want: "layers[1].weights[1][0] is -2e+06, want a finite value within ±1e+06"},
		{name: "bias huge", mutate: func(f *file) { f.Layers[0].Biases[1] = 1e7 }, want: "layers[0].biases[1] is 1e+07"},
		{name: "training data missing", mutate: func(f *file) { f.Training.Data = "" }, want: "training.data is missing"},
		{name: "training checksum not hex", mutate: func(f *file) { f.Training.DataSHA256 = "abc" }, want: `training.data_sha256 "abc" is not 64 lowercase hex digits`},
		{name: "training optimizer unknown", mutate: func(f *file) { f.Training.Optimizer = "sgd" }, want: `training.optimizer is "sgd", want "adam"`},
		{name: "training epochs zero", mutate: func(f *file) { f.Training.Epochs = 0 }, want: "training.epochs is 0"},
		{name: "training rows zero", mutate: func(f *file) { f.Training.Rows = 0 }, want: "training.rows is 0"},
		{name: "training learning rate zero", mutate: func(f *file) { f.Training.LearningRate = 0 }, want: "training.learning_rate is 0"},
		{name: "training l2 negative", mutate: func(f *file) { f.Training.L2 = -1 }, want: "training.l2 is -1"},
		{name: "training accuracy over 1", mutate: func(f *file) { f.Training.TrainAccuracy = 1.5 }, want: "training.train_accuracy is 1.5"},
		{name: "training hidden disagrees with layers", mutate: func(f *file) { f.Training.Hidden = []int{16} }, want: "training.hidden is [16], but the layers have hidden widths [2]"},
		{name: "training hidden on softmax", mutate: func(f *file) {
			f.Kind = KindSoftmax
			f.Layers = f.Layers[1:]
		}, want: "training.hidden is [2], but a softmax model has no hidden layers"},
		{name: "every problem listed, up to a limit", mutate: func(f *file) {
			f.Name, f.Version = "", ""
			f.Layers[0].Weights = [][]float64{{1e9, 1e9}, {1e9, 1e9}}
			f.Layers[1].Weights = [][]float64{{1e9, 1e9}, {1e9, 1e9}}
			f.Scaling.Std = []float64{0, 0}
			f.Scaling.Mean = []float64{1e13, 1e13}
			f.Layers[0].Biases = []float64{1e9, 1e9}
			f.Layers[1].Biases = []float64{1e9, 1e9}
			f.Training.Epochs = 0
			f.Training.Rows = 0
			f.Training.L2 = -1
		}, want: "name is missing; version is missing; scaling.mean[0]"},
		{name: "more problems than the limit", mutate: func(f *file) {
			f.Layers[0].Weights = [][]float64{{1e9, 1e9}, {1e9, 1e9}}
			f.Layers[1].Weights = [][]float64{{1e9, 1e9}, {1e9, 1e9}}
			f.Scaling.Std = []float64{0, 0}
			f.Scaling.Mean = []float64{1e13, 1e13}
			f.Layers[0].Biases = []float64{1e9, 1e9}
			f.Layers[1].Biases = []float64{1e9, 1e9}
			f.Training.Epochs, f.Training.Rows, f.Training.L2, f.Training.LearningRate = 0, 0, -1, 0
			f.Training.TrainAccuracy, f.Training.Optimizer, f.Training.Data = 2, "", ""
			f.Name, f.Version, f.Kind = "", "", "?"
		}, want: "and 6 more problems"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := []byte(tt.raw)
			if tt.mutate != nil {
				f := tinyMLP()
				tt.mutate(f)
				data = marshal(t, f)
			}
			m, err := Parse(data)
			if err == nil {
				t.Fatalf("Parse accepted the file: %+v", m)
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is a %T, want *ParseError", err, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q\ndoes not contain %q", err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "model file: ") {
				t.Errorf("error %q does not start with \"model file: \"", err)
			}
		})
	}
}

func TestParseAcceptsTheTinyModels(t *testing.T) {
	for _, f := range []*file{tinySoftmax(), tinyMLP()} {
		m := mustParse(t, marshal(t, f))
		if m.Name != "tiny" || m.Kind != f.Kind || len(m.Features) != 2 || len(m.Classes) != len(f.Classes) {
			t.Errorf("parsed %+v from %+v", m, f)
		}
	}
	m := mustParse(t, marshal(t, tinyMLP()))
	if got := m.Hidden(); len(got) != 1 || got[0] != 2 {
		t.Errorf("Hidden() = %v, want [2]", got)
	}
	if m.Training == nil || m.Training.Seed != 1 {
		t.Errorf("Training = %+v, want the file's", m.Training)
	}
	if got := mustParse(t, marshal(t, tinySoftmax())).Hidden(); len(got) != 0 {
		t.Errorf("softmax Hidden() = %v, want none", got)
	}
}

// Encode gives a file that Parse reads back to the same model, and is the
// same JSON as the plain encoder's, only laid out differently.
func TestEncodeRoundTrips(t *testing.T) {
	for _, f := range []*file{tinySoftmax(), tinyMLP()} {
		m := mustParse(t, marshal(t, f))
		encoded, err := m.Encode()
		if err != nil {
			t.Fatal(err)
		}
		again, err := mustParse(t, encoded).Encode()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(encoded, again) {
			t.Fatalf("Encode(Parse(Encode(m))) differs:\n%s\n%s", encoded, again)
		}
		var compactEncoded, compactPlain bytes.Buffer
		if err := json.Compact(&compactEncoded, encoded); err != nil {
			t.Fatal(err)
		}
		if err := json.Compact(&compactPlain, marshal(t, f)); err != nil {
			t.Fatal(err)
		}
		if compactEncoded.String() != compactPlain.String() {
			t.Fatalf("Encode is not the plain JSON:\n%s\n%s", compactEncoded.String(), compactPlain.String())
		}
	}
}

func TestEncodeLayout(t *testing.T) {
	encoded, err := mustParse(t, marshal(t, tinyMLP())).Encode()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"{\n  \"format_version\": 1,\n  \"name\": \"tiny\",",
		`  "features": ["a", "b"],`,
		`      "weights": [` + "\n" + `        [1, -1],` + "\n" + `        [-1, 1]` + "\n      ],",
		`      "biases": [0.1, 0]`,
		`    "hidden": [2],`,
	} {
		if !strings.Contains(string(encoded), want) {
			t.Errorf("encoded file lacks %q:\n%s", want, encoded)
		}
	}
	if !bytes.HasSuffix(encoded, []byte("}\n")) {
		t.Errorf("encoded file does not end in a newline")
	}
}

func TestJoinScalarArraysLeavesOtherArraysAlone(t *testing.T) {
	in := "{\n  \"a\": [\n    {\n      \"b\": 1\n    }\n  ],\n  \"c\": [\n    \"x],\",\n    -1.5e-7\n  ],\n  \"d\": []\n}"
	want := "{\n  \"a\": [\n    {\n      \"b\": 1\n    }\n  ],\n  \"c\": [\"x],\", -1.5e-7],\n  \"d\": []\n}"
	if got := string(joinScalarArrays([]byte(in))); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m.json")
	if err := os.WriteFile(path, marshal(t, tinySoftmax()), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(filepath.Join(dir, "missing.json")); err == nil || !strings.Contains(err.Error(), "missing.json") {
		t.Errorf("Load of a missing file: %v, want an error naming it", err)
	}
	if err := os.WriteFile(path, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "format_version is missing") {
		t.Errorf("Load of an empty model: %v, want an error naming the file and the problem", err)
	}
}
