package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Coordinator is where rollout states are kept and, with several replicas,
// who decides. Local keeps them in a directory for one process; Shared
// keeps them in Redis for every replica.
type Coordinator interface {
	// Leader reports whether this replica decides a route's rollout now.
	// It is asked once per route and controller round.
	Leader(ctx context.Context, route string) bool
	// Load returns a route's stored state; false when none is stored.
	Load(ctx context.Context, route string) (State, bool, error)
	// Save stores st if the stored state is still at version prev (0:
	// none stored): false when another replica or an operator wrote
	// first.
	Save(ctx context.Context, st State, prev uint64) (bool, error)
	// Exchange publishes this replica's numbers of a route's step and
	// returns every replica's, added up.
	Exchange(ctx context.Context, route string, epoch uint64, local Counts) (Counts, error)
}

// Local is the coordinator of a gateway that shares nothing: it always
// decides, and keeps each route's state in dir as rollout-ROUTE.json
// (route names are file-name safe). With dir "" the states live only in
// memory, in the Registry: they outlive reloads, not restarts.
type Local struct{ dir string }

// NewLocal returns the coordinator for state_dir dir ("" for none).
func NewLocal(dir string) *Local { return &Local{dir: dir} }

// Leader is always true: one process decides for itself.
func (l *Local) Leader(context.Context, string) bool { return true }

func (l *Local) path(route string) string { return filepath.Join(l.dir, "rollout-"+route+".json") }

// Load reads the route's file.
func (l *Local) Load(_ context.Context, route string) (State, bool, error) {
	if l.dir == "" {
		return State{}, false, nil
	}
	data, err := os.ReadFile(l.path(route))
	if errors.Is(err, fs.ErrNotExist) {
		return State{}, false, nil
	}
	if err != nil {
		return State{}, false, err
	}
	var st State
	if err := json.Unmarshal(data, &st); err != nil {
		return State{}, false, fmt.Errorf("%s: %w", l.path(route), err)
	}
	return st, true, nil
}

// Save writes the file whole and renames it into place, so a crash leaves
// the old state or the new one, never half of one. One process writes, so
// prev needs no check.
func (l *Local) Save(_ context.Context, st State, _ uint64) (bool, error) {
	if l.dir == "" {
		return true, nil
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return false, err
	}
	tmp, err := os.CreateTemp(l.dir, ".rollout-"+st.Route+"-*")
	if err != nil {
		return false, err
	}
	defer os.Remove(tmp.Name()) // after the rename, there is nothing to remove
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Close(); err != nil {
		return false, err
	}
	if err := os.Rename(tmp.Name(), l.path(st.Route)); err != nil {
		return false, err
	}
	return true, nil
}

// Exchange has no one to exchange with.
func (l *Local) Exchange(_ context.Context, _ string, _ uint64, local Counts) (Counts, error) {
	return local, nil
}

// CheckDir makes sure state_dir exists and takes files, so that a config
// naming one that cannot is refused before it serves.
func CheckDir(dir string) error {
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("state_dir: %w", err)
	}
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return fmt.Errorf("state_dir: %w", err)
	}
	f.Close()
	return os.Remove(f.Name())
}
