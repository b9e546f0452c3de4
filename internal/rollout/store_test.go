package rollout

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// movedState is a state with a history, gates and a window, as a few
// transitions leave it.
func movedState(t *testing.T) State {
	t.Helper()
	spec := testSpec()
	st := start(spec, State{}, t0)
	st, ev := Decide(spec, st, healthy(), t0.Add(time.Minute))
	if ev == nil {
		t.Fatal("the healthy step did not pass")
	}
	few := healthy()
	few.Candidate.Requests = 3
	st, ev = Decide(spec, st, few, t0.Add(2*time.Minute))
	if ev == nil || st.Phase != Waiting {
		t.Fatal("too few requests did not wait")
	}
	return st
}

func TestLocalRoundTrip(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l := NewLocal(dir)
	st := movedState(t)
	ok, err := l.Save(ctx, st, st.Version-1)
	if err != nil || !ok {
		t.Fatalf("save: %t, %v", ok, err)
	}
	got, ok, err := l.Load(ctx, st.Route)
	if err != nil || !ok {
		t.Fatalf("load: %t, %v", ok, err)
	}
	if !reflect.DeepEqual(got, st) {
		t.Errorf("loaded %+v\nsaved  %+v", got, st)
	}

	// A later save replaces the file whole and leaves no temporary file.
	next, _, err := Override(testSpec(), st, ActionAbort, t0.Add(3*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := l.Save(ctx, next, st.Version); err != nil || !ok {
		t.Fatalf("second save: %t, %v", ok, err)
	}
	if got, _, _ := l.Load(ctx, st.Route); got.Phase != RolledBack || got.Version != next.Version {
		t.Errorf("after the second save: %s version %d, want rolled_back version %d", got.Phase, got.Version, next.Version)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !reflect.DeepEqual(names, []string{"rollout-chat.json"}) {
		t.Errorf("state_dir holds %v, want only rollout-chat.json", names)
	}

	// Another process (a restart) reads the same state.
	if got, ok, err := NewLocal(dir).Load(ctx, "chat"); err != nil || !ok || got.Version != next.Version {
		t.Errorf("a new Local over the same dir: %+v %t %v", got, ok, err)
	}
}

func TestLocalMissingAndBroken(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l := NewLocal(dir)
	if st, ok, err := l.Load(ctx, "nothing"); err != nil || ok || st.Route != "" {
		t.Errorf("missing route: %+v %t %v, want nothing, false, no error", st, ok, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rollout-broken.json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := l.Load(ctx, "broken"); err == nil || ok {
		t.Errorf("a broken file: %t %v, want an error", ok, err)
	}
}

func TestLocalWithoutDir(t *testing.T) {
	ctx := context.Background()
	l := NewLocal("")
	if !l.Leader(ctx, "chat") {
		t.Error("a Local is not the leader")
	}
	st := movedState(t)
	if ok, err := l.Save(ctx, st, 0); err != nil || !ok {
		t.Fatalf("save without a dir: %t %v, want true, nil", ok, err)
	}
	if _, ok, err := l.Load(ctx, st.Route); err != nil || ok {
		t.Errorf("load without a dir: %t %v, want nothing kept", ok, err)
	}
	local := Counts{Stable: SideCounts{Requests: 4, Errors: 1}, ShadowCompared: 2}
	if got, err := l.Exchange(ctx, "chat", 3, local); err != nil || got.Stable.Requests != 4 || got.Stable.Errors != 1 || got.ShadowCompared != 2 {
		t.Errorf("exchange: %+v %v, want its own numbers back", got, err)
	}
}

func TestLocalSaveFailsWithoutDir(t *testing.T) {
	l := NewLocal(filepath.Join(t.TempDir(), "gone"))
	if ok, err := l.Save(context.Background(), movedState(t), 0); err == nil || ok {
		t.Errorf("save into a missing dir: %t %v, want an error", ok, err)
	}
}

func TestCheckDir(t *testing.T) {
	if err := CheckDir(""); err != nil {
		t.Errorf("no state_dir: %v", err)
	}
	base := t.TempDir()
	dir := filepath.Join(base, "a", "b")
	if err := CheckDir(dir); err != nil {
		t.Fatalf("missing dir: %v", err)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Fatalf("CheckDir did not create %s: %v", dir, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("CheckDir left %d files behind", len(entries))
	}
	if err := CheckDir(dir); err != nil {
		t.Errorf("existing dir: %v", err)
	}

	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := CheckDir(filepath.Join(file, "state")); err == nil {
		t.Error("a dir under a regular file: no error")
	}
	if err := CheckDir(file); err == nil {
		t.Error("a regular file as the dir: no error")
	}
}
