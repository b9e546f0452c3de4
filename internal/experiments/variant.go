package experiments

import (
	"math/rand/v2"
	"runtime"
	"sync"
	"time"
	"unsafe"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// The latency histogram covers 1µs to LatencyMax at 3 significant digits
// (quantiles within 0.1%), in microseconds. It takes about 140 KB, per shard.
const (
	// LatencyMax is the largest latency the histogram tells apart; longer ones
	// are recorded as LatencyMax and counted in LatencyOutOfRange.
	LatencyMax       = 60 * time.Second
	latencyMaxMicros = int64(LatencyMax / time.Microsecond)
	latencyDigits    = 3
	// maxShards bounds the memory of a variant: maxShards × 140 KB.
	maxShards = 8
)

func newLatencyHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(1, latencyMaxMicros, latencyDigits)
}

// Variant is the traffic record of one variant of a split route. Record is
// called by every request of the route, concurrently, so the state is split in
// shards, each behind its own mutex: a request takes the first free shard from
// a random starting point, and two requests only wait on each other when every
// shard is busy. Reads (Stats) lock the shards one at a time and add them up.
type Variant struct {
	name   string
	shards []shard
	mask   uint32

	// outcomes is guarded by the experiment's trial.mu, not by a shard: it is
	// written by the admin API, rarely.
	outcomes map[string]*accumulator
}

type shardState struct {
	mu         sync.Mutex
	errors     int64
	outOfRange int64
	latency    accumulator // milliseconds
	hist       *hdrhistogram.Histogram
}

// shard pads shardState to a multiple of 128 bytes so that two shards never
// share a cache line (nor the adjacent line that x86 prefetches with it): a
// request recording in one must not slow down a request recording in the next.
type shard struct {
	shardState
	_ [(128 - unsafe.Sizeof(shardState{})%128) % 128]byte
}

func newVariant(name string) *Variant {
	n := shardCount(runtime.GOMAXPROCS(0))
	v := &Variant{
		name:     name,
		shards:   make([]shard, n),
		mask:     uint32(n - 1),
		outcomes: make(map[string]*accumulator),
	}
	for i := range v.shards {
		v.shards[i].hist = newLatencyHistogram()
	}
	return v
}

// NewRecorder returns a Variant outside any experiment: a traffic
// recorder (requests, errors, latency histogram) for whoever needs one,
// such as a canary's step.
func NewRecorder(name string) *Variant { return newVariant(name) }

// Traffic adds up what the variant recorded: requests, errors and the
// latency histogram (no outcomes).
func (v *Variant) Traffic() VariantStats { return v.traffic(true) }

// shardCount is the power of two at or above procs, at most maxShards.
func shardCount(procs int) int {
	n := 1
	for n < procs && n < maxShards {
		n <<= 1
	}
	return n
}

// Name of the variant.
func (v *Variant) Name() string { return v.name }

// Record one answered request: its latency and whether it failed (a 5xx from
// the backend or an error from the gateway). Safe for concurrent use; it does
// not allocate.
//
// A latency outside [0, LatencyMax] is clamped into it, for the mean as for the
// quantiles (both then describe the same numbers), and counted.
func (v *Variant) Record(latency time.Duration, failed bool) {
	clamped := false
	if latency < 0 {
		latency, clamped = 0, true
	} else if latency > LatencyMax {
		latency, clamped = LatencyMax, true
	}
	s := v.lockShard()
	// Cannot fail: the value is within the histogram's range.
	_ = s.hist.RecordValue(int64(latency / time.Microsecond))
	s.latency.add(float64(latency) / float64(time.Millisecond))
	if failed {
		s.errors++
	}
	if clamped {
		s.outOfRange++
	}
	s.mu.Unlock()
}

// lockShard returns a locked shard: the first free one from a random start
// (math/rand/v2's global source is per-thread and lock-free), or, when all are
// busy, waits for the one it started from.
func (v *Variant) lockShard() *shard {
	start := rand.Uint32()
	for i := uint32(0); i <= v.mask; i++ {
		s := &v.shards[(start+i)&v.mask]
		if s.mu.TryLock() {
			return s
		}
	}
	s := &v.shards[start&v.mask]
	s.mu.Lock()
	return s
}

// traffic adds up the shards: everything in VariantStats but the outcomes.
// Without withHistogram, the histogram is left nil (the pusher needs only
// the sums, and merging the shards' histograms is the costly part).
func (v *Variant) traffic(withHistogram bool) VariantStats {
	var latency accumulator
	st := VariantStats{Name: v.name}
	if withHistogram {
		st.Histogram = newLatencyHistogram()
	}
	for i := range v.shards {
		s := &v.shards[i]
		s.mu.Lock()
		st.Errors += s.errors
		st.LatencyOutOfRange += s.outOfRange
		s.latency.mergeInto(&latency)
		if withHistogram {
			st.Histogram.Merge(s.hist)
		}
		s.mu.Unlock()
	}
	st.Latency = latency.moments()
	return st
}
