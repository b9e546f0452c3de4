package console

import (
	"strconv"
	"strings"

	"github.com/pmezard/go-difflib/difflib"
)

// diffContext is the unchanged lines shown around each change.
const diffContext = 3

type configView struct {
	Generation, LoadedAt, SHA256 string
	// LastError is the last rejected file: when, its checksum, and every
	// problem (each with its YAML line); nil when the last load worked.
	LastError *lastErrorView
	// Diff is the unified diff from the previous config to this one, one
	// line each; NoDiff says why there is none.
	Diff   []diffLine
	NoDiff string
	// From names the previous config.
	From string
}

type lastErrorView struct {
	At, SHA256 string
	Errors     []string
}

// diffLine is one line of the diff; Kind is "add", "del", "hunk", "file"
// or "" for context.
type diffLine struct {
	Kind, Text string
}

func (c *Console) configPage() any {
	v := configView{Generation: dash, LoadedAt: dash, SHA256: dash, NoDiff: "no config loaded"}
	if e := c.gw.LastError(); e != nil {
		le := &lastErrorView{At: clock(&e.At), SHA256: e.SHA256, Errors: e.Errors}
		if le.SHA256 == "" {
			le.SHA256 = dash
		}
		v.LastError = le
	}
	snap := c.gw.Snapshot()
	if snap == nil {
		return v
	}
	v.Generation, v.LoadedAt, v.SHA256 = strconv.FormatUint(snap.Generation, 10), clock(&snap.LoadedAt), snap.SHA256
	prev := c.gw.PreviousConfig()
	if prev == nil {
		v.NoDiff = "no previous config: this is the first one applied since the gateway started"
		return v
	}
	v.From = "generation " + strconv.FormatUint(prev.Generation, 10) + ", loaded " + clock(&prev.LoadedAt)
	v.Diff = configDiff(prev.Source, snap.Source,
		"generation "+strconv.FormatUint(prev.Generation, 10), "generation "+v.Generation)
	if len(v.Diff) == 0 {
		v.NoDiff = "the previous config differs from this one in secrets only"
	}
	return v
}

// configDiff is the unified diff from old to new, secrets redacted.
func configDiff(old, new []byte, oldName, newName string) []diffLine {
	text, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A: difflib.SplitLines(redact(string(old))), B: difflib.SplitLines(redact(string(new))),
		FromFile: oldName, ToFile: newName, Context: diffContext,
	})
	if err != nil || text == "" {
		return nil
	}
	var out []diffLine
	for line := range strings.Lines(text) {
		line = strings.TrimSuffix(line, "\n")
		kind := ""
		switch {
		case strings.HasPrefix(line, "+++"), strings.HasPrefix(line, "---"):
			kind = "file"
		case strings.HasPrefix(line, "@@"):
			kind = "hunk"
		case strings.HasPrefix(line, "+"):
			kind = "add"
		case strings.HasPrefix(line, "-"):
			kind = "del"
		}
		out = append(out, diffLine{Kind: kind, Text: line})
	}
	return out
}
