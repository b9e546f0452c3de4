package testutil

import (
	"strings"
	"testing"
)

// TableLine returns the first line of a text table that starts with
// prefix, failing the test when there is none.
func TableLine(t testing.TB, table, prefix string) string {
	t.Helper()
	for l := range strings.SplitSeq(table, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	t.Fatalf("no line starting with %q in\n%s", prefix, table)
	return ""
}

// InColumn checks that cell starts in row exactly where column starts in
// header: a table a person reads has its numbers under their heading.
func InColumn(t testing.TB, header, row, column, cell string) {
	t.Helper()
	col := strings.Index(header, column)
	if col < 0 || col > len(row) || !strings.HasPrefix(row[col:], cell) {
		t.Errorf("%q not in column %q (at %d):\n%s\n%s", cell, column, col, header, row)
	}
}
