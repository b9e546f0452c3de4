package nginximport

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/config"
)

var update = flag.Bool("update", false, "rewrite the golden files (testdata/*.yaml and *.untranslated) from what the importer produces")

// TestGolden translates every testdata/NN-name.conf and compares the
// config with NN-name.yaml and the untranslated directives, one
// FILE:LINE: directive: why line each, with NN-name.untranslated. Every
// config it produces must also pass the gateway's own validation. Run
// with -update to rewrite the golden files, then review the diff.
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/*.conf")
	if err != nil {
		t.Fatal(err)
	}
	if len(inputs) < 20 {
		t.Fatalf("%d golden inputs; the suite wants at least 20", len(inputs))
	}
	for _, in := range inputs {
		base := strings.TrimSuffix(in, ".conf")
		t.Run(filepath.Base(base), func(t *testing.T) {
			res, err := File(in)
			if err != nil {
				t.Fatalf("File(%s): %v", in, err)
			}
			var lines strings.Builder
			for _, n := range res.Notes {
				lines.WriteString(n.String() + "\n")
			}
			compareGolden(t, base+".yaml", string(res.YAML))
			compareGolden(t, base+".untranslated", lines.String())
			if _, err := config.Parse(res.YAML); err != nil {
				t.Errorf("the translated config does not pass config.Parse:\n%v\n%s", err, res.YAML)
			}
			// The same input always gives the same bytes.
			again, err := File(in)
			if err != nil || string(again.YAML) != string(res.YAML) {
				t.Errorf("a second translation differs")
			}
		})
	}
}

func compareGolden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run TestGolden -update to write it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test -run TestGolden -update rewrites it; review the diff):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}
