package model

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// fusedMultiplyAdd matches the fused multiply-add instructions of every
// architecture whose Go compiler fuses x*y+z: amd64 (VFMADD231SD ...),
// arm64, loong64 and riscv64 (FMADDD, FNMSUBD, ...), ppc64 (FMADD, ...) and
// s390x (WFMADB, WFMSDB). FMAX and friends do not match.
var fusedMultiplyAdd = regexp.MustCompile(`\s(V?FN?M(ADD|SUB)[A-Z0-9]*|WFN?M[AS]DB)\s`)

// fmaTargets are the builds TestNoFusedMultiplyAdd compiles for. By default
// only arm64, the one most developers meet (Apple silicon, Graviton): each
// build compiles the standard library for its target the first time, 10 to
// 50 s on two cores. SLUICE_FMA_ARCHES=all adds every other fusing target.
func fmaTargets() [][]string {
	targets := [][]string{{"GOARCH=arm64"}}
	if os.Getenv("SLUICE_FMA_ARCHES") == "all" {
		targets = append(targets,
			[]string{"GOARCH=amd64", "GOAMD64=v3"},
			[]string{"GOARCH=ppc64le"},
			[]string{"GOARCH=s390x"},
			[]string{"GOARCH=riscv64"},
			[]string{"GOARCH=loong64"},
		)
	}
	return targets
}

// TestNoFusedMultiplyAdd compiles this package for architectures whose
// compiler fuses x*y+z and checks that none of its code is fused: one fused
// x*y+z rounds differently from the separate operations, so a model trained
// there would not be byte-identical to the shipped one (see the package
// comment).
func TestNoFusedMultiplyAdd(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-compiles the package")
	}
	// The go command that runs this test is on PATH.
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("no go command on PATH: %v", err)
	}
	for _, env := range fmaTargets() {
		cmd := exec.Command(goTool, "build", "-gcflags=-S", ".")
		cmd.Env = append(cmd.Environ(), append(env, "CGO_ENABLED=0")...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s go build: %v\n%s", env, err, out)
		}
		var fused []string
		for line := range strings.Lines(string(out)) {
			if strings.Contains(line, "internal/model/") && fusedMultiplyAdd.MatchString(line) {
				fused = append(fused, strings.TrimSpace(line))
			}
		}
		if len(fused) > 0 {
			t.Errorf("%s: the compiler fused a multiply and an add; wrap the product in float64(...):\n%s", env, strings.Join(fused, "\n"))
		}
	}
}
