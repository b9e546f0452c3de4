package experiments

// Aggregation across gateway replicas.
//
// With a Cluster set, every replica adds what it records to one Redis hash
// per route, identity and variant, and reads every replica's sums back for
// the report. Moments add up (see moments.go), so the hashes hold plain sums:
// requests, errors, latency sum and sum of squares, and per outcome metric
// n, sum and sum of squares.
//
// Writing never happens on the request path. A background pusher (RunPusher,
// once a second) sends, per variant, the difference between what the
// variant has recorded and what was pushed before (trial.pushed), in one
// MULTI/EXEC. Only after EXEC succeeds does pushed move forward, so a push
// that fails is sent again, in full, by the next one: nothing is lost.
//
// A push whose reply is lost (a timeout after Redis applied it) must not be
// sent twice either. Each MULTI therefore also sets a marker key, one per
// replica, to the push's id. A push that failed is "in doubt"; before
// anything else, the next push or report reads the marker: if it holds the
// doubtful id, the push was applied and pushed moves forward; if not, it was
// not, and its numbers go out with the next delta. Either way every value is
// counted exactly once.
//
// Life of a push:
//
//	idle --Push--> sending --EXEC ok--> idle (pushed += delta)
//	sending --error--> in doubt --marker = id--> idle (pushed += delta)
//	in doubt --marker != id--> idle (delta resent next time)
//	in doubt --marker unreadable--> in doubt
//
// When Redis is down or slower than its timeout, reports fall back to this
// process's numbers with a note, and the outage is logged once (and its end
// once). Requests are never affected.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// KeyTTL is how long a variant's hash lives after its last push: an
	// abandoned experiment (a route removed, a salt changed) expires.
	KeyTTL = 7 * 24 * time.Hour
	// PushInterval is how often RunPusher sends the deltas.
	PushInterval = time.Second
	// keyPrefix starts every key the experiments keep in Redis.
	keyPrefix = "sluice:exp:"
)

// Hash fields of a variant. Outcome fields are outcomeField+metric+":n",
// ":sum" or ":sumsq" (metric names may hold ':', the suffixes do not).
const (
	fieldRequests   = "requests"
	fieldErrors     = "errors"
	fieldOutOfRange = "out_of_range"
	fieldLatSum     = "latency_sum"
	fieldLatSumSq   = "latency_sumsq"
	outcomeField    = "o:"
)

// Cluster is the Redis that gateway replicas share.
type Cluster struct {
	client  redis.UniversalClient
	timeout time.Duration
	log     *slog.Logger
}

// NewCluster wraps a client. timeout bounds every round trip; a slower
// answer counts as Redis being down. The client stays the caller's to close.
func NewCluster(client redis.UniversalClient, timeout time.Duration, log *slog.Logger) *Cluster {
	// go-redis logs every failed dial through one process-wide logger;
	// the outage is logged here, once, so its lines go to debug.
	quietRedisLog.Do(func() { redis.SetLogger(redisDebugLog{log}) })
	return &Cluster{client: client, timeout: timeout, log: log}
}

var quietRedisLog sync.Once

// redisDebugLog sends go-redis's own log lines to the structured log at
// debug level.
type redisDebugLog struct{ log *slog.Logger }

func (l redisDebugLog) Printf(ctx context.Context, format string, args ...any) {
	l.log.DebugContext(ctx, fmt.Sprintf(format, args...), "source", "go-redis")
}

// ClientOptions are the go-redis options for a cluster's client: every
// timeout is timeout and nothing is retried (a retry would multiply the
// wait; the next push retries anyway), with a small pool since one pusher
// and the admin API are its only users.
func ClientOptions(addr, password string, db int, timeout time.Duration) *redis.Options {
	return &redis.Options{
		Addr:                  addr,
		Password:              password,
		DB:                    db,
		DialTimeout:           timeout,
		ReadTimeout:           timeout,
		WriteTimeout:          timeout,
		ContextTimeoutEnabled: true,
		MaxRetries:            -1,
		DialerRetries:         1,
		PoolSize:              4,
		DisableIdentity:       true,
	}
}

// clusterSync is a Registry's side of the aggregation.
type clusterSync struct {
	mu      sync.Mutex // serialises pushes, cluster reads and SetCluster
	cluster *Cluster
	replica string // random id of this process, for its marker key
	seq     uint64 // pushes made, for push ids
	doubt   *pushBatch
	down    bool // the outage was logged
}

func newClusterSync() clusterSync {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return clusterSync{replica: hex.EncodeToString(b[:])}
}

// pushBatch is one push: its id and, per variant, the cumulative stats it
// brings Redis up to.
type pushBatch struct {
	id      string
	entries []pushEntry
}

