package model

import (
	"errors"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

// The tiny softmax model by hand: x = (3, 6) scales to ((3-1)/2, (6-2)/4) =
// (1, 1), so the logits are (1, 1.5, -0.5).
func TestPredictSoftmaxByHand(t *testing.T) {
	m := mustParse(t, marshal(t, tinySoftmax()))
	probs := make([]float64, 3)
	if err := m.Predict([]float64{3, 6}, probs); err != nil {
		t.Fatal(err)
	}
	e := []float64{math.Exp(1), math.Exp(1.5), math.Exp(-0.5)}
	sum := e[0] + e[1] + e[2]
	for i := range probs {
		if want := e[i] / sum; math.Abs(probs[i]-want) > 1e-15 {
			t.Errorf("probs[%d] = %.17g, want %.17g", i, probs[i], want)
		}
	}
	if class, conf := m.Best(probs); class != "y" || conf != probs[1] {
		t.Errorf("Best = %q, %v; want y, %v", class, conf, probs[1])
	}
	sumIsOne(t, probs)
}

// The tiny MLP by hand: x = (3, 1) gives hidden (relu(2), relu(-2)) = (2, 0)
// and logits (4.1, 0); x = (1, 3) gives hidden (0, 2) and logits (0.1, 2).
func TestPredictMLPByHand(t *testing.T) {
	m := mustParse(t, marshal(t, tinyMLP()))
	for _, tt := range []struct {
		x      []float64
		logits [2]float64
		best   string
	}{
		{x: []float64{3, 1}, logits: [2]float64{4.1, 0}, best: "yes"},
		{x: []float64{1, 3}, logits: [2]float64{0.1, 2}, best: "no"},
	} {
		probs := make([]float64, 2)
		if err := m.Predict(tt.x, probs); err != nil {
			t.Fatal(err)
		}
		want0 := 1 / (1 + math.Exp(tt.logits[1]-tt.logits[0]))
		if math.Abs(probs[0]-want0) > 1e-15 || math.Abs(probs[1]-(1-want0)) > 1e-15 {
			t.Errorf("Predict(%v) = %v, want [%v %v]", tt.x, probs, want0, 1-want0)
		}
		if class, _ := m.Best(probs); class != tt.best {
			t.Errorf("Best for %v = %q, want %q", tt.x, class, tt.best)
		}
	}
}

// Over random inputs of every size, including ones large enough that a naive
// softmax would overflow, the probabilities are finite and sum to 1.
func TestPredictProbabilitiesSumToOne(t *testing.T) {
	models := append(loadShipped(t), mustParse(t, marshal(t, tinySoftmax())))
	rng := rand.New(rand.NewPCG(1, 2))
	for _, m := range models {
		x := make([]float64, len(m.Features))
		probs := make([]float64, len(m.Classes))
		for i := range 2000 {
			scale := math.Pow(10, float64(i%12)) // up to 1e11: logits far past exp's range
			for j := range x {
				x[j] = (rng.Float64()*2 - 1) * scale
			}
			if err := m.Predict(x, probs); err != nil {
				t.Fatalf("%s v%s: Predict(%v): %v", m.Name, m.Version, x, err)
			}
			sumIsOne(t, probs)
		}
	}
}

func TestPredictRejectsBadInput(t *testing.T) {
	m := mustParse(t, marshal(t, tinySoftmax()))
	tests := []struct {
		name     string
		x        []float64
		probs    int
		want     string
		badInput bool // wraps ErrBadInput
	}{
		{"too few values", []float64{1}, 3, "bad input: 1 values, want 2 (a, b)", true},
		{"too many values", []float64{1, 2, 3}, 3, "3 values, want 2", true},
		{"no values", nil, 3, "0 values, want 2", true},
		{"NaN", []float64{1, math.NaN()}, 3, "b (value 1) is NaN, want a finite number", true},
		{"+Inf", []float64{math.Inf(1), 1}, 3, "a (value 0) is +Inf", true},
		{"-Inf", []float64{1, math.Inf(-1)}, 3, "b (value 1) is -Inf", true},
		{"probs too short", []float64{1, 2}, 2, "probs has length 2, want 3", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := m.Predict(tt.x, make([]float64, tt.probs))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Predict(%v) = %v, want an error containing %q", tt.x, err, tt.want)
			}
			if errors.Is(err, ErrBadInput) != tt.badInput {
				t.Errorf("errors.Is(%v, ErrBadInput) = %v, want %v", err, !tt.badInput, tt.badInput)
			}
		})
	}
}

