package experiments

import (
	"math"
	"testing"

	"gonum.org/v1/gonum/stat/distuv"
)

// momentsOf accumulates xs as the hot path does.
func momentsOf(xs ...float64) Moments {
	var a accumulator
	for _, x := range xs {
		a.add(x)
	}
	return a.moments()
}

// agrees reports whether got matches want to digits significant digits, that
// is within half a unit of the last digit the source printed.
func agrees(got, want float64, digits int) bool {
	unit := math.Pow(10, math.Floor(math.Log10(math.Abs(want)))-float64(digits-1))
	return math.Abs(got-want) <= unit/2
}

func deref(t *testing.T, name string, p *float64) float64 {
	t.Helper()
	if p == nil {
		t.Fatalf("%s is null", name)
	}
	return *p
}

// Published Welch t-tests. R's t.test(x, y) reports mean(x) - mean(y), so x is
// our variant and y our baseline throughout.
func TestWelchTTestPublished(t *testing.T) {
	tests := []struct {
		name         string
		source       string
		x, y         []float64
		wantT        float64 // 0: not published
		wantDF       float64 // 0: not published
		wantP        float64
		digitsT      int
		digitsDF     int
		digitsP      int
		wantSig      bool
		wantWinnerHi string // winner when higher means win
	}{
		{
			// Wikipedia, "Welch's t-test", section Examples, example 1 (the
			// samples as reproduced in Microsoft's Kusto welch_test() reference,
			// which gives p = 0.021). R's t.test(A1, A2): t = -2.45535639828601,
			// df = 24.9885292902309, p-value = 0.021378001462867 (R's output as
			// recorded by the test suite of a Perl port of t.test; the p-value
			// is also Rosetta Code's "Welch's t-test" reference answer).
			name:   "wikipedia welch example 1",
			source: "R t.test",
			x:      []float64{27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4},
			y:      []float64{27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4},
			wantT:  -2.45535639828601, wantDF: 24.9885292902309, wantP: 0.021378001462867,
			digitsT: 12, digitsDF: 12, digitsP: 12,
			wantSig: true, wantWinnerHi: WinnerBaseline,
		},
		{
			// Rosetta Code, "Welch's t-test", test set 2 (unequal sizes, 10 vs
			// 20): p = 0.148841696605327, the value R's t.test gives, which the
			// task's reference solutions check against.
			name:   "rosetta code set 2",
			source: "Rosetta Code / R",
			x:      []float64{17.2, 20.9, 22.6, 18.1, 21.7, 21.4, 23.5, 24.2, 14.7, 21.8},
			y: []float64{21.5, 22.8, 21.0, 23.0, 21.6, 23.6, 22.5, 20.7, 23.4, 21.8,
				20.7, 21.7, 21.5, 22.5, 23.6, 21.5, 22.5, 23.5, 21.5, 21.8},
			wantP: 0.148841696605327, digitsP: 12,
			wantWinnerHi: WinnerNone,
		},
		{
			// Rosetta Code, "Welch's t-test", test set 3: p = 0.0359722710297968
			// (R's value).
			name:   "rosetta code set 3",
			source: "Rosetta Code / R",
			x:      []float64{19.8, 20.4, 19.6, 17.8, 18.5, 18.9, 18.3, 18.9, 19.5, 22.0},
			y: []float64{28.2, 26.6, 20.1, 23.3, 25.2, 22.1, 17.7, 27.6, 20.6, 13.7,
				23.2, 17.5, 20.6, 18.0, 23.9, 21.6, 24.3, 20.4, 24.0, 13.2},
			wantP: 0.0359722710297968, digitsP: 12,
			wantSig: true, wantWinnerHi: WinnerBaseline,
		},
		{
			// Wikipedia, "Student's t-test", Worked examples, "Unequal
			// variances" (weights of screws from two machines): standard error
			// 0.04849, d.f. 7.031, t 1.959, two-tailed p 0.09077
			// (Rosetta Code / R: 0.090773324285671).
			//
			// Only 10 digits of R's p here: these values sit around 30 with a
			// spread of 0.05, and a variance from sums (what replicas can add
			// up) loses log10(mean²/variance) ≈ 5.6 of float64's 16 digits to
			// cancellation, where R's two-pass variance loses none.
			name:   "wikipedia student's t-test screws",
			source: "Wikipedia",
			x:      []float64{30.02, 29.99, 30.11, 29.97, 30.01, 29.99},
			y:      []float64{29.89, 29.93, 29.72, 29.98, 30.02, 29.98},
			wantT:  1.959, wantDF: 7.031, wantP: 0.090773324285671,
			digitsT: 4, digitsDF: 4, digitsP: 10,
			wantWinnerHi: WinnerNone,
		},
		{
			// Rosetta Code, "Welch's t-test", the task's own data (a variance
			// ratio of ~5000): p = 0.0107515611497845 (R's value).
			name:   "rosetta code task",
			source: "Rosetta Code / R",
			x:      []float64{3.0, 4.0, 1.0, 2.1},
			y:      []float64{490.2, 340.0, 433.9},
			wantP:  0.0107515611497845, digitsP: 12,
			wantSig: true, wantWinnerHi: WinnerBaseline,
		},
		{
			// R output quoted in a Q&A on Welch's confidence interval
			// (boxhoidap.com, "welchs-t-test-confidence-interval-python"):
			// t.test(ts1, ts2) -> t = -1.8325, df = 17.9, p-value = 0.08356.
			name:   "R t.test ts1 ts2",
			source: "R t.test",
			x:      []float64{11, 9, 10, 11, 10, 12, 9, 11, 12, 9},
			y:      []float64{11, 13, 10, 13, 12, 9, 11, 12, 12, 11},
			wantT:  -1.8325, wantDF: 17.9, wantP: 0.08356,
			digitsT: 5, digitsDF: 3, digitsP: 4,
			wantWinnerHi: WinnerNone,
		},
		{
			// ClickHouse reference, aggregate function welchTTest, example:
			// (20.3, 22.1, 21.9) vs (18.9, 20.3, 19) ->
			// (2.7988719532211235, 0.051807360348581945).
			name:   "clickhouse welchTTest",
			source: "ClickHouse docs",
			x:      []float64{20.3, 22.1, 21.9},
			y:      []float64{18.9, 20.3, 19},
			wantT:  2.7988719532211235, wantP: 0.051807360348581945,
			digitsT: 12, digitsP: 10,
			wantWinnerHi: WinnerNone,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := WelchTTest(momentsOf(tt.y...), momentsOf(tt.x...), true)
			gotP := deref(t, "p_value", res.PValue)
			gotT := deref(t, "t", res.T)
			gotDF := deref(t, "df", res.DF)
			// Acceptance: three significant digits of every published number;
			// where the source printed more, hold us to what it printed.
			for _, c := range []struct {
				what      string
				got, want float64
				digits    int
			}{
				{"t", gotT, tt.wantT, tt.digitsT},
				{"df", gotDF, tt.wantDF, tt.digitsDF},
				{"p", gotP, tt.wantP, tt.digitsP},
			} {
				if c.want == 0 {
					continue
				}
				if !agrees(c.got, c.want, 3) {
					t.Errorf("%s = %.10g, %s gives %v (not even 3 significant digits)", c.what, c.got, tt.source, c.want)
				} else if !agrees(c.got, c.want, c.digits) {
					t.Errorf("%s = %.15g, %s gives %v (%d digits expected)", c.what, c.got, tt.source, c.want, c.digits)
				}
			}
			if res.Significant != tt.wantSig || res.Winner != tt.wantWinnerHi {
				t.Errorf("significant %v winner %q, want %v %q", res.Significant, res.Winner, tt.wantSig, tt.wantWinnerHi)
			}
			// Swapping the sides flips the statistic, not the p-value.
			swapped := WelchTTest(momentsOf(tt.x...), momentsOf(tt.y...), true)
			if *swapped.T != -gotT || !agrees(*swapped.PValue, gotP, 12) {
				t.Errorf("swapped: t %v p %v; want %v %v", *swapped.T, *swapped.PValue, -gotT, gotP)
			}
		})
	}
}

