// Package model holds the small classifiers that Sluice's model workers serve:
// softmax (multinomial logistic) regression and a multilayer perceptron with
// one or two ReLU hidden layers and a softmax output. It reads and writes
// them as JSON model files, predicts with them without allocating, and trains
// them deterministically from a CSV file.
//
// # The model file
//
// A model file is one JSON object with its keys in a fixed order (Encode
// writes structs, never maps, so the same model is always the same bytes):
//
//	format_version  1
//	name, version   what the worker serves, e.g. "iris", "2"
//	kind            "softmax" or "mlp"
//	features        input order, e.g. sepal_length ... petal_width
//	classes         output order, e.g. setosa, versicolor, virginica
//	training        provenance: data file name and SHA-256, rows, optimiser,
//	                hidden widths, epochs, learning rate, L2, seed and the
//	                training accuracy (optional in a hand-written file)
//	scaling         per-feature mean and std: the model sees (x-mean)/std
//	layers          weights (one row per output unit, one column per input)
//	                and biases; hidden layers apply ReLU, the last softmax
//
// Parse checks every shape and value and reports every problem it finds, so a
// broken file is fixed in one pass.
//
// # Arithmetic that is the same on every machine
//
// Training must produce byte-identical files on any machine (acceptance point
// 3 of issue 3), so the arithmetic that feeds a model file avoids the two
// things Go lets vary by platform. First, the compiler may fuse x*y+z into
// one FMA instruction, which rounds once instead of twice: it does so on
// arm64, ppc64le, s390x and riscv64, and on amd64 when built with
// GOAMD64=v3. The Go spec's escape hatch is an explicit conversion, which
// forces the rounding of the product, so every product that is then added
// is written float64(x*y). Second, math.Exp is assembly on amd64, arm64,
// loong64 and s390x, with no promise that they agree to the last bit, so the
// softmax uses expNonPositive, a pure-Go port of the same algorithm written
// with the same conversions. math.Sqrt is correctly rounded by IEEE 754
// everywhere and is used as is. Random numbers come from math/rand/v2's PCG,
// which is specified bit for bit, as integers made uniform by exact
// arithmetic (NormFloat64 would consult math.Exp). Checked under QEMU on
// arm64, ppc64le, riscv64 and s390x: the shipped models rebuild identically.
package model

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
)

// FormatVersion is the model file format this package reads and writes.
const FormatVersion = 1

// The model kinds.
const (
	KindSoftmax = "softmax"
	KindMLP     = "mlp"
)

// Bounds that Parse enforces. They keep Predict's scratch space on the stack
// (MaxFeatures, MaxHidden) and every intermediate value finite for an input
// of ordinary size (the magnitude bounds): with them, even an all-zero input
// to the largest allowed model stays below about 1e50, far from overflow.
const (
	MaxFeatures     = 256 // inputs per row
	MaxClasses      = 256 // outputs
	MaxHidden       = 64  // units in one hidden layer
	MaxHiddenLayers = 2   // hidden layers in an MLP

	maxAbsWeight = 1e6  // |weight| and |bias|; trained weights on standardised inputs are O(1)
	maxAbsMean   = 1e12 // |scaling.mean|
	minStd       = 1e-12
	maxStd       = 1e12
	maxProblems  = 20 // problems Parse lists before it summarises the rest
)

// Model is a classifier loaded from a model file. It is immutable after
// Parse or Train and safe for concurrent use.
type Model struct {
	Name     string   // e.g. "iris"
	Version  string   // e.g. "1"
	Kind     string   // KindSoftmax or KindMLP
	Features []string // input order, e.g. sepal_length, sepal_width, petal_length, petal_width
	Classes  []string // output order, e.g. setosa, versicolor, virginica

	// Training records how the model was trained; nil for a file that does
	// not say. Treat it as read-only.
	Training *Training

	mean, std []float64 // input standardisation, one per feature
	layers    []layer   // hidden layers (ReLU) then the output layer (softmax)
}

// Training is a model's provenance: the data and settings it was trained
// with. The settings are exactly the train command's flags, so a model can be
// rebuilt from its own file.
type Training struct {
	Data          string  `json:"data"`        // base name of the CSV file, e.g. "iris.csv"
	DataSHA256    string  `json:"data_sha256"` // hex SHA-256 of that file's bytes
	Rows          int     `json:"rows"`
	Optimizer     string  `json:"optimizer"`        // "adam" (full batch)
	Hidden        []int   `json:"hidden,omitempty"` // hidden layer widths; empty for softmax
	Epochs        int     `json:"epochs"`
	LearningRate  float64 `json:"learning_rate"`
	L2            float64 `json:"l2"`
	Seed          uint64  `json:"seed"`
	TrainAccuracy float64 `json:"train_accuracy"` // fraction of training rows predicted correctly
}

