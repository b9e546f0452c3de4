package model

import (
	"bytes"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
)

// OptimizerAdam is the only optimiser: full-batch Adam (Kingma and Ba, 2015,
// Algorithm 1) with the paper's defaults for beta1, beta2 and epsilon.
const OptimizerAdam = "adam"

const (
	adamBeta1   = 0.9
	adamBeta2   = 0.999
	adamEpsilon = 1e-8

	// pcgStream is the second PCG seed word, fixed so that the -seed flag
	// alone picks the initial weights.
	pcgStream = 0x736c75696365 // "sluice"

	maxEpochs = 1_000_000
)

// Dataset is a parsed training file.
type Dataset struct {
	Source   string      // base name of the file, recorded in the model
	SHA256   string      // hex SHA-256 of the file's bytes, recorded in the model
	Features []string    // from the header row, all columns but the last
	Classes  []string    // the distinct labels of the last column, sorted
	X        [][]float64 // one row of raw feature values per data row
	Y        []int       // index into Classes per data row
}

// ParseCSV reads a training file: a header row naming the columns, then one
// row per example with numeric features and the class label last. source
// names the file in errors and in the model's provenance.
func ParseCSV(source string, data []byte) (*Dataset, error) {
	sum := sha256.Sum256(data)
	ds := &Dataset{Source: source, SHA256: hex.EncodeToString(sum[:])}
	r := csv.NewReader(bytes.NewReader(data))
	header, err := r.Read()
	if err == io.EOF {
		return nil, fmt.Errorf("%s: empty file, want a header row and data rows", source)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	if len(header) < 2 {
		return nil, fmt.Errorf("%s:1: header has %d columns, want at least one feature and the label", source, len(header))
	}
	for i, name := range header[:len(header)-1] {
		name = strings.TrimSpace(name)
		if name == "" {
			return nil, fmt.Errorf("%s:1: column %d has no name", source, i+1)
		}
		if slices.Contains(ds.Features, name) {
			return nil, fmt.Errorf("%s:1: column %d repeats the name %q", source, i+1, name)
		}
		ds.Features = append(ds.Features, name)
	}
	if len(ds.Features) > MaxFeatures {
		return nil, fmt.Errorf("%s:1: %d features, at most %d are allowed", source, len(ds.Features), MaxFeatures)
	}
	var labels []string
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", source, err)
		}
		line, _ := r.FieldPos(0)
		row := make([]float64, len(ds.Features))
		for i := range row {
			v, err := strconv.ParseFloat(strings.TrimSpace(rec[i]), 64)
			if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("%s:%d: %s is %q, want a finite number", source, line, ds.Features[i], rec[i])
			}
			row[i] = v
		}
		label := strings.TrimSpace(rec[len(rec)-1])
		if label == "" {
			return nil, fmt.Errorf("%s:%d: the label (last column) is empty", source, line)
		}
		ds.X = append(ds.X, row)
		labels = append(labels, label)
	}
	if len(ds.X) == 0 {
		return nil, fmt.Errorf("%s: no data rows after the header", source)
	}
	ds.Classes = slices.Compact(slices.Sorted(slices.Values(labels)))
	if len(ds.Classes) < 2 {
		return nil, fmt.Errorf("%s: only one class (%q), want at least two", source, ds.Classes[0])
	}
	if len(ds.Classes) > MaxClasses {
		return nil, fmt.Errorf("%s: %d classes, at most %d are allowed", source, len(ds.Classes), MaxClasses)
	}
	for _, label := range labels {
		i, _ := slices.BinarySearch(ds.Classes, label)
		ds.Y = append(ds.Y, i)
	}
	return ds, nil
}

// TrainOptions are the settings of one training run; all are recorded in the
// model's Training.
type TrainOptions struct {
	Name, Version string
	Kind          string  // KindSoftmax or KindMLP
	Hidden        []int   // MLP hidden widths, 1 or 2 of them; none for softmax
	Epochs        int     // full passes over the data, one Adam step each
	LearningRate  float64 // Adam step size
	L2            float64 // penalty (L2/2)·Σw² on weights, not biases
	Seed          uint64  // picks the initial weights
}

