package model

import (
	"bytes"
	"os"
	"testing"
)

// The shipped models: what they claim to be, trained on the data in the
// repository, good, and written exactly as Encode writes them.
func TestShippedModels(t *testing.T) {
	ds := loadIris(t)
	kinds := []string{KindSoftmax, KindMLP, KindMLP}
	for i, m := range loadShipped(t) {
		if m.Name != "iris" || m.Version != shippedVersions[i] || m.Kind != kinds[i] {
			t.Errorf("%s: name %q version %q kind %q", shippedPath(shippedVersions[i]), m.Name, m.Version, m.Kind)
		}
		tr := m.Training
		if tr == nil {
			t.Fatalf("v%s records no training", m.Version)
		}
		if tr.Data != ds.Source || tr.DataSHA256 != ds.SHA256 || tr.Rows != len(ds.X) {
			t.Errorf("v%s was trained on %s (%s, %d rows), not data/iris.csv (%s)", m.Version, tr.Data, tr.DataSHA256, tr.Rows, ds.SHA256)
		}
		correct := 0
		probs := make([]float64, len(m.Classes))
		for r, x := range ds.X {
			if err := m.Predict(x, probs); err != nil {
				t.Fatal(err)
			}
			if argmax(probs) == ds.Y[r] {
				correct++
			}
		}
		accuracy := float64(correct) / float64(len(ds.X))
		if accuracy != tr.TrainAccuracy || accuracy < 0.95 {
			t.Errorf("v%s: accuracy %v on the data (recorded %v), want the same and at least 0.95", m.Version, accuracy, tr.TrainAccuracy)
		}
		t.Logf("iris v%s (%s %v): training accuracy %.4f (%d/%d)", m.Version, m.Kind, m.Hidden(), accuracy, correct, len(ds.X))

		file, err := os.ReadFile(shippedPath(m.Version))
		if err != nil {
			t.Fatal(err)
		}
		encoded, err := m.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(file, encoded) {
			t.Errorf("v%s: the file is not what Encode writes for it", m.Version)
		}
	}
}

// The grid for the disagreement measure: every feature from its minimum in
// the data minus 0.5 to its maximum plus 0.5, in gridSteps even steps, all
// combinations (10^4 points for the four iris features).
const gridSteps = 10

// TestShippedModelsDisagree measures how often each pair of shipped models
// predicts a different class, on the grid and on the data rows, and checks
// that every pair disagrees somewhere on the grid but on less than half of
// it. models/README.md quotes its log.
func TestShippedModelsDisagree(t *testing.T) {
	ds := loadIris(t)
	ms := loadShipped(t)
	nf := len(ds.Features)
	lo, hi := make([]float64, nf), make([]float64, nf)
	copy(lo, ds.X[0])
	copy(hi, ds.X[0])
	for _, x := range ds.X {
		for f, v := range x {
			lo[f], hi[f] = min(lo[f], v), max(hi[f], v)
		}
	}
	var grid [][]float64
	idx := make([]int, nf)
	for {
		x := make([]float64, nf)
		for f, k := range idx {
			x[f] = (lo[f] - 0.5) + (hi[f]-lo[f]+1)*float64(k)/(gridSteps-1)
		}
		grid = append(grid, x)
		f := 0
		for f < nf && idx[f] == gridSteps-1 {
			idx[f] = 0
			f++
		}
		if f == nf {
			break
		}
		idx[f]++
	}

	disagreements := func(rows [][]float64) [][]int {
		counts := make([][]int, len(ms))
		for i := range counts {
			counts[i] = make([]int, len(ms))
		}
		best := make([]int, len(ms))
		for _, x := range rows {
			for i, m := range ms {
				probs := make([]float64, len(m.Classes))
				if err := m.Predict(x, probs); err != nil {
					t.Fatal(err)
				}
				best[i] = argmax(probs)
			}
			for i := range ms {
				for j := i + 1; j < len(ms); j++ {
					if best[i] != best[j] {
						counts[i][j]++
					}
				}
			}
		}
		return counts
	}
	onGrid, onData := disagreements(grid), disagreements(ds.X)
	t.Logf("grid: %d points (each feature min-0.5 to max+0.5 in %d steps); data: %d rows", len(grid), gridSteps, len(ds.X))
	for i := range ms {
		for j := i + 1; j < len(ms); j++ {
			g, d := onGrid[i][j], onData[i][j]
			t.Logf("v%s-v%s: grid %d/%d = %.2f%%, data %d/%d = %.2f%%", ms[i].Version, ms[j].Version,
				g, len(grid), 100*float64(g)/float64(len(grid)), d, len(ds.X), 100*float64(d)/float64(len(ds.X)))
			if g == 0 || 2*g >= len(grid) {
				t.Errorf("v%s and v%s disagree on %d of %d grid points, want some but less than half", ms[i].Version, ms[j].Version, g, len(grid))
			}
		}
	}
}
