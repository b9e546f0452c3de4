package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/sluice-gw/sluice/internal/model"
)

const trainUsage = `usage: modelworker train -data FILE.csv -kind softmax|mlp -out FILE.json -name NAME -version V
                         [-hidden 16 | -hidden 16,8] [-epochs N] [-lr X] [-l2 X] [-seed N]

Trains a model on a CSV file (a header row; numeric features; the class label
in the last column) and writes its model file. The same data and flags give
the same bytes on any machine. The file records the data file's name and
SHA-256 and every setting below, so it can be rebuilt from itself.

`

// trainMain implements `modelworker train`. It returns the exit status: 0 on
// success, 2 for a usage error, 1 when reading, training or writing fails.
func trainMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("modelworker train", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, trainUsage)
		fs.PrintDefaults()
	}
	dataPath := fs.String("data", "", "training data `FILE.csv` (required)")
	kind := fs.String("kind", "", "model kind: softmax or mlp (required)")
	outPath := fs.String("out", "", "model `FILE.json` to write (required)")
	name := fs.String("name", "", "model name, e.g. iris (required)")
	version := fs.String("version", "", "model version, e.g. 2 (required)")
	hidden := fs.String("hidden", "", "mlp hidden layer `widths`, one or two, comma-separated (default 16 for mlp)")
	epochs := fs.Int("epochs", 1000, "full-batch Adam steps")
	lr := fs.Float64("lr", 0.01, "Adam learning rate")
	l2 := fs.Float64("l2", 1e-4, "L2 penalty on weights")
	seed := fs.Uint64("seed", 1, "seed for the initial weights (PCG)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	usageError := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "modelworker train: "+format+"\n", a...)
		return 2
	}
	if fs.NArg() > 0 {
		return usageError("unexpected argument %q", fs.Arg(0))
	}
	for _, f := range []struct{ flag, value string }{
		{"-data", *dataPath}, {"-kind", *kind}, {"-out", *outPath}, {"-name", *name}, {"-version", *version},
	} {
		if f.value == "" {
			return usageError("%s is required (see -h)", f.flag)
		}
	}
	opts := model.TrainOptions{
		Name:         *name,
		Version:      *version,
		Kind:         *kind,
		Epochs:       *epochs,
		LearningRate: *lr,
		L2:           *l2,
		Seed:         *seed,
	}
	switch {
	case *hidden != "":
		widths, err := parseWidths(*hidden)
		if err != nil {
			return usageError("-hidden: %v", err)
		}
		opts.Hidden = widths
	case *kind == model.KindMLP:
		opts.Hidden = []int{16}
	}

	data, err := os.ReadFile(*dataPath)
	if err != nil {
		fmt.Fprintf(stderr, "modelworker train: %v\n", err)
		return 1
	}
	// The base name, not the path as typed: the model file must not depend on
	// the directory the command ran from. The SHA-256 identifies the data.
	ds, err := model.ParseCSV(filepath.Base(*dataPath), data)
	if err != nil {
		fmt.Fprintf(stderr, "modelworker train: %v\n", err)
		return 1
	}
	m, err := model.Train(ds, opts)
	if err != nil {
		fmt.Fprintf(stderr, "modelworker train: %v\n", err)
		return 1
	}
	encoded, err := m.Encode()
	if err == nil {
		err = writeFileAtomic(*outPath, encoded)
	}
	if err != nil {
		fmt.Fprintf(stderr, "modelworker train: %v\n", err)
		return 1
	}
	t := m.Training
	shape := m.Kind
	if len(t.Hidden) > 0 {
		shape += " " + formatWidths(t.Hidden)
	}
	fmt.Fprintf(stdout, "trained %s v%s (%s, %d epochs, seed %d) on %s (%d rows, sha256 %.12s): training accuracy %.4f (%d/%d); wrote %s\n",
		m.Name, m.Version, shape, t.Epochs, t.Seed, t.Data, t.Rows, t.DataSHA256,
		t.TrainAccuracy, int(t.TrainAccuracy*float64(t.Rows)+0.5), t.Rows, *outPath)
	return 0
}

// parseWidths reads "16" or "16,8".
func parseWidths(s string) ([]int, error) {
	var widths []int
	for part := range strings.SplitSeq(s, ",") {
		w, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil || w < 1 {
			return nil, fmt.Errorf("%q is not a positive integer", part)
		}
		widths = append(widths, w)
	}
	return widths, nil
}

func formatWidths(widths []int) string {
	parts := make([]string, len(widths))
	for i, w := range widths {
		parts[i] = strconv.Itoa(w)
	}
	return strings.Join(parts, ",")
}

// writeFileAtomic writes data to a temporary file beside path and renames it
// into place, so a reader (or a worker starting up) never sees half a model.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename this finds nothing
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
