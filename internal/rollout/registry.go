package rollout

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Round is how often the controller reads the numbers, decides and, with
// Redis, exchanges numbers and state with the other replicas.
const Round = 250 * time.Millisecond

// ErrNoRollout is a route that has no canary block.
var ErrNoRollout = errors.New("no canary rollout on this route")

// Registry holds the rollouts of the canary routes across reloads, and
// runs the controller that moves them.
type Registry struct {
	mu       sync.Mutex
	rollouts map[string]*Rollout
	coord    atomic.Pointer[Coordinator]
	replica  string
	log      *slog.Logger
	hooks    *webhooks
	now      func() time.Time
	// onEvent, when set, sees every transition this replica makes (the
	// transition counter).
	onEvent func(Event)
	// coordErr is the last coordinator failure, logged once until a
	// round succeeds again.
	coordErr atomic.Pointer[string]
}

// NewRegistry returns an empty registry with a Local coordinator that
// keeps nothing on disk.
func NewRegistry(log *slog.Logger) *Registry {
	var id [8]byte
	_, _ = rand.Read(id[:])
	g := &Registry{
		rollouts: map[string]*Rollout{},
		replica:  hex.EncodeToString(id[:]),
		log:      log,
		hooks:    newWebhooks(log),
		now:      time.Now,
	}
	g.SetCoordinator(NewLocal(""))
	return g
}

// Replica is this process's name among the replicas.
func (g *Registry) Replica() string { return g.replica }

// OnEvent sets a function that sees every transition this replica makes.
func (g *Registry) OnEvent(f func(Event)) { g.onEvent = f }

// SetCoordinator sets where states are kept from now on (a reload may
// change state_dir or the redis block).
func (g *Registry) SetCoordinator(c Coordinator) { g.coord.Store(&c) }

func (g *Registry) coordinator() Coordinator { return *g.coord.Load() }

// Rollout returns the route's rollout for spec. The same route with the
// same stable and candidate keeps its rollout and its place (other changes
// apply to it); otherwise the stored state is resumed if it is of the same
// pools (a restart), or a new rollout starts at the first step. shadow,
// when the route mirrors to the candidate, reads the shadow's totals.
func (g *Registry) Rollout(spec Spec, shadow func() (mismatched, compared int64)) *Rollout {
	g.mu.Lock()
	defer g.mu.Unlock()
	var prev State // the rollout this one replaces, if any
	if old := g.rollouts[spec.Route]; old != nil {
		old.mu.Lock()
		defer old.mu.Unlock()
		if sameRollout(spec, old.state) {
			shadowChanged := (old.shadow == nil) != (shadow == nil)
			old.spec, old.shadow = spec, shadow
			old.adopt(fit(spec, old.state))
			if shadowChanged {
				// The shadow gate's inputs changed: the step's numbers
				// start again, with the shadow's totals as their base.
				old.newWindow(old.state.Epoch)
			}
			return old
		}
		prev = old.state
	}
	r := &Rollout{spec: spec, shadow: shadow}
	r.mu.Lock()
	defer r.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stored, ok, err := g.coordinator().Load(ctx, spec.Route)
	if err != nil {
		g.log.Error("cannot read the stored rollout state; starting at the first step", "route", spec.Route, "err", err)
	}
	if ok && sameRollout(spec, stored) {
		r.adopt(fit(spec, stored))
		g.log.Info("rollout resumed", "route", spec.Route, "state", stored.Phase, "step", stored.Step, "percent", r.state.Percent)
	} else {
		if ok {
			prev = stored
		}
		st := start(spec, prev, g.now())
		r.adopt(st)
		saved, err := g.save(ctx, r, st, stored.Version, &st.History[len(st.History)-1])
		if err != nil {
			g.log.Error("cannot store the new rollout state", "route", spec.Route, "err", err)
		} else if !saved {
			// Another replica started it a moment before: take its state.
			if stored, ok, err := g.coordinator().Load(ctx, spec.Route); err == nil && ok && sameRollout(spec, stored) {
				r.adopt(fit(spec, stored))
			}
		}
	}
	g.rollouts[spec.Route] = r
	return r
}

// Retain forgets the rollouts of routes not in keep.
func (g *Registry) Retain(keep map[string]bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for name := range g.rollouts {
		if !keep[name] {
			delete(g.rollouts, name)
		}
	}
}

func (g *Registry) list() []*Rollout {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]*Rollout, 0, len(g.rollouts))
	for _, r := range g.rollouts {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *Rollout) int {
		if a.spec.Route < b.spec.Route {
			return -1
		}
		return 1
	})
	return out
}