// The screws example also prints the standard error of the difference.
func TestWelchStandardErrorScrews(t *testing.T) {
	a := momentsOf(30.02, 29.99, 30.11, 29.97, 30.01, 29.99)
	b := momentsOf(29.89, 29.93, 29.72, 29.98, 30.02, 29.98)
	va, _ := a.Variance()
	vb, _ := b.Variance()
	se := math.Sqrt(va/6 + vb/6)
	if !agrees(se, 0.04849, 4) { // Wikipedia, "Student's t-test": ≈ 0.04849
		t.Errorf("standard error %v, want 0.04849", se)
	}
}

// Illowsky & Dean, Collaborative Statistics (Connexions module m17043,
// "Comparing Two Independent Population Proportions"; the same example is in
// their OpenStax Introductory Statistics): medication A leaves 20 of 200 adults
// with hives after 30 minutes, medication B 12 of 200; pooled proportion
// p_c = 0.08; "p-value = 0.1404" (two-tailed). The book does not print the
// statistic; from its numbers it is 0.04/sqrt(0.08·0.92·(1/200+1/200)) = 1.474.
func TestTwoProportionZTestPublished(t *testing.T) {
	res := TwoProportionZTest(12, 200, 20, 200) // baseline B, variant A
	z := deref(t, "z", res.Z)
	p := deref(t, "p_value", res.PValue)
	if !agrees(p, 0.1404, 4) {
		t.Errorf("p = %.6f, textbook 0.1404", p)
	}
	if !agrees(z, 1.474, 4) {
		t.Errorf("z = %.6f, want 1.474", z)
	}
	if d := deref(t, "diff", res.Diff); !agrees(d, 0.04, 6) {
		t.Errorf("diff = %v, want 0.04", d)
	}
	if res.Significant || res.Winner != WinnerNone || res.Note != "" {
		t.Errorf("got %+v, want not significant, no winner, no note", res)
	}
	// The other way round: the same p, the opposite z.
	back := TwoProportionZTest(20, 200, 12, 200)
	if *back.Z != -z || *back.PValue != p {
		t.Errorf("reversed: z %v p %v", *back.Z, *back.PValue)
	}
}

