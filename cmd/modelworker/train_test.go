package main

import (
	"bufio"
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/model"
)

var update = flag.Bool("update", false, "rewrite models/iris-v*.json by running the commands in models/rebuild.sh through trainMain")

const repoRoot = "../.."

// rebuildCommands returns the train commands in models/rebuild.sh, keyed by
// their -out file, as flag arguments (without "bin/modelworker train").
func rebuildCommands(t *testing.T) map[string][]string {
	t.Helper()
	script, err := os.ReadFile(filepath.Join(repoRoot, "models", "rebuild.sh"))
	if err != nil {
		t.Fatal(err)
	}
	commands := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(script))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "bin/modelworker train ")
		if !ok {
			continue
		}
		args := strings.Fields(rest)
		flags := flagPairs(t, args)
		commands[flags["-out"]] = args
	}
	return commands
}

// flagPairs reads "-flag value" pairs.
func flagPairs(t *testing.T, args []string) map[string]string {
	t.Helper()
	if len(args)%2 != 0 {
		t.Fatalf("odd number of arguments in %q", args)
	}
	pairs := map[string]string{}
	for i := 0; i < len(args); i += 2 {
		pairs[args[i]] = args[i+1]
	}
	return pairs
}

// inRepo rewrites the repository-relative -data and -out of a rebuild.sh
// command for a test running in cmd/modelworker, or sends -out to out.
func inRepo(args []string, out string) []string {
	args = append([]string(nil), args...)
	for i := 0; i+1 < len(args); i += 2 {
		switch args[i] {
		case "-data":
			args[i+1] = filepath.Join(repoRoot, args[i+1])
		case "-out":
			if out == "" {
				args[i+1] = filepath.Join(repoRoot, args[i+1])
			} else {
				args[i+1] = out
			}
		}
	}
	return args
}

// argsFromModel is the train command that the settings recorded in a model
// file stand for.
func argsFromModel(m *model.Model, dataDir, out string) []string {
	tr := m.Training
	args := []string{"-data", filepath.Join(dataDir, tr.Data), "-kind", m.Kind}
	if len(tr.Hidden) > 0 {
		args = append(args, "-hidden", formatWidths(tr.Hidden))
	}
	return append(args,
		"-name", m.Name, "-version", m.Version,
		"-epochs", strconv.Itoa(tr.Epochs),
		"-lr", strconv.FormatFloat(tr.LearningRate, 'g', -1, 64),
		"-l2", strconv.FormatFloat(tr.L2, 'g', -1, 64),
		"-seed", strconv.FormatUint(tr.Seed, 10),
		"-out", out)
}

func runTrain(t *testing.T, args []string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := trainMain(args, &stdout, &stderr); code != 0 {
		t.Fatalf("train %s: exit %d\n%s", strings.Join(args, " "), code, stderr.String())
	}
	return stdout.String()
}

// Acceptance point 3 of issue 3: each shipped model, retrained with the
// settings recorded in the file itself, is byte for byte the shipped file,
// and those settings are the ones models/rebuild.sh uses.
func TestShippedModelsRebuildByteIdentical(t *testing.T) {
	commands := rebuildCommands(t)
	if *update {
		for _, args := range commands {
			t.Log(strings.TrimSpace(runTrain(t, inRepo(args, ""))))
		}
	}
	for _, v := range []string{"1", "2", "3"} {
		t.Run("iris-v"+v, func(t *testing.T) {
			rel := "models/iris-v" + v + ".json"
			shipped, err := os.ReadFile(filepath.Join(repoRoot, rel))
			if err != nil {
				t.Fatal(err)
			}
			m, err := model.Parse(shipped)
			if err != nil {
				t.Fatal(err)
			}
			if m.Training == nil {
				t.Fatalf("%s records no training settings", rel)
			}
			out := filepath.Join(t.TempDir(), "rebuilt.json")
			recorded := argsFromModel(m, filepath.Join(repoRoot, "data"), out)

			script, ok := commands[rel]
			if !ok {
				t.Fatalf("models/rebuild.sh has no command writing %s", rel)
			}
			want, got := flagPairs(t, recorded), flagPairs(t, inRepo(script, out))
			if len(want) != len(got) {
				t.Errorf("rebuild.sh: %q\nrecorded:   %q", script, recorded)
			}
			for k, w := range want {
				if g := got[k]; g != w && !sameNumber(g, w) {
					t.Errorf("rebuild.sh has %s %q for %s; the file records %q", k, g, rel, w)
				}
			}

			t.Log(strings.TrimSpace(runTrain(t, recorded)))
			rebuilt, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(shipped, rebuilt) {
				t.Errorf("retraining %s with its recorded settings gives different bytes; run models/rebuild.sh (or go test ./cmd/modelworker -run TestShippedModelsRebuildByteIdentical -update) and review the diff", rel)
			}
		})
	}
}