// layer is a dense layer: out = w·in + b, w stored row-major with one row of
// length in per output unit.
type layer struct {
	in, out int
	w, b    []float64
}

// Hidden returns the widths of the hidden layers: empty for softmax.
func (m *Model) Hidden() []int {
	var widths []int
	for _, l := range m.layers[:max(len(m.layers)-1, 0)] {
		widths = append(widths, l.out)
	}
	return widths
}

// The file's JSON shape. Field order here is key order in the file.
type file struct {
	FormatVersion int         `json:"format_version"`
	Name          string      `json:"name"`
	Version       string      `json:"version"`
	Kind          string      `json:"kind"`
	Features      []string    `json:"features"`
	Classes       []string    `json:"classes"`
	Training      *Training   `json:"training,omitempty"`
	Scaling       fileScaling `json:"scaling"`
	Layers        []fileLayer `json:"layers"`
}

type fileScaling struct {
	Mean []float64 `json:"mean"`
	Std  []float64 `json:"std"`
}

type fileLayer struct {
	Weights [][]float64 `json:"weights"` // [output unit][input]
	Biases  []float64   `json:"biases"`
}

// ParseError lists everything wrong with a model file.
type ParseError struct {
	Problems []string
}

func (e *ParseError) Error() string {
	return "model file: " + strings.Join(e.Problems, "; ")
}

// Load reads and parses a model file.
func Load(path string) (*Model, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load model: %w", err)
	}
	m, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("load model %s: %w", path, err)
	}
	return m, nil
}

// Parse decodes a model file strictly (unknown keys and trailing data are
// errors) and validates every shape and value. A validation failure is a
// *ParseError naming each problem.
func Parse(data []byte) (*Model, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f file
	if err := dec.Decode(&f); err != nil {
		return nil, &ParseError{Problems: []string{"invalid JSON: " + strings.TrimPrefix(err.Error(), "json: ")}}
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, &ParseError{Problems: []string{"invalid JSON: data after the model object"}}
	}
	var p problems
	validateFile(&f, &p)
	if err := p.err(); err != nil {
		return nil, err
	}
	m := &Model{
		Name:     f.Name,
		Version:  f.Version,
		Kind:     f.Kind,
		Features: f.Features,
		Classes:  f.Classes,
		Training: f.Training,
		mean:     f.Scaling.Mean,
		std:      f.Scaling.Std,
	}
	for _, fl := range f.Layers {
		l := layer{in: len(fl.Weights[0]), out: len(fl.Weights), b: fl.Biases}
		l.w = make([]float64, 0, l.in*l.out)
		for _, row := range fl.Weights {
			l.w = append(l.w, row...)
		}
		m.layers = append(m.layers, l)
	}
	return m, nil
}

// Encode writes the model file for m: the same model always gives the same
// bytes. Arrays of numbers or strings sit on one line each, so a weight
// matrix reads as a matrix.
func (m *Model) Encode() ([]byte, error) {
	f := m.file()
	var p problems
	validateFile(&f, &p)
	if err := p.err(); err != nil {
		return nil, err
	}
	indented, err := json.MarshalIndent(&f, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode model: %w", err)
	}
	out := joinScalarArrays(indented)
	return append(out, '\n'), nil
}

func (m *Model) file() file {
	f := file{
		FormatVersion: FormatVersion,
		Name:          m.Name,
		Version:       m.Version,
		Kind:          m.Kind,
		Features:      m.Features,
		Classes:       m.Classes,
		Training:      m.Training,
		Scaling:       fileScaling{Mean: m.mean, Std: m.std},
	}
	for _, l := range m.layers {
		fl := fileLayer{Biases: l.b}
		for o := range l.out {
			fl.Weights = append(fl.Weights, l.w[o*l.in:(o+1)*l.in])
		}
		f.Layers = append(f.Layers, fl)
	}
	return f
}