func TestTwoProportionZTestWinner(t *testing.T) {
	// 5% vs 2% errors on 2000 requests each: the variant fails less.
	res := TwoProportionZTest(100, 2000, 40, 2000)
	if !res.Significant || res.Winner != WinnerVariant {
		t.Fatalf("got %+v, want the variant (fewer errors) to win", res)
	}
	res = TwoProportionZTest(40, 2000, 100, 2000)
	if !res.Significant || res.Winner != WinnerBaseline {
		t.Fatalf("got %+v, want the baseline to win", res)
	}
}

func TestWelchTTestWinnerDirection(t *testing.T) {
	low := momentsOf(10, 11, 12, 10, 11, 12, 10, 11, 12)
	high := momentsOf(20, 21, 22, 20, 21, 22, 20, 21, 22)
	if got := WelchTTest(low, high, false).Winner; got != WinnerBaseline {
		t.Errorf("latency: slower variant, winner %q, want baseline", got)
	}
	if got := WelchTTest(low, high, true).Winner; got != WinnerVariant {
		t.Errorf("outcome: higher variant, winner %q, want variant", got)
	}
}

func TestEdgeCasesHaveNoNumbersMadeUp(t *testing.T) {
	tests := []struct {
		name     string
		res      MeanTest
		wantNote string
		wantDiff bool
	}{
		{"both empty", WelchTTest(Moments{}, Moments{}, false), NoteInsufficientData, false},
		{"one value each", WelchTTest(momentsOf(1), momentsOf(2), false), NoteInsufficientData, true},
		{"baseline empty", WelchTTest(Moments{}, momentsOf(1, 2, 3), false), NoteInsufficientData, false},
		{"constant, equal", WelchTTest(momentsOf(5, 5, 5), momentsOf(5, 5, 5, 5), false), NoteNoVariance, true},
		{"constant, different", WelchTTest(momentsOf(0.1, 0.1, 0.1), momentsOf(0.3, 0.3), true), NoteNoVariance, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.res
			if r.T != nil || r.DF != nil || r.PValue != nil || r.Significant || r.Winner != WinnerNone {
				t.Errorf("got %+v: want no statistic, no p-value, no winner", r)
			}
			if r.Note != tt.wantNote {
				t.Errorf("note %q, want %q", r.Note, tt.wantNote)
			}
			if (r.Diff != nil) != tt.wantDiff {
				t.Errorf("diff %v, want present=%v", r.Diff, tt.wantDiff)
			}
		})
	}
	// Zero variance on one side only is fine: the other side carries the error.
	r := WelchTTest(momentsOf(5, 5, 5, 5), momentsOf(4, 6, 5, 7, 3), false)
	if r.PValue == nil || deref(t, "df", r.DF) != 4 {
		t.Errorf("one constant side: %+v, want a p-value and df = n2-1 = 4", r)
	}

	for _, tt := range []struct {
		name               string
		xb, nb, xv, nv     int64
		wantNote           string
		wantP              bool
		wantSignificantAny bool
	}{
		{"no requests", 0, 0, 0, 0, NoteInsufficientData, false, false},
		{"no baseline requests", 0, 0, 1, 10, NoteInsufficientData, false, false},
		{"no errors anywhere", 0, 1000, 0, 1000, NoteNoVariance, false, false},
		{"only errors", 10, 10, 5, 5, NoteNoVariance, false, false},
		{"few errors", 1, 1000, 4, 1000, NoteFewEvents, true, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := TwoProportionZTest(tt.xb, tt.nb, tt.xv, tt.nv)
			if r.Note != tt.wantNote || (r.PValue != nil) != tt.wantP {
				t.Errorf("got %+v, want note %q, p-value present %v", r, tt.wantNote, tt.wantP)
			}
			if !tt.wantP && (r.Z != nil || r.Significant || r.Winner != WinnerNone) {
				t.Errorf("got %+v, want no statistic and no winner", r)
			}
		})
	}
}