// An input so large that the model's output overflows is an error, not NaN
// probabilities: the tiny MLP's first hidden unit computes a-b.
func TestPredictRejectsOverflow(t *testing.T) {
	m := mustParse(t, marshal(t, tinyMLP()))
	err := m.Predict([]float64{1.7e308, -1.7e308}, make([]float64, 2))
	if !errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), "output overflows") {
		t.Fatalf("Predict = %v, want ErrBadInput saying the output overflows", err)
	}
}

func TestPredictDoesNotAllocate(t *testing.T) {
	for _, m := range loadShipped(t) {
		x := []float64{5.9, 3.0, 5.1, 1.8}
		probs := make([]float64, len(m.Classes))
		if n := testing.AllocsPerRun(100, func() {
			if err := m.Predict(x, probs); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("%s v%s (%s): Predict allocates %v times per call", m.Name, m.Version, m.Kind, n)
		}
	}
}

func TestBest(t *testing.T) {
	m := mustParse(t, marshal(t, tinySoftmax()))
	for _, tt := range []struct {
		probs []float64
		class string
		conf  float64
	}{
		{[]float64{0.2, 0.5, 0.3}, "y", 0.5},
		{[]float64{0.4, 0.2, 0.4}, "x", 0.4}, // ties go to the first
		{[]float64{0.1, 0.1, 0.8}, "z", 0.8},
		{nil, "", 0},
		{[]float64{0.1, 0.2, 0.3, 0.4}, "z", 0.3}, // more probs than classes: the extra is ignored
	} {
		if class, conf := m.Best(tt.probs); class != tt.class || conf != tt.conf {
			t.Errorf("Best(%v) = %q, %v; want %q, %v", tt.probs, class, conf, tt.class, tt.conf)
		}
	}
}

// expNonPositive stays within 2 ulps of math.Exp over its whole domain, is
// exactly 1 at 0, and flushes below the smallest normal to 0.
func TestExpNonPositive(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	check := func(x float64) {
		got, want := expNonPositive(x), math.Exp(x)
		if want < 0x1p-1022 {
			if got != 0 && math.Abs(got-want) > 0x1p-1074*2 {
				t.Fatalf("exp(%v) = %v, want 0 or %v", x, got, want)
			}
			return
		}
		if ulps := math.Abs(got-want) / (math.Nextafter(want, math.Inf(1)) - want); ulps > 2 {
			t.Fatalf("exp(%v) = %.17g, math.Exp says %.17g (%.1f ulps)", x, got, want, ulps)
		}
	}
	for range 200000 {
		check(-rng.Float64() * 710)
		check(-rng.Float64() * 1e-3)
	}
	for _, x := range []float64{0, -0x1p-30, -1, -0.5, -708.39, -708.4, -745, -746, -1e308, math.Inf(-1)} {
		check(x)
	}
	if got := expNonPositive(0); got != 1 {
		t.Errorf("exp(0) = %v", got)
	}
	if got := expNonPositive(math.Inf(-1)); got != 0 {
		t.Errorf("exp(-Inf) = %v", got)
	}
	if got := expNonPositive(math.NaN()); !math.IsNaN(got) {
		t.Errorf("exp(NaN) = %v", got)
	}
}

// BenchmarkPredict measures one row through each shipped model:
// softmax (v1), mlp 16 (v2) and mlp 8x8 (v3).
func BenchmarkPredict(b *testing.B) {
	for _, m := range loadShipped(b) {
		name := "v" + m.Version + "-" + m.Kind
		for i, w := range m.Hidden() {
			sep := "x"
			if i == 0 {
				sep = "-"
			}
			name += sep + strconv.Itoa(w)
		}
		b.Run(name, func(b *testing.B) {
			x := []float64{5.9, 3.0, 5.1, 1.8}
			probs := make([]float64, len(m.Classes))
			b.ReportAllocs()
			for b.Loop() {
				if err := m.Predict(x, probs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