// Run is the controller: a round every interval until ctx ends.
func (g *Registry) Run(ctx context.Context, interval time.Duration) {
	go g.hooks.run(ctx)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			g.Round(ctx)
		}
	}
}

// Round moves every rollout once: it reads the shared state (a transition
// another replica made), exchanges the numbers and, on the deciding
// replica, applies Decide.
func (g *Registry) Round(ctx context.Context) {
	rollouts := g.list()
	if len(rollouts) == 0 {
		return
	}
	c := g.coordinator()
	var failure error
	for _, r := range rollouts {
		if err := g.step(ctx, c, r, c.Leader(ctx, r.spec.Route)); err != nil {
			failure = err
		}
	}
	g.noteCoordinator(failure)
}

func (g *Registry) step(ctx context.Context, c Coordinator, r *Rollout, leader bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	stored, ok, err := c.Load(ctx, r.spec.Route)
	if err != nil {
		return err
	}
	if ok && sameRollout(r.spec, stored) && stored.Version != r.state.Version {
		r.adopt(fit(r.spec, stored))
	}
	counts, err := c.Exchange(ctx, r.spec.Route, r.state.Epoch, r.counts())
	r.last, r.leader = counts, leader
	if err != nil || !leader {
		return err
	}
	next, ev := Decide(r.spec, r.state, counts.Window(), g.now())
	if ev == nil {
		return nil
	}
	_, err = g.save(ctx, r, next, r.state.Version, ev)
	return err
}

// save stores next over version prev and, if it was stored, makes it the
// rollout's state and announces ev. false: someone else moved first (the
// next round reads what they wrote). Called with r.mu held.
func (g *Registry) save(ctx context.Context, r *Rollout, next State, prev uint64, ev *Event) (bool, error) {
	ok, err := g.coordinator().Save(ctx, next, prev)
	if err != nil {
		return false, fmt.Errorf("saving the rollout state: %w", err)
	}
	if !ok {
		return false, nil
	}
	r.adopt(next)
	level := slog.LevelInfo
	if ev.To == RolledBack || ev.To == Paused {
		level = slog.LevelWarn
	}
	args := []any{"route", ev.Route, "from", string(ev.From), "to", string(ev.To), "step", ev.Step,
		"percent", ev.Percent, "by", ev.By, "reason", ev.Reason}
	for _, gate := range ev.Gates {
		value := "n/a"
		if gate.Value != nil {
			value = fmt.Sprintf("%.4g", *gate.Value)
		}
		args = append(args, "gate_"+gate.Name, fmt.Sprintf("%s (threshold %g, pass %t)", value, gate.Threshold, gate.Pass))
	}
	g.log.Log(ctx, level, "rollout transition", args...)
	if g.onEvent != nil {
		g.onEvent(*ev)
	}
	if r.spec.Webhook != "" {
		g.hooks.send(r.spec.Webhook, *ev)
	}
	return true, nil
}

// noteCoordinator logs the first failure of a run of them, and the end.
func (g *Registry) noteCoordinator(err error) {
	if err == nil {
		if g.coordErr.Swap(nil) != nil {
			g.log.Info("rollout state store answers again; rollouts continue")
		}
		return
	}
	msg := err.Error()
	if g.coordErr.Swap(&msg) == nil {
		g.log.Warn("rollout state store unavailable; rollouts hold their step until it answers", "err", msg)
	}
}

// Act applies an operator's action to a route's rollout and returns its
// state. A state moved by another replica at the same moment is read and
// the action tried once more.
func (g *Registry) Act(ctx context.Context, route, action string) (State, error) {
	g.mu.Lock()
	r := g.rollouts[route]
	g.mu.Unlock()
	if r == nil {
		return State{}, ErrNoRollout
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	c := g.coordinator()
	for range 2 {
		if stored, ok, err := c.Load(ctx, route); err != nil {
			return r.state, fmt.Errorf("reading the rollout state: %w", err)
		} else if ok && sameRollout(r.spec, stored) {
			r.adopt(fit(r.spec, stored))
		}
		next, ev, err := Override(r.spec, r.state, action, g.now())
		if err != nil {
			return r.state, err
		}
		ok, err := g.save(ctx, r, next, r.state.Version, ev)
		if err != nil {
			return r.state, err
		}
		if ok {
			return next, nil
		}
	}
	return r.state, fmt.Errorf("the rollout changed twice while acting; try again: %w", ErrConflict)
}