// With millions of requests the degrees of freedom are huge: the t p-value
// must still be right (it tends to the normal one), fast, and finite.
func TestWelchHugeDegreesOfFreedom(t *testing.T) {
	const n = 5_000_000
	// Mean 10 vs 10.002, std 1 on both sides: t ≈ 1.414 with df ≈ 1e7.
	b := Moments{N: n, Sum: 10 * n, SumSq: n * (1 + 100)}
	v := Moments{N: n, Sum: 10.002 * n, SumSq: n * (1 + 10.002*10.002)}
	r := WelchTTest(b, v, false)
	want := 2 * distuv.Normal{Mu: 0, Sigma: 1}.CDF(-deref(t, "t", r.T))
	if got := deref(t, "p", r.PValue); !agrees(got, want, 4) {
		t.Errorf("p = %v with df %v, normal limit %v", got, *r.DF, want)
	}
}

func TestVarianceIsNumericallySound(t *testing.T) {
	// Ten million latencies near 1000 ms with a standard deviation of 0.57 ms
	// (steadier than any real backend). Plain running sums of x and x² get the
	// variance wrong by 1.4e-4 relative here: the sum of squares reaches 1e13
	// and drifts by whole units. The compensated sums must agree with a
	// two-pass variance (mean first, then squared deviations) to 1e-8.
	const n = 10_000_000
	xs := make([]float64, n)
	var a accumulator
	for i := range xs {
		xs[i] = 1000.1 + 0.7*float64(i%3-1) + 0.013*float64(i%7)
		a.add(xs[i])
	}
	mean, _ := a.moments().Mean()
	var dev accumulator
	for _, x := range xs {
		dev.add(x - mean)
	}
	twoPass := dev.moments().SumSq / (n - 1)
	got, _ := a.moments().Variance()
	rel := math.Abs(got-twoPass) / twoPass
	t.Logf("relative error %.2g", rel)
	if rel > 1e-8 {
		t.Errorf("variance %.12g, two-pass %.12g: relative error %.2g", got, twoPass, rel)
	}
	// A constant sample has no variance at all, not rounding noise.
	var c accumulator
	for i := 0; i < 1000; i++ {
		c.add(0.1)
	}
	if v, ok := c.moments().Variance(); !ok || v != 0 {
		t.Errorf("constant sample: variance %v, want exactly 0", v)
	}
}

func TestMomentsMerge(t *testing.T) {
	all := momentsOf(1, 2, 3, 4, 5, 6, 7)
	m := momentsOf(1, 2, 3)
	m.Merge(momentsOf(4, 5, 6, 7))
	if m.N != all.N || m.Sum != all.Sum || m.SumSq != all.SumSq {
		t.Errorf("merged %+v, want %+v", m, all)
	}
	mean, _ := m.Mean()
	v, _ := m.Variance()
	if mean != 4 || !agrees(v, 28.0/6, 12) {
		t.Errorf("mean %v var %v, want 4 and 28/6", mean, v)
	}
}
