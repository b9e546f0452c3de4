package model

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// Tiny hand-checkable models, as files.

// tinySoftmax: features a, b scaled by mean (1, 2) and std (2, 4); classes
// x, y, z with logits (s_a, s_b, s_a - s_b) + (0, 0.5, -0.5).
func tinySoftmax() *file {
	return &file{
		FormatVersion: FormatVersion,
		Name:          "tiny",
		Version:       "1",
		Kind:          KindSoftmax,
		Features:      []string{"a", "b"},
		Classes:       []string{"x", "y", "z"},
		Scaling:       fileScaling{Mean: []float64{1, 2}, Std: []float64{2, 4}},
		Layers: []fileLayer{{
			Weights: [][]float64{{1, 0}, {0, 1}, {1, -1}},
			Biases:  []float64{0, 0.5, -0.5},
		}},
	}
}

// tinyMLP: features a, b unscaled; a hidden layer computing relu(a-b) and
// relu(b-a); classes yes, no with logits (2·h0 + 0.1, h1).
func tinyMLP() *file {
	return &file{
		FormatVersion: FormatVersion,
		Name:          "tiny",
		Version:       "2",
		Kind:          KindMLP,
		Features:      []string{"a", "b"},
		Classes:       []string{"yes", "no"},
		Scaling:       fileScaling{Mean: []float64{0, 0}, Std: []float64{1, 1}},
		Layers: []fileLayer{
			{Weights: [][]float64{{1, -1}, {-1, 1}}, Biases: []float64{0, 0}},
			{Weights: [][]float64{{2, 0}, {0, 1}}, Biases: []float64{0.1, 0}},
		},
		Training: &Training{
			Data:          "tiny.csv",
			DataSHA256:    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
			Rows:          4,
			Optimizer:     OptimizerAdam,
			Hidden:        []int{2},
			Epochs:        10,
			LearningRate:  0.01,
			L2:            0,
			Seed:          1,
			TrainAccuracy: 1,
		},
	}
}

func marshal(t testing.TB, f *file) []byte {
	t.Helper()
	data, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func mustParse(t testing.TB, data []byte) *Model {
	t.Helper()
	m, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// The shipped models and their data, from the repository.
var shippedVersions = []string{"1", "2", "3"}

func shippedPath(version string) string {
	return filepath.Join("..", "..", "models", "iris-v"+version+".json")
}

func loadShipped(t testing.TB) []*Model {
	t.Helper()
	var ms []*Model
	for _, v := range shippedVersions {
		m, err := Load(shippedPath(v))
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	return ms
}

func loadIris(t testing.TB) *Dataset {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "data", "iris.csv"))
	if err != nil {
		t.Fatal(err)
	}
	ds, err := ParseCSV("iris.csv", data)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

// sumIsOne checks that probabilities are finite, in [0, 1] and sum to 1.
func sumIsOne(t testing.TB, probs []float64) {
	t.Helper()
	var sum float64
	for _, p := range probs {
		if math.IsNaN(p) || p < 0 || p > 1 {
			t.Fatalf("probability %v out of [0, 1] in %v", p, probs)
		}
		sum += p
	}
	if math.Abs(sum-1) > 1e-12 {
		t.Fatalf("probabilities %v sum to %v", probs, sum)
	}
}
