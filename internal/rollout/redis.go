package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/redis/go-redis/v9"
)

// Shared is the coordinator of replicas that share a Redis:
//
//	sluice:rollout:ROUTE:lease     the id of the replica that decides the
//	                               route, for LeaseTTL; it renews it every
//	                               round
//	sluice:rollout:ROUTE           hash {version, state}: the state, written
//	                               only over the version the writer read
//	sluice:rollout:ROUTE:w:EPOCH   hash replica -> its numbers of the step
//
// Every replica publishes its numbers each round and reads everyone's, so
// the deciding replica judges the step on all the traffic, and every
// replica shows the same. Every replica reads the state each round, so a
// transition reaches all of them within one round. When Redis does not
// answer, nobody decides (the rollout holds its step) and each replica
// keeps serving the share it last read.
type Shared struct {
	client  redis.UniversalClient
	timeout time.Duration
	replica string
}

// LeaseTTL is how long a deciding replica that stopped renewing keeps the
// lease before another takes it.
const LeaseTTL = 3 * time.Second

// windowTTL is how long a step's numbers stay in Redis after the last
// replica published them.
const windowTTL = time.Hour

const sharedPrefix = "sluice:rollout:"

// NewShared returns the coordinator over client; replica names this
// process, timeout bounds each round trip.
func NewShared(client redis.UniversalClient, replica string, timeout time.Duration) *Shared {
	return &Shared{client: client, replica: replica, timeout: timeout}
}

var leaseScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0`)

// Leader takes or renews the route's lease.
func (s *Shared) Leader(ctx context.Context, route string) bool {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	n, err := leaseScript.Run(ctx, s.client, []string{sharedPrefix + route + ":lease"}, s.replica, LeaseTTL.Milliseconds()).Int()
	return err == nil && n == 1
}

// Load reads the route's state.
func (s *Shared) Load(ctx context.Context, route string) (State, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	data, err := s.client.HGet(ctx, sharedPrefix+route, "state").Bytes()
	if errors.Is(err, redis.Nil) {
		return State{}, false, nil
	}
	if err != nil {
		return State{}, false, err
	}
	var st State
	if err := json.Unmarshal(data, &st); err != nil {
		return State{}, false, err
	}
	return st, true, nil
}

var saveScript = redis.NewScript(`
local v = redis.call('HGET', KEYS[1], 'version')
if (v or '0') ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'version', ARGV[2], 'state', ARGV[3])
return 1`)

// Save writes st over version prev, atomically.
func (s *Shared) Save(ctx context.Context, st State, prev uint64) (bool, error) {
	data, err := json.Marshal(st)
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	n, err := saveScript.Run(ctx, s.client, []string{sharedPrefix + st.Route},
		strconv.FormatUint(prev, 10), strconv.FormatUint(st.Version, 10), data).Int()
	return n == 1, err
}

// wireCounts is Counts as published: the histograms in their compressed
// encoding.
type wireCounts struct {
	Counts
	StableLatency    []byte `json:"stable_latency,omitempty"`
	CandidateLatency []byte `json:"candidate_latency,omitempty"`
}

// Exchange publishes local under this replica's name and adds up every
// replica's numbers of the same step.
func (s *Shared) Exchange(ctx context.Context, route string, epoch uint64, local Counts) (Counts, error) {
	w := wireCounts{Counts: local}
	var err error
	if w.StableLatency, err = encode(local.Stable.Latency); err != nil {
		return local, err
	}
	if w.CandidateLatency, err = encode(local.Candidate.Latency); err != nil {
		return local, err
	}
	data, err := json.Marshal(w)
	if err != nil {
		return local, err
	}
	key := sharedPrefix + route + ":w:" + strconv.FormatUint(epoch, 10)
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var all *redis.MapStringStringCmd
	_, err = s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, key, s.replica, data)
		p.Expire(ctx, key, windowTTL)
		all = p.HGetAll(ctx, key)
		return nil
	})
	if err != nil {
		return local, err
	}
	var sum Counts
	for _, raw := range all.Val() {
		var in wireCounts
		if err := json.Unmarshal([]byte(raw), &in); err != nil {
			continue // another version's format: leave it out
		}
		if in.Stable.Latency, err = decode(in.StableLatency); err != nil {
			continue
		}
		if in.Candidate.Latency, err = decode(in.CandidateLatency); err != nil {
			continue
		}
		sum.Merge(in.Counts)
	}
	return sum, nil
}

func encode(h *hdrhistogram.Histogram) ([]byte, error) {
	if h == nil {
		return nil, nil
	}
	return h.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
}

func decode(b []byte) (*hdrhistogram.Histogram, error) {
	if len(b) == 0 {
		return nil, nil
	}
	return hdrhistogram.Decode(b)
}