func (o *TrainOptions) validate() error {
	var errs []string
	if msg := checkIdent(o.Name); msg != "" {
		errs = append(errs, fmt.Sprintf("name %s", msg))
	}
	if msg := checkIdent(o.Version); msg != "" {
		errs = append(errs, fmt.Sprintf("version %s", msg))
	}
	switch o.Kind {
	case KindSoftmax:
		if len(o.Hidden) > 0 {
			errs = append(errs, "a softmax model has no hidden layers")
		}
	case KindMLP:
		if len(o.Hidden) < 1 || len(o.Hidden) > MaxHiddenLayers {
			errs = append(errs, fmt.Sprintf("an mlp has 1 to %d hidden layers, not %d", MaxHiddenLayers, len(o.Hidden)))
		}
		for _, w := range o.Hidden {
			if w < 1 || w > MaxHidden {
				errs = append(errs, fmt.Sprintf("hidden width %d is out of range 1 to %d", w, MaxHidden))
			}
		}
	default:
		errs = append(errs, fmt.Sprintf("kind %q, want %q or %q", o.Kind, KindSoftmax, KindMLP))
	}
	if o.Epochs < 1 || o.Epochs > maxEpochs {
		errs = append(errs, fmt.Sprintf("epochs %d is out of range 1 to %d", o.Epochs, maxEpochs))
	}
	if !(o.LearningRate > 0) || math.IsInf(o.LearningRate, 1) {
		errs = append(errs, fmt.Sprintf("learning rate %g, want a positive number", o.LearningRate))
	}
	if !(o.L2 >= 0) || math.IsInf(o.L2, 1) {
		errs = append(errs, fmt.Sprintf("l2 %g, want zero or a positive number", o.L2))
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// Train fits a model to ds: inputs standardised with the data's mean and
// (population) standard deviation, weights initialised from a PCG seeded with
// o.Seed (He uniform before a ReLU, Glorot uniform before the softmax; biases
// zero), then o.Epochs steps of full-batch Adam on the mean cross-entropy
// plus the L2 penalty. Every step runs in one goroutine in a fixed order, so
// the same data and options give the same model, bit for bit, on any machine
// (see the package comment).
func Train(ds *Dataset, o TrainOptions) (*Model, error) {
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	m := &Model{
		Name:     o.Name,
		Version:  o.Version,
		Kind:     o.Kind,
		Features: slices.Clone(ds.Features),
		Classes:  slices.Clone(ds.Classes),
	}
	m.mean, m.std = fitScaling(ds.X, len(ds.Features))
	scaled := make([][]float64, len(ds.X))
	for r, x := range ds.X {
		scaled[r] = make([]float64, len(x))
		m.standardize(x, scaled[r])
	}

	rng := rand.New(rand.NewPCG(o.Seed, pcgStream))
	widths := append(append([]int{len(ds.Features)}, o.Hidden...), len(ds.Classes))
	for i := range len(widths) - 1 {
		in, out := widths[i], widths[i+1]
		limit := math.Sqrt(6 / float64(in)) // He uniform: the next layer is a ReLU
		if i == len(widths)-2 {
			limit = math.Sqrt(6 / float64(in+out)) // Glorot uniform: the softmax
		}
		l := layer{in: in, out: out, w: make([]float64, in*out), b: make([]float64, out)}
		for j := range l.w {
			// Uniform in [-1, 1) from 53 random bits, by integer arithmetic
			// and one exact power-of-two scaling, then one rounding.
			u := float64(int64(rng.Uint64()>>11)-1<<52) / (1 << 52)
			l.w[j] = u * limit
		}
		m.layers = append(m.layers, l)
	}

	t := newTrainer(m.layers)
	for epoch := 1; epoch <= o.Epochs; epoch++ {
		t.gradients(scaled, ds.Y, o.L2)
		t.adamStep(o.LearningRate)
		if !t.finite() {
			return nil, fmt.Errorf("train: diverged at epoch %d (a weight is no longer finite); lower the learning rate", epoch)
		}
	}

	correct := 0
	probs := make([]float64, len(m.Classes))
	for r, x := range ds.X {
		if err := m.Predict(x, probs); err != nil {
			return nil, fmt.Errorf("train: row %d: %w", r+1, err)
		}
		if argmax(probs) == ds.Y[r] {
			correct++
		}
	}
	m.Training = &Training{
		Data:          ds.Source,
		DataSHA256:    ds.SHA256,
		Rows:          len(ds.X),
		Optimizer:     OptimizerAdam,
		Hidden:        slices.Clone(o.Hidden),
		Epochs:        o.Epochs,
		LearningRate:  o.LearningRate,
		L2:            o.L2,
		Seed:          o.Seed,
		TrainAccuracy: float64(correct) / float64(len(ds.X)),
	}
	// The model must be one that Parse accepts.
	f := m.file()
	var p problems
	validateFile(&f, &p)
	if err := p.err(); err != nil {
		return nil, fmt.Errorf("train: the trained model is not valid: %w", err)
	}
	return m, nil
}

// fitScaling returns the per-feature mean and population standard deviation;
// a constant feature gets std 1, so it scales to 0 rather than dividing by 0.
func fitScaling(xs [][]float64, features int) (mean, std []float64) {
	mean = make([]float64, features)
	std = make([]float64, features)
	n := float64(len(xs))
	for f := range features {
		var sum float64
		for _, x := range xs {
			sum += x[f]
		}
		mean[f] = sum / n
		var sq float64
		for _, x := range xs {
			d := x[f] - mean[f]
			sq += float64(d * d)
		}
		std[f] = math.Sqrt(sq / n)
		if !(std[f] >= minStd) {
			std[f] = 1
		}
	}
	return mean, std
}

// trainer holds the gradient and Adam moments for each layer's weights and
// biases, and per-row activations, all allocated once.
type trainer struct {
	layers     []layer
	gw, gb     [][]float64 // gradients
	mw, mb     [][]float64 // Adam first moments
	vw, vb     [][]float64 // Adam second moments
	acts       [][]float64 // acts[0] is the input row; acts[i+1] is layer i's output
	deltas     [][]float64 // ∂loss/∂(layer i's pre-activation) for one row
	beta1Power float64     // beta1^t, kept as a running product so no math.Pow is involved
	beta2Power float64
}

func newTrainer(layers []layer) *trainer {
	t := &trainer{layers: layers, beta1Power: 1, beta2Power: 1}
	t.acts = append(t.acts, nil)
	for _, l := range layers {
		for _, s := range []*[][]float64{&t.gw, &t.mw, &t.vw} {
			*s = append(*s, make([]float64, len(l.w)))
		}
		for _, s := range []*[][]float64{&t.gb, &t.mb, &t.vb} {
			*s = append(*s, make([]float64, len(l.b)))
		}
		t.acts = append(t.acts, make([]float64, l.out))
		t.deltas = append(t.deltas, make([]float64, l.out))
	}
	return t
}

// gradients sets gw and gb to the gradient of the mean cross-entropy over all
// rows plus the L2 penalty, summing rows in order.
func (t *trainer) gradients(xs [][]float64, ys []int, l2 float64) {
	for i := range t.layers {
		clear(t.gw[i])
		clear(t.gb[i])
	}
	last := len(t.layers) - 1
	for r, x := range xs {
		t.acts[0] = x
		for i := range t.layers {
			t.layers[i].forward(t.acts[i], t.acts[i+1], i < last)
		}
		// Softmax with cross-entropy: ∂loss/∂logit = p - onehot(y).
		d := t.deltas[last]
		copy(d, t.acts[last+1])
		softmax(d)
		d[ys[r]] -= 1
		for i := last; i >= 0; i-- {
			l := &t.layers[i]
			in, d := t.acts[i], t.deltas[i]
			gw, gb := t.gw[i], t.gb[i]
			for o, dv := range d {
				gb[o] += dv
				row := gw[o*l.in : (o+1)*l.in]
				for j, a := range in {
					row[j] += float64(dv * a)
				}
			}
			if i == 0 {
				break
			}
			// Back through layer i's weights, then the ReLU that made in.
			prev := t.deltas[i-1]
			for j := range prev {
				if in[j] <= 0 {
					prev[j] = 0
					continue
				}
				var s float64
				for o, dv := range d {
					s += float64(l.w[o*l.in+j] * dv)
				}
				prev[j] = s
			}
		}
	}
	n := float64(len(xs))
	for i, l := range t.layers {
		for j, w := range l.w {
			t.gw[i][j] = t.gw[i][j]/n + float64(l2*w)
		}
		for j := range l.b {
			t.gb[i][j] /= n
		}
	}
}

// adamStep applies one Adam update with the gradients.
func (t *trainer) adamStep(lr float64) {
	t.beta1Power *= adamBeta1
	t.beta2Power *= adamBeta2
	for i, l := range t.layers {
		adam(l.w, t.gw[i], t.mw[i], t.vw[i], lr, t.beta1Power, t.beta2Power)
		adam(l.b, t.gb[i], t.mb[i], t.vb[i], lr, t.beta1Power, t.beta2Power)
	}
}

func adam(params, grad, m, v []float64, lr, beta1Power, beta2Power float64) {
	for j, g := range grad {
		m[j] = float64(adamBeta1*m[j]) + float64((1-adamBeta1)*g)
		v[j] = float64(adamBeta2*v[j]) + float64((1-adamBeta2)*float64(g*g))
		mHat := m[j] / (1 - beta1Power)
		vHat := v[j] / (1 - beta2Power)
		params[j] -= float64(lr*mHat) / (math.Sqrt(vHat) + adamEpsilon)
	}
}

func (t *trainer) finite() bool {
	for _, l := range t.layers {
		for _, s := range [][]float64{l.w, l.b} {
			for _, v := range s {
				if math.IsNaN(v) || math.IsInf(v, 0) {
					return false
				}
			}
		}
	}
	return true
}
