package experiments

import (
	"math"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Moments are the sufficient statistics of a sample for its mean and variance:
// the count, the sum and the sum of squares. They add up, across the shards of
// one process and across gateway replicas (cluster.go keeps them in Redis
// with HINCRBYFLOAT), which is why they are what we store rather than a running
// mean and M2 (Welford), whose merge is not a plain sum.
//
// The variance is computed from them as (SumSq - Sum·mean)/(N-1). That
// subtraction loses about log10(mean²/variance) digits, so the sums themselves
// must not add error of their own: in this process they are accumulated with
// Neumaier's compensated summation (see accumulator), which keeps each sum
// within a few ulps whatever the count. A sample whose standard deviation is
// at least 1/1000 of its mean (every latency and business outcome we will
// see) keeps about nine good digits; plain running sums of ten million such
// latencies keep three (TestVarianceIsNumericallySound).
type Moments struct {
	// N is the number of values.
	N int64 `json:"n"`
	// Sum is the sum of the values.
	Sum float64 `json:"sum"`
	// SumSq is the sum of their squares.
	SumSq float64 `json:"sum_sq"`
}

// Merge adds the sample o to m: the result describes both samples together.
func (m *Moments) Merge(o Moments) {
	m.N += o.N
	m.Sum += o.Sum
	m.SumSq += o.SumSq
}

// Mean of the sample; false when it is empty.
func (m Moments) Mean() (float64, bool) {
	if m.N < 1 {
		return 0, false
	}
	return m.Sum / float64(m.N), true
}

// Variance is the sample (unbiased, n-1) variance; false when N < 2.
//
// A result within the rounding noise of the sums is reported as exactly 0, so
// that a constant sample (every outcome 9.99) is recognised as having no
// variance instead of a variance of 1e-18 that would make any difference look
// infinitely significant.
func (m Moments) Variance() (float64, bool) {
	if m.N < 2 {
		return 0, false
	}
	n := float64(m.N)
	mean := m.Sum / n
	// One rounding for the product and the subtraction together.
	m2 := math.FMA(-m.Sum, mean, m.SumSq)
	if m2 <= varianceNoise*m.SumSq {
		return 0, true
	}
	return m2 / (n - 1), true
}

// varianceNoise bounds, relative to SumSq, the rounding error of
// SumSq - Sum·mean when both sums are accurate to a few ulps: anything smaller
// is noise, not spread.
const varianceNoise = 16 * 0x1p-52

// accumulator is Moments with Neumaier compensation terms. It is not safe for
// concurrent use: its owner holds a lock.
type accumulator struct {
	n          int64
	sum, sumC  float64
	sumSq, sqC float64
}

// add accumulates x. It costs a handful of floating-point operations and no
// allocation.
func (a *accumulator) add(x float64) {
	a.n++
	a.sum, a.sumC = neumaier(a.sum, a.sumC, x)
	a.sumSq, a.sqC = neumaier(a.sumSq, a.sqC, x*x)
}

// neumaier adds x to the running sum s whose lost low-order part is c
// (Neumaier 1974, "Rundungsfehleranalyse einiger Verfahren zur Summation
// endlicher Summen"): the improvement on Kahan's algorithm that also holds when
// x is larger than the sum so far.
func neumaier(s, c, x float64) (float64, float64) {
	t := s + x
	if math.Abs(s) >= math.Abs(x) {
		c += (s - t) + x
	} else {
		c += (x - t) + s
	}
	return t, c
}

// moments folds the compensation in.
func (a *accumulator) moments() Moments {
	return Moments{N: a.n, Sum: a.sum + a.sumC, SumSq: a.sumSq + a.sqC}
}

// mergeInto adds a to the accumulator b, compensation included.
func (a *accumulator) mergeInto(b *accumulator) {
	b.n += a.n
	b.sum, b.sumC = neumaier(b.sum, b.sumC, a.sum)
	b.sumC += a.sumC
	b.sumSq, b.sqC = neumaier(b.sumSq, b.sqC, a.sumSq)
	b.sqC += a.sqC
}

// VariantStats are the raw sufficient statistics of one variant: everything
// the comparison is computed from. They add up across replicas with Merge.
type VariantStats struct {
	// Name of the variant.
	Name string `json:"name"`
	// Errors is the number of failed requests (backend 5xx or gateway error).
	Errors int64 `json:"errors"`
	// Latency holds the per-request latencies in milliseconds; Latency.N is the
	// number of requests.
	Latency Moments `json:"latency_ms"`
	// LatencyOutOfRange counts latencies outside the histogram's range
	// (negative, or above LatencyMax), which were clamped to it.
	LatencyOutOfRange int64 `json:"latency_out_of_range"`
	// Outcomes holds the business outcomes recorded per metric.
	Outcomes map[string]Moments `json:"outcomes,omitempty"`
	// Histogram of the latencies in microseconds, for the quantiles. Nil where
	// it is not known: stats aggregated from replicas that shipped only sums.
	Histogram *hdrhistogram.Histogram `json:"-"`
}

// Merge adds the statistics of o (the same variant, seen elsewhere) to s.
//
// Histograms are merged when both sides know theirs (a side without requests
// needs none); when one side's is unknown the result has none, so that
// quantiles never describe a different population than the counts next to
// them.
func (s *VariantStats) Merge(o VariantStats) {
	s.Errors += o.Errors
	s.LatencyOutOfRange += o.LatencyOutOfRange
	if len(o.Outcomes) > 0 && s.Outcomes == nil {
		s.Outcomes = make(map[string]Moments, len(o.Outcomes))
	}
	for metric, m := range o.Outcomes {
		sum := s.Outcomes[metric]
		sum.Merge(m)
		s.Outcomes[metric] = sum
	}
	known := func(v *VariantStats) bool { return v.Histogram != nil || v.Latency.N == 0 }
	if !known(s) || !known(&o) {
		s.Histogram = nil
	} else if o.Histogram != nil {
		merged := newLatencyHistogram()
		if s.Histogram != nil {
			merged.Merge(s.Histogram)
		}
		merged.Merge(o.Histogram)
		s.Histogram = merged
	}
	s.Latency.Merge(o.Latency)
}
