package model

import (
	"errors"
	"fmt"
	"math"
	"strings"
)

// ErrBadInput is wrapped by every Predict error that the input row causes (as
// opposed to a wrongly sized probs buffer, which is the caller's bug): a
// server answers it with 400 and the error's message.
var ErrBadInput = errors.New("bad input")

// Predict writes the class probabilities for one row x into probs: x holds
// raw (unscaled) values in Features order, probs gets one probability per
// class in Classes order, summing to 1. It does not allocate when it
// succeeds. It is an error if len(x) != len(Features) or
// len(probs) != len(Classes), if x holds NaN or ±Inf, or if x is so large
// that the model's output overflows; the input errors wrap ErrBadInput.
// m must come from Parse, Load or Train.
func (m *Model) Predict(x, probs []float64) error {
	if len(x) != len(m.Features) {
		return fmt.Errorf("%w: %d values, want %d (%s)", ErrBadInput, len(x), len(m.Features), strings.Join(m.Features, ", "))
	}
	if len(probs) != len(m.Classes) {
		return fmt.Errorf("model: probs has length %d, want %d (one per class)", len(probs), len(m.Classes))
	}
	for i, v := range x {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("%w: %s (value %d) is %v, want a finite number", ErrBadInput, m.Features[i], i, v)
		}
	}
	// Scratch on the stack: Parse bounds the feature count and hidden widths.
	var scaled [MaxFeatures]float64
	var hidden [MaxHiddenLayers][MaxHidden]float64
	in := scaled[:len(x)]
	m.standardize(x, in)
	last := len(m.layers) - 1
	for i := range last {
		out := hidden[i][:m.layers[i].out]
		m.layers[i].forward(in, out, true)
		in = out
	}
	m.layers[last].forward(in, probs, false)
	for _, z := range probs {
		if math.IsNaN(z) || math.IsInf(z, 0) {
			return fmt.Errorf("%w: values too large: the model's output overflows", ErrBadInput)
		}
	}
	softmax(probs)
	return nil
}

// Best returns the most probable class and its probability: the first of
// equals, or "" and 0 if probs is empty. probs is what Predict wrote.
func (m *Model) Best(probs []float64) (class string, confidence float64) {
	i := argmax(probs[:min(len(probs), len(m.Classes))])
	if i < 0 {
		return "", 0
	}
	return m.Classes[i], probs[i]
}

// argmax returns the index of the largest value, the first of equals; -1 if
// v is empty.
func argmax(v []float64) int {
	best := -1
	for i, p := range v {
		if best < 0 || p > v[best] {
			best = i
		}
	}
	return best
}

// standardize writes (x-mean)/std into out. Training scales its rows with
// this same function, so the model sees the same numbers in both.
func (m *Model) standardize(x, out []float64) {
	for i, v := range x {
		out[i] = (v - m.mean[i]) / m.std[i]
	}
}

// forward computes out = w·in + b, then ReLU when relu is set.
func (l *layer) forward(in, out []float64, relu bool) {
	for o := range out {
		row := l.w[o*l.in : (o+1)*l.in]
		s := l.b[o]
		for i, w := range row {
			s += float64(w * in[i]) // explicit rounding: no FMA (see the package comment)
		}
		if relu && s < 0 {
			s = 0
		}
		out[o] = s
	}
}

// softmax turns finite logits z into probabilities in place. Subtracting the
// largest logit first keeps every exponent at or below 0, so nothing
// overflows and the largest term is exactly 1.
func softmax(z []float64) {
	largest := z[0]
	for _, v := range z[1:] {
		largest = max(largest, v)
	}
	var sum float64
	for i, v := range z {
		e := expNonPositive(v - largest)
		z[i] = e
		sum += e
	}
	for i := range z {
		z[i] /= sum
	}
}

// expNonPositive returns e**x for x <= 0, the same on every machine. It is
// math.Exp's algorithm (FreeBSD's e_exp.c: reduce x to r in [-ln2/2, ln2/2]
// with x = k*ln2 + r, a degree-5 minimax polynomial for r, then scale by
// 2**k) with every product rounded explicitly so that no compiler can fuse
// it, and with results below the smallest normal float64 (x < -708.39)
// flushed to zero, which lets 2**k be built from its exponent bits alone.
// Its results are within an ulp or so of math.Exp.
func expNonPositive(x float64) float64 {
	const (
		ln2Hi = 6.93147180369123816490e-01
		ln2Lo = 1.90821492927058770002e-10
		log2e = 1.44269504088896338700e+00

		// e**x < 2**-1022 below this: flush to zero.
		minNormalExp = -7.08396418532264106224e+02
		nearZero     = 1.0 / (1 << 28)

		p1 = 1.66666666666666657415e-01
		p2 = -2.77777777770155933842e-03
		p3 = 6.61375632143793436117e-05
		p4 = -1.65339022054652515390e-06
		p5 = 4.13813679705723846039e-08
	)
	switch {
	case math.IsNaN(x):
		return x
	case x < minNormalExp:
		return 0
	case x > -nearZero:
		return 1 + x
	}
	k := int(float64(log2e*x) - 0.5) // x < 0, so this rounds k*ln2 to nearest x
	hi := x - float64(float64(k)*ln2Hi)
	lo := float64(float64(k) * ln2Lo)
	r := hi - lo
	t := float64(r * r)
	c := p4 + float64(t*p5)
	c = p3 + float64(t*c)
	c = p2 + float64(t*c)
	c = p1 + float64(t*c)
	c = r - float64(t*c)
	y := 1 - ((lo - float64(r*c)/(2-c)) - hi)
	// k is in [-1022, 0] here, so 2**k is a normal float64 and the product
	// is one IEEE multiplication.
	return y * math.Float64frombits(uint64(k+1023)<<52)
}
