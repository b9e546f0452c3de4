package experiments

import (
	"math"

	"gonum.org/v1/gonum/stat/distuv"
)

// Alpha is the significance level: a comparison is significant when p < Alpha.
// No correction is made for comparing several variants or several metrics: with
// k comparisons, about k·Alpha of them look significant by chance alone.
const Alpha = 0.05

// Winners of a comparison.
const (
	WinnerBaseline = "baseline"
	WinnerVariant  = "variant"
	WinnerNone     = "none"
)

// Notes explain a comparison that has no p-value, or a rough one.
const (
	// NoteInsufficientData: a side has too few observations (fewer than two
	// for a t-test, none for a z-test).
	NoteInsufficientData = "insufficient data"
	// NoteNoVariance: neither side varies (every latency or outcome equal on
	// both sides, or no error at all / only errors on both), so there is no
	// spread to measure a difference against.
	NoteNoVariance = "no variance"
	// NoteFewEvents: a side expects fewer than 5 errors (or successes) under the
	// null hypothesis; the normal approximation of the z-test is rough there.
	NoteFewEvents = "approximate: fewer than 5 expected events on a side"
)

// MeanTest is Welch's unequal-variances t-test of the difference of two means,
// variant minus baseline. Fields that cannot be computed are nil (JSON null),
// with the reason in Note.
type MeanTest struct {
	// Diff is the variant's mean minus the baseline's.
	Diff *float64 `json:"diff"`
	// T is Welch's statistic, Diff / sqrt(s1²/n1 + s2²/n2).
	T *float64 `json:"t"`
	// DF are the Welch–Satterthwaite degrees of freedom.
	DF *float64 `json:"df"`
	// PValue is two-sided.
	PValue *float64 `json:"p_value"`
	// Significant is PValue < Alpha.
	Significant bool `json:"significant"`
	// Winner is WinnerBaseline, WinnerVariant or WinnerNone (not significant).
	Winner string `json:"winner"`
	// Note says why a field is missing, when one is.
	Note string `json:"note,omitempty"`
}

// ProportionTest is the two-proportion z-test (pooled), variant minus
// baseline.
type ProportionTest struct {
	// Diff is the variant's proportion minus the baseline's.
	Diff *float64 `json:"diff"`
	// Z is Diff over the pooled standard error.
	Z *float64 `json:"z"`
	// PValue is two-sided.
	PValue *float64 `json:"p_value"`
	// Significant is PValue < Alpha.
	Significant bool `json:"significant"`
	// Winner is WinnerBaseline, WinnerVariant or WinnerNone (not significant).
	Winner string `json:"winner"`
	// Note says why a field is missing, or that the p-value is rough.
	Note string `json:"note,omitempty"`
}

// WelchTTest compares the mean of variant with that of baseline (Welch 1947,
// "The generalization of 'Student's' problem when several different population
// variances are involved", Biometrika 34). As R's t.test(variant, baseline,
// var.equal = FALSE). When higherWins, the side with the significantly higher
// mean wins (business outcomes); otherwise the lower one does (latency).
func WelchTTest(baseline, variant Moments, higherWins bool) MeanTest {
	res := MeanTest{Winner: WinnerNone}
	mb, okb := baseline.Mean()
	mv, okv := variant.Mean()
	if okb && okv {
		res.Diff = finite(mv - mb)
	}
	vb, okb := baseline.Variance()
	vv, okv := variant.Variance()
	if !okb || !okv {
		res.Note = NoteInsufficientData
		return res
	}
	if vb == 0 && vv == 0 {
		// t would be 0/0 or ±Inf; R's t.test stops with "data are essentially
		// constant". There is no p-value to give.
		res.Note = NoteNoVariance
		return res
	}
	nb, nv := float64(baseline.N), float64(variant.N)
	sb, sv := vb/nb, vv/nv // squared standard errors of the means
	se2 := sb + sv
	t := (mv - mb) / math.Sqrt(se2)
	df := se2 * se2 / (sb*sb/(nb-1) + sv*sv/(nv-1))
	p := 2 * distuv.StudentsT{Mu: 0, Sigma: 1, Nu: df}.CDF(-math.Abs(t))
	res.T, res.DF, res.PValue = finite(t), finite(df), finite(p)
	res.decide(t, higherWins)
	return res
}

func (res *MeanTest) decide(stat float64, higherWins bool) {
	if res.PValue == nil || !(*res.PValue < Alpha) {
		return
	}
	res.Significant = true
	res.Winner = winner(stat, higherWins)
}

// TwoProportionZTest compares the proportion variantEvents/variantN with
// baselineEvents/baselineN under the pooled null hypothesis that both are the
// same. For error rates, call it with lowerWins semantics: the side with the
// significantly lower rate wins.
func TwoProportionZTest(baselineEvents, baselineN, variantEvents, variantN int64) ProportionTest {
	res := ProportionTest{Winner: WinnerNone}
	if baselineN <= 0 || variantN <= 0 {
		res.Note = NoteInsufficientData
		return res
	}
	nb, nv := float64(baselineN), float64(variantN)
	pb, pv := float64(baselineEvents)/nb, float64(variantEvents)/nv
	res.Diff = finite(pv - pb)
	pooled := float64(baselineEvents+variantEvents) / (nb + nv)
	if pooled <= 0 || pooled >= 1 {
		res.Note = NoteNoVariance
		return res
	}
	se := math.Sqrt(pooled * (1 - pooled) * (1/nb + 1/nv))
	z := (pv - pb) / se
	p := 2 * distuv.Normal{Mu: 0, Sigma: 1}.CDF(-math.Abs(z)) // Erfc: exact in the tails
	res.Z, res.PValue = finite(z), finite(p)
	if minExpected := math.Min(nb, nv) * math.Min(pooled, 1-pooled); minExpected < 5 {
		res.Note = NoteFewEvents
	}
	if res.PValue != nil && *res.PValue < Alpha {
		res.Significant = true
		res.Winner = winner(z, false)
	}
	return res
}

// winner of a significant difference whose statistic (variant minus baseline)
// is stat.
func winner(stat float64, higherWins bool) string {
	if stat == 0 {
		return WinnerNone
	}
	if variantHigher := stat > 0; variantHigher == higherWins {
		return WinnerVariant
	}
	return WinnerBaseline
}

// finite returns a pointer to x, or nil when x is NaN or infinite:
// encoding/json refuses those, and null is the honest answer anyway.
func finite(x float64) *float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return nil
	}
	return &x
}