// joinScalarArrays puts each JSON array whose elements are all numbers or
// strings on one line. It reads json.MarshalIndent output, where such an
// array is an opening line ending in "[", one line per element, and a line
// starting with "]"; anything else passes through unchanged.
func joinScalarArrays(indented []byte) []byte {
	lines := bytes.Split(indented, []byte("\n"))
	out := make([]byte, 0, len(indented))
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if bytes.HasSuffix(line, []byte("[")) {
			j := i + 1
			for j < len(lines) && isScalarElement(lines[j]) {
				j++
			}
			if j > i+1 && j < len(lines) && bytes.HasPrefix(bytes.TrimLeft(lines[j], " "), []byte("]")) {
				out = append(out, line...)
				for k := i + 1; k < j; k++ {
					elem := bytes.TrimSpace(lines[k])
					out = append(out, elem...)
					if k < j-1 {
						out = append(out, ' ')
					}
				}
				out = append(out, bytes.TrimLeft(lines[j], " ")...)
				out = append(out, '\n')
				i = j
				continue
			}
		}
		out = append(out, line...)
		out = append(out, '\n')
	}
	return bytes.TrimSuffix(out, []byte("\n"))
}

// isScalarElement reports whether an indented line is one number or string
// array element (with its comma, if any).
func isScalarElement(line []byte) bool {
	elem := bytes.TrimSuffix(bytes.TrimSpace(line), []byte(","))
	if len(elem) == 0 {
		return false
	}
	if c := elem[0]; c != '"' && c != '-' && (c < '0' || c > '9') {
		return false
	}
	return json.Valid(elem)
}

// problems collects validation failures, listing the first maxProblems.
type problems struct {
	list    []string
	dropped int
}

func (p *problems) addf(format string, args ...any) {
	if len(p.list) == maxProblems {
		p.dropped++
		return
	}
	p.list = append(p.list, fmt.Sprintf(format, args...))
}

func (p *problems) err() error {
	if len(p.list) == 0 {
		return nil
	}
	list := p.list
	if p.dropped > 0 {
		list = append(list, fmt.Sprintf("and %d more problems", p.dropped))
	}
	return &ParseError{Problems: list}
}

func validateFile(f *file, p *problems) {
	if f.FormatVersion != FormatVersion {
		if f.FormatVersion == 0 {
			p.addf("format_version is missing, want %d", FormatVersion)
		} else {
			p.addf("format_version is %d, this build reads %d", f.FormatVersion, FormatVersion)
		}
	}
	if err := checkIdent(f.Name); err != "" {
		p.addf("name %s", err)
	}
	if err := checkIdent(f.Version); err != "" {
		p.addf("version %s", err)
	}
	var hiddenLayers []int // how many hidden layers the kind allows
	switch f.Kind {
	case KindSoftmax:
		hiddenLayers = []int{0}
	case KindMLP:
		hiddenLayers = []int{1, MaxHiddenLayers}
	case "":
		p.addf("kind is missing, want %q or %q", KindSoftmax, KindMLP)
	default:
		p.addf("kind is %q, want %q or %q", f.Kind, KindSoftmax, KindMLP)
	}
	checkNames(p, "features", f.Features, 1, MaxFeatures)
	checkNames(p, "classes", f.Classes, 2, MaxClasses)
	checkScaling(p, f.Scaling, len(f.Features))
	widths := checkLayers(p, f.Layers, len(f.Features), len(f.Classes), hiddenLayers)
	if f.Training != nil {
		checkTraining(p, f.Training, f.Kind, widths)
	}
}

// checkIdent checks a name or version, which appear in URL paths and metric
// labels: 1 to 64 letters, digits, '.', '_' or '-'. It returns what is wrong,
// or "".
func checkIdent(s string) string {
	if s == "" {
		return "is missing"
	}
	if len(s) > 64 {
		return fmt.Sprintf("%q is longer than 64 characters", s)
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Sprintf("%q has %q, use letters, digits, '.', '_' and '-'", s, c)
		}
	}
	return ""
}

func checkNames(p *problems, field string, names []string, minCount, maxCount int) {
	switch {
	case len(names) < minCount:
		p.addf("%s has %d names, want at least %d", field, len(names), minCount)
		return
	case len(names) > maxCount:
		p.addf("%s has %d names, at most %d are allowed", field, len(names), maxCount)
		return
	}
	for i, n := range names {
		if strings.TrimSpace(n) == "" {
			p.addf("%s[%d] is empty", field, i)
			continue
		}
		for j := range i {
			if names[j] == n {
				p.addf("%s[%d] %q repeats %s[%d]", field, i, n, field, j)
				break
			}
		}
	}
}