func sameNumber(a, b string) bool {
	x, errA := strconv.ParseFloat(a, 64)
	y, errB := strconv.ParseFloat(b, 64)
	return errA == nil && errB == nil && x == y
}

func TestTrainMainDeterministic(t *testing.T) {
	dir := t.TempDir()
	args := func(out string) []string {
		return []string{"-data", filepath.Join(repoRoot, "data", "iris.csv"), "-kind", "mlp", "-hidden", "6,4",
			"-name", "iris", "-version", "9", "-epochs", "100", "-lr", "0.02", "-l2", "0.001", "-seed", "11", "-out", out}
	}
	a, b := filepath.Join(dir, "a.json"), filepath.Join(dir, "b.json")
	summary := runTrain(t, args(a))
	runTrain(t, args(b))
	first, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	second, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, second) {
		t.Fatal("two runs with the same flags wrote different files")
	}
	if !strings.HasPrefix(summary, "trained iris v9 (mlp 6,4, 100 epochs, seed 11) on iris.csv (150 rows, sha256 ") ||
		!strings.Contains(summary, "training accuracy ") || strings.Count(summary, "\n") != 1 {
		t.Errorf("summary %q", summary)
	}
	if info, err := os.Stat(a); err != nil || info.Mode().Perm() != 0o644 {
		t.Errorf("model file mode: %v %v, want 0644", info.Mode(), err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("train left %d files in the output directory, want 2", len(entries))
	}
}

func TestTrainMainErrors(t *testing.T) {
	dir := t.TempDir()
	iris := filepath.Join(repoRoot, "data", "iris.csv")
	badCSV := filepath.Join(dir, "bad.csv")
	if err := os.WriteFile(badCSV, []byte("a,label\n1,x\none,y\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "m.json")
	base := []string{"-data", iris, "-kind", "softmax", "-name", "iris", "-version", "1", "-out", out, "-epochs", "5"}
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"help", []string{"-h"}, 0, "usage: modelworker train"},
		{"unknown flag", []string{"-colour", "red"}, 2, "flag provided but not defined: -colour"},
		{"no data", []string{"-kind", "softmax", "-name", "iris", "-version", "1", "-out", out}, 2, "-data is required"},
		{"no kind", []string{"-data", iris, "-name", "iris", "-version", "1", "-out", out}, 2, "-kind is required"},
		{"no out", []string{"-data", iris, "-kind", "mlp", "-name", "iris", "-version", "1"}, 2, "-out is required"},
		{"extra argument", append(base, "now"), 2, `unexpected argument "now"`},
		{"bad hidden", append(base, "-hidden", "16,x"), 2, `-hidden: "x" is not a positive integer`},
		{"softmax with hidden", append(base, "-hidden", "16"), 1, "a softmax model has no hidden layers"},
		{"bad kind", append(base, "-kind", "svm"), 1, `kind "svm"`},
		{"missing data file", append(base, "-data", filepath.Join(dir, "nope.csv")), 1, "nope.csv: no such file"},
		{"bad data file", append(base, "-data", badCSV), 1, `bad.csv:3: a is "one"`},
		{"unwritable out", append(base, "-out", filepath.Join(dir, "no", "m.json")), 1, "no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := trainMain(tt.args, &stdout, &stderr)
			if code != tt.code || !strings.Contains(stderr.String(), tt.want) {
				t.Fatalf("exit %d, stderr %q; want exit %d and %q", code, stderr.String(), tt.code, tt.want)
			}
			if code != 0 && stdout.Len() > 0 {
				t.Errorf("stdout %q on failure", stdout.String())
			}
		})
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a failed run left %s behind (%v)", out, err)
	}
}
