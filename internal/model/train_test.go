package model

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

func TestParseCSVIris(t *testing.T) {
	ds := loadIris(t)
	if want := []string{"sepal_length", "sepal_width", "petal_length", "petal_width"}; !slices.Equal(ds.Features, want) {
		t.Errorf("Features = %v, want %v", ds.Features, want)
	}
	if want := []string{"setosa", "versicolor", "virginica"}; !slices.Equal(ds.Classes, want) {
		t.Errorf("Classes = %v, want %v", ds.Classes, want)
	}
	if len(ds.X) != 150 || len(ds.Y) != 150 {
		t.Fatalf("%d rows, %d labels; want 150", len(ds.X), len(ds.Y))
	}
	counts := make([]int, 3)
	for _, y := range ds.Y {
		counts[y]++
	}
	if !slices.Equal(counts, []int{50, 50, 50}) {
		t.Errorf("class counts %v, want 50 each", counts)
	}
	if !slices.Equal(ds.X[0], []float64{5.1, 3.5, 1.4, 0.2}) || ds.Y[0] != 0 {
		t.Errorf("first row %v %d", ds.X[0], ds.Y[0])
	}
	if len(ds.SHA256) != 64 || ds.Source != "iris.csv" {
		t.Errorf("Source %q, SHA256 %q", ds.Source, ds.SHA256)
	}
}

func TestParseCSVRejects(t *testing.T) {
	tests := []struct{ name, csv, want string }{
		{"empty", "", "d.csv: empty file"},
		{"header only", "a,b,label\n", "d.csv: no data rows after the header"},
		{"one column", "label\nx\n", "d.csv:1: header has 1 columns"},
		{"unnamed column", "a,,label\n1,2,x\n", "d.csv:1: column 2 has no name"},
		{"repeated column", "a,a,label\n1,2,x\n", `d.csv:1: column 2 repeats the name "a"`},
		{"not a number", "a,b,label\n1,2,x\n1,two,y\n", `d.csv:3: b is "two", want a finite number`},
		{"NaN", "a,b,label\n1,2,x\nNaN,2,y\n", `d.csv:3: a is "NaN"`},
		{"Inf", "a,b,label\n1,2,x\n1,+Inf,y\n", `d.csv:3: b is "+Inf"`},
		{"empty label", "a,b,label\n1,2,x\n1,2, \n", "d.csv:3: the label (last column) is empty"},
		{"short row", "a,b,label\n1,2,x\n1,y\n", "wrong number of fields"},
		{"bad quoting", "a,b,label\n1,2,\"x\n", "d.csv: parse error on line 2"},
		{"one class", "a,b,label\n1,2,x\n3,4,x\n", `only one class ("x")`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseCSV("d.csv", []byte(tt.csv))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ParseCSV = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func smallOptions() TrainOptions {
	return TrainOptions{Name: "iris", Version: "9", Kind: KindMLP, Hidden: []int{6, 4}, Epochs: 60, LearningRate: 0.02, L2: 1e-3, Seed: 5}
}

// The same data and options give the same bytes; another seed does not.
func TestTrainDeterministic(t *testing.T) {
	ds := loadIris(t)
	encode := func(o TrainOptions) []byte {
		m, err := Train(ds, o)
		if err != nil {
			t.Fatal(err)
		}
		data, err := m.Encode()
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	for _, kind := range []string{KindSoftmax, KindMLP} {
		o := smallOptions()
		if kind == KindSoftmax {
			o.Kind, o.Hidden = KindSoftmax, nil
		}
		first, second := encode(o), encode(o)
		if !bytes.Equal(first, second) {
			t.Fatalf("%s: two runs differ:\n%s\n%s", kind, first, second)
		}
		o.Seed++
		if bytes.Equal(first, encode(o)) {
			t.Errorf("%s: seeds %d and %d give the same model", kind, o.Seed-1, o.Seed)
		}
		if _, err := Parse(first); err != nil {
			t.Errorf("%s: the trained model does not parse: %v", kind, err)
		}
	}
}

func TestTrainRejectsOptions(t *testing.T) {
	ds := loadIris(t)
	tests := []struct {
		name   string
		mutate func(*TrainOptions)
		want   string
	}{
		{"no name", func(o *TrainOptions) { o.Name = "" }, "name is missing"},
		{"bad version", func(o *TrainOptions) { o.Version = "v 1" }, `version "v 1" has ' '`},
		{"unknown kind", func(o *TrainOptions) { o.Kind = "svm" }, `kind "svm", want "softmax" or "mlp"`},
		{"softmax with hidden", func(o *TrainOptions) { o.Kind = KindSoftmax }, "a softmax model has no hidden layers"},
		{"mlp without hidden", func(o *TrainOptions) { o.Hidden = nil }, "an mlp has 1 to 2 hidden layers, not 0"},
		{"mlp with three hidden", func(o *TrainOptions) { o.Hidden = []int{4, 4, 4} }, "not 3"},
		{"hidden too wide", func(o *TrainOptions) { o.Hidden = []int{65} }, "hidden width 65 is out of range 1 to 64"},
		{"no epochs", func(o *TrainOptions) { o.Epochs = 0 }, "epochs 0 is out of range"},
		{"no learning rate", func(o *TrainOptions) { o.LearningRate = 0 }, "learning rate 0, want a positive number"},
		{"negative l2", func(o *TrainOptions) { o.L2 = -0.1 }, "l2 -0.1, want zero or a positive number"},
		{"diverges", func(o *TrainOptions) { o.LearningRate = 1e300; o.Epochs = 50 }, "lower the learning rate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := smallOptions()
			tt.mutate(&o)
			_, err := Train(ds, o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Train = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// A constant feature scales to 0 (std 1) instead of dividing by zero.
func TestTrainConstantFeature(t *testing.T) {
	ds, err := ParseCSV("c.csv", []byte("a,k,label\n0,7,x\n1,7,x\n5,7,y\n6,7,y\n"))
	if err != nil {
		t.Fatal(err)
	}
	o := smallOptions()
	o.Epochs = 200
	m, err := Train(ds, o)
	if err != nil {
		t.Fatal(err)
	}
	if m.std[1] != 1 || m.mean[1] != 7 {
		t.Errorf("constant feature scaled by mean %v std %v, want 7 and 1", m.mean[1], m.std[1])
	}
	if m.Training.TrainAccuracy != 1 {
		t.Errorf("training accuracy %v on a separable problem", m.Training.TrainAccuracy)
	}
}