type pushEntry struct {
	trial *trial
	key   string
	cur   VariantStats // cumulative, what pushed becomes once applied
	delta VariantStats // cur minus pushed
}

// SetCluster makes the registry aggregate through c, or per process when c
// is nil. Numbers recorded before stay pushed or pending as they are: a
// new Redis receives only what was not sent to the previous one.
func (r *Registry) SetCluster(c *Cluster) {
	s := &r.sync
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cluster, s.down = c, false
}

// RunPusher pushes every interval until ctx ends. Run it in one goroutine.
func (r *Registry) RunPusher(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = r.Push(ctx)
		}
	}
}

// Push sends to Redis what every variant recorded since the last push that
// succeeded, in one MULTI/EXEC, bounded by the cluster's timeout. Without a
// cluster it does nothing. On failure the numbers stay pending for the next
// push; the outage is logged once.
func (r *Registry) Push(ctx context.Context) error {
	s := &r.sync
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.cluster
	if c == nil {
		return nil
	}
	if err := s.settle(ctx, c); err != nil {
		return s.markDown(c, err)
	}
	batch := &pushBatch{entries: r.pending()}
	if len(batch.entries) == 0 {
		return nil
	}
	s.seq++
	batch.id = fmt.Sprintf("%s:%d", s.replica, s.seq)
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	_, err := c.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, e := range batch.entries {
			writeDelta(ctx, p, e.key, e.delta)
			p.Expire(ctx, e.key, KeyTTL)
		}
		p.Set(ctx, s.markerKey(), batch.id, KeyTTL)
		return nil
	})
	if err != nil {
		s.doubt = batch
		return s.markDown(c, fmt.Errorf("push to redis: %w", err))
	}
	batch.commit()
	s.markUp(c)
	return nil
}

func (s *clusterSync) markerKey() string { return keyPrefix + "pusher:" + s.replica }

// settle decides a push in doubt by reading the marker it would have set.
func (s *clusterSync) settle(ctx context.Context, c *Cluster) error {
	if s.doubt == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	last, err := c.client.Get(ctx, s.markerKey()).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("read push marker: %w", err)
	}
	if last == s.doubt.id {
		s.doubt.commit()
	}
	s.doubt = nil
	return nil
}

// commit records that the batch's numbers are in Redis.
func (b *pushBatch) commit() {
	for _, e := range b.entries {
		e.trial.pushed[e.cur.Name] = e.cur
	}
}

// pending lists every variant with numbers not yet pushed. Called with
// sync.mu held.
func (r *Registry) pending() []pushEntry {
	var out []pushEntry
	for _, e := range r.experiments() {
		for _, cur := range e.stats(false) {
			delta := cur.minus(e.trial.pushed[cur.Name])
			if !delta.isZero() {
				out = append(out, pushEntry{trial: e.trial, key: variantKey(e.route, e.trial.identity, cur.Name), cur: cur, delta: delta})
			}
		}
	}
	return out
}

// variantKey is the Redis hash of one variant of one experiment:
// sluice:exp:ROUTE:IDHASH:VARIANT, IDHASH being the first 16 hex digits of
// the SHA-256 of the identity (salt and variant names), so a new identity
// starts from zero. Route and variant names are letters, digits and "._-".
func variantKey(route, identity, variant string) string {
	sum := sha256.Sum256([]byte(identity))
	return keyPrefix + route + ":" + hex.EncodeToString(sum[:8]) + ":" + variant
}

// writeDelta queues the increments of d on key.
func writeDelta(ctx context.Context, p redis.Pipeliner, key string, d VariantStats) {
	incr := func(field string, n int64) {
		if n != 0 {
			p.HIncrBy(ctx, key, field, n)
		}
	}
	incrFloat := func(field string, x float64) {
		if x != 0 {
			p.HIncrByFloat(ctx, key, field, x)
		}
	}
	incr(fieldRequests, d.Latency.N)
	incr(fieldErrors, d.Errors)
	incr(fieldOutOfRange, d.LatencyOutOfRange)
	incrFloat(fieldLatSum, d.Latency.Sum)
	incrFloat(fieldLatSumSq, d.Latency.SumSq)
	for metric, m := range d.Outcomes {
		incr(outcomeField+metric+":n", m.N)
		incrFloat(outcomeField+metric+":sum", m.Sum)
		incrFloat(outcomeField+metric+":sumsq", m.SumSq)
	}
}