func checkScaling(p *problems, s fileScaling, features int) {
	if len(s.Mean) != features {
		p.addf("scaling.mean has %d values, want %d, one per feature", len(s.Mean), features)
	}
	if len(s.Std) != features {
		p.addf("scaling.std has %d values, want %d, one per feature", len(s.Std), features)
	}
	for i, v := range s.Mean {
		if math.IsNaN(v) || math.Abs(v) > maxAbsMean {
			p.addf("scaling.mean[%d] is %g, want a finite value within ±%g", i, v, maxAbsMean)
		}
	}
	for i, v := range s.Std {
		if math.IsNaN(v) || v < minStd || v > maxStd {
			p.addf("scaling.std[%d] is %g, want a positive value from %g to %g", i, v, minStd, maxStd)
		}
	}
}

// checkLayers checks the layer shapes against the feature and class counts
// and the number of hidden layers the kind allows, and every weight and bias.
// It returns the hidden widths it found.
func checkLayers(p *problems, layers []fileLayer, features, classes int, hiddenLayers []int) []int {
	if hiddenLayers != nil && !countAllowed(len(layers)-1, hiddenLayers) {
		want := "1"
		if hiddenLayers[0] > 0 {
			want = fmt.Sprintf("%d to %d", hiddenLayers[0]+1, hiddenLayers[len(hiddenLayers)-1]+1)
		}
		p.addf("layers has %d layers, want %s for this kind", len(layers), want)
		return nil
	}
	if len(layers) == 0 {
		p.addf("layers is missing")
		return nil
	}
	var widths []int
	in, inName := features, "the feature count"
	for li, l := range layers {
		name := fmt.Sprintf("layers[%d]", li)
		out := len(l.Weights)
		last := li == len(layers)-1
		switch {
		case last && out != classes:
			p.addf("%s.weights has %d rows, the output layer needs %d, one per class", name, out, classes)
		case !last && (out < 1 || out > MaxHidden):
			p.addf("%s.weights has %d rows, a hidden layer has 1 to %d units", name, out, MaxHidden)
		}
		if len(l.Biases) != out {
			p.addf("%s.biases has %d values, want %d, one per weight row", name, len(l.Biases), out)
		}
		for r, row := range l.Weights {
			if len(row) != in {
				p.addf("%s.weights[%d] has %d values, want %d (%s)", name, r, len(row), in, inName)
				continue
			}
			for c, v := range row {
				if math.IsNaN(v) || math.Abs(v) > maxAbsWeight {
					p.addf("%s.weights[%d][%d] is %g, want a finite value within ±%g", name, r, c, v, maxAbsWeight)
				}
			}
		}
		for i, v := range l.Biases {
			if math.IsNaN(v) || math.Abs(v) > maxAbsWeight {
				p.addf("%s.biases[%d] is %g, want a finite value within ±%g", name, i, v, maxAbsWeight)
			}
		}
		if !last {
			widths = append(widths, out)
		}
		in, inName = out, "the width of "+name
	}
	return widths
}

func countAllowed(n int, allowed []int) bool {
	return n >= allowed[0] && n <= allowed[len(allowed)-1]
}

func checkTraining(p *problems, t *Training, kind string, widths []int) {
	if t.Data == "" {
		p.addf("training.data is missing")
	}
	if len(t.DataSHA256) != 64 || strings.Trim(t.DataSHA256, "0123456789abcdef") != "" {
		p.addf("training.data_sha256 %q is not 64 lowercase hex digits", t.DataSHA256)
	}
	if t.Rows < 1 {
		p.addf("training.rows is %d, want at least 1", t.Rows)
	}
	if t.Optimizer != OptimizerAdam {
		p.addf("training.optimizer is %q, want %q", t.Optimizer, OptimizerAdam)
	}
	if t.Epochs < 1 {
		p.addf("training.epochs is %d, want at least 1", t.Epochs)
	}
	if !(t.LearningRate > 0) || math.IsInf(t.LearningRate, 1) {
		p.addf("training.learning_rate is %g, want a positive number", t.LearningRate)
	}
	if !(t.L2 >= 0) || math.IsInf(t.L2, 1) {
		p.addf("training.l2 is %g, want zero or a positive number", t.L2)
	}
	if !(t.TrainAccuracy >= 0 && t.TrainAccuracy <= 1) {
		p.addf("training.train_accuracy is %g, want 0 to 1", t.TrainAccuracy)
	}
	if kind == KindSoftmax && len(t.Hidden) > 0 {
		p.addf("training.hidden is %v, but a softmax model has no hidden layers", t.Hidden)
	}
	if kind == KindMLP && widths != nil && !slices.Equal(t.Hidden, widths) {
		p.addf("training.hidden is %v, but the layers have hidden widths %v", t.Hidden, widths)
	}
}