// readStats parses a variant's hash (fields it does not know are ignored).
func readStats(name string, h map[string]string) VariantStats {
	st := VariantStats{Name: name}
	integer := func(v string) int64 { n, _ := strconv.ParseInt(v, 10, 64); return n }
	float := func(v string) float64 { x, _ := strconv.ParseFloat(v, 64); return x }
	for field, v := range h {
		switch field {
		case fieldRequests:
			st.Latency.N = integer(v)
		case fieldErrors:
			st.Errors = integer(v)
		case fieldOutOfRange:
			st.LatencyOutOfRange = integer(v)
		case fieldLatSum:
			st.Latency.Sum = float(v)
		case fieldLatSumSq:
			st.Latency.SumSq = float(v)
		default:
			rest, ok := strings.CutPrefix(field, outcomeField)
			i := strings.LastIndexByte(rest, ':')
			if !ok || i < 1 {
				continue
			}
			metric := rest[:i]
			if st.Outcomes == nil {
				st.Outcomes = make(map[string]Moments)
			}
			m := st.Outcomes[metric]
			switch rest[i+1:] {
			case "n":
				m.N = integer(v)
			case "sum":
				m.Sum = float(v)
			case "sumsq":
				m.SumSq = float(v)
			}
			st.Outcomes[metric] = m
		}
	}
	return st
}

// clusterReport reads every replica's sums and adds this process's
// unpushed numbers. false: no cluster is set, or Redis did not answer, in
// which case the process reports carry a note saying so (returned true).
func (r *Registry) clusterReport(exps []*Experiment) ([]RouteReport, bool) {
	s := &r.sync
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.cluster
	if c == nil {
		return nil, false
	}
	remote, err := s.read(c, exps)
	if err != nil {
		s.markDown(c, err)
		out := make([]RouteReport, len(exps))
		for i, e := range exps {
			out[i] = e.Report()
			out[i].Note = fmt.Sprintf("Redis did not answer within %v (%v): these are this process's numbers only", c.timeout, err)
		}
		return out, true
	}
	s.markUp(c)
	out := make([]RouteReport, len(exps))
	for i, e := range exps {
		local := e.Stats()
		merged := make([]VariantStats, len(local))
		for j, st := range local {
			merged[j] = remote[i][j]
			merged[j].Merge(st.minus(e.trial.pushed[st.Name]))
			// Only this process's latencies are known one by one.
			merged[j].Histogram = st.Histogram
		}
		rep := BuildReport(e.route, e.trial.identity, e.trial.startedAt, merged)
		rep.Scope = ScopeCluster
		rep.Note = "every replica's numbers, summed through Redis; latency p50/p95/p99 are this process's only"
		out[i] = rep
	}
	return out, true
}

// read fetches every variant's hash in one round trip, in exps' order.
// Called with sync.mu held.
func (s *clusterSync) read(c *Cluster, exps []*Experiment) ([][]VariantStats, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	if err := s.settle(ctx, c); err != nil {
		return nil, err
	}
	cmds := make([][]*redis.MapStringStringCmd, len(exps))
	_, err := c.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, e := range exps {
			for _, v := range e.variants {
				cmds[i] = append(cmds[i], p.HGetAll(ctx, variantKey(e.route, e.trial.identity, v.name)))
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read from redis: %w", err)
	}
	out := make([][]VariantStats, len(exps))
	for i, e := range exps {
		for j, v := range e.variants {
			out[i] = append(out[i], readStats(v.name, cmds[i][j].Val()))
		}
	}
	return out, nil
}

// markDown logs the start of an outage, once, and returns err.
func (s *clusterSync) markDown(c *Cluster, err error) error {
	if !s.down {
		s.down = true
		c.log.Warn("redis unavailable: experiment numbers stay per process and are pushed when it returns", "err", err)
	}
	return err
}

// markUp logs the end of an outage.
func (s *clusterSync) markUp(c *Cluster) {
	if s.down {
		s.down = false
		c.log.Info("redis available again: experiment numbers aggregate across replicas")
	}
}

// minus is s without o (o being an earlier state of the same variant): the
// numbers recorded in between. The histogram is left out.
func (s VariantStats) minus(o VariantStats) VariantStats {
	d := VariantStats{
		Name:              s.Name,
		Errors:            s.Errors - o.Errors,
		LatencyOutOfRange: s.LatencyOutOfRange - o.LatencyOutOfRange,
		Latency:           s.Latency.minus(o.Latency),
	}
	for metric, m := range s.Outcomes {
		dm := m.minus(o.Outcomes[metric])
		if dm != (Moments{}) {
			if d.Outcomes == nil {
				d.Outcomes = make(map[string]Moments)
			}
			d.Outcomes[metric] = dm
		}
	}
	return d
}

func (m Moments) minus(o Moments) Moments {
	return Moments{N: m.N - o.N, Sum: m.Sum - o.Sum, SumSq: m.SumSq - o.SumSq}
}

func (s VariantStats) isZero() bool {
	return s.Errors == 0 && s.LatencyOutOfRange == 0 && s.Latency == (Moments{}) && len(s.Outcomes) == 0
}
