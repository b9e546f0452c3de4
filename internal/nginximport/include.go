package nginximport

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// maxIncludedFiles bounds how many files one config may pull in: an
// include that matches a directory of files is fine, a fan-out that
// multiplies at every level is not.
const maxIncludedFiles = 1000

// Load parses the file at path and splices every file it includes into the
// tree where the include stood, as nginx does: the included directives take
// the include's place in its block, and each file must balance its braces
// on its own. Each directive keeps the file and line it was written on.
//
// A relative include path is taken from the including file's directory;
// one with * ? or [ is a glob whose matches are read in name order, and
// that may match nothing. An include of one named file that does not
// exist stays in the tree as an "include" directive: the translation then
// lists it (nginx would refuse to start; an import on another machine than
// nginx's is still worth its other lines). An include that leads back to a
// file being read is an error, as is any file that does not parse.
func Load(path string) ([]*Directive, error) {
	l := &loader{}
	return l.load(path, nil)
}

type loader struct {
	reading []string // absolute paths of the files being read, outermost first
	names   []string // the same, as written, for messages
	files   int
}

// load reads and parses one file; from is the include that names it (nil
// for the main file).
func (l *loader) load(path string, from *Directive) ([]*Directive, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = filepath.Clean(path)
	}
	if i := slices.Index(l.reading, abs); i >= 0 {
		chain := append(slices.Clone(l.names[i:]), path)
		return nil, &ParseError{File: from.File, Line: from.Line,
			Msg: "include cycle: " + strings.Join(chain, " includes ")}
	}
	if l.files++; l.files > maxIncludedFiles {
		return nil, &ParseError{File: from.File, Line: from.Line, Msg: fmt.Sprintf("more than %d files included", maxIncludedFiles)}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		if from == nil {
			return nil, err
		}
		return nil, &ParseError{File: from.File, Line: from.Line, Msg: fmt.Sprintf("include: %v", err)}
	}
	tree, err := Parse(path, data)
	if err != nil {
		return nil, err
	}
	l.reading, l.names = append(l.reading, abs), append(l.names, path)
	defer func() { l.reading, l.names = l.reading[:len(l.reading)-1], l.names[:len(l.names)-1] }()
	return l.expand(path, tree)
}

// expand replaces the include directives of list (at any depth) by the
// directives of the files they name.
func (l *loader) expand(file string, list []*Directive) ([]*Directive, error) {
	out := make([]*Directive, 0, len(list))
	for _, d := range list {
		if d.Name != "include" || d.IsBlock {
			if d.IsBlock {
				block, err := l.expand(file, d.Block)
				if err != nil {
					return nil, err
				}
				d.Block = block
			}
			out = append(out, d)
			continue
		}
		if len(d.Args) != 1 {
			return nil, &ParseError{File: d.File, Line: d.Line, Msg: "include takes exactly one file name or pattern"}
		}
		pattern := d.Args[0]
		if !filepath.IsAbs(pattern) {
			pattern = filepath.Join(filepath.Dir(file), pattern)
		}
		var files []string
		if strings.ContainsAny(pattern, "*?[") {
			matches, err := filepath.Glob(pattern) // in name order, as glob(3) gives nginx
			if err != nil {
				return nil, &ParseError{File: d.File, Line: d.Line, Msg: fmt.Sprintf("include %q: %v", d.Args[0], err)}
			}
			// glob(3), which nginx calls without GLOB_PERIOD, leaves out
			// names starting with a dot unless the pattern names the dot.
			for _, m := range matches {
				if !strings.HasPrefix(filepath.Base(m), ".") || strings.HasPrefix(filepath.Base(pattern), ".") {
					files = append(files, m)
				}
			}
		} else if _, err := os.Stat(pattern); errors.Is(err, fs.ErrNotExist) {
			out = append(out, d) // listed by the translation
			continue
		} else {
			files = []string{pattern}
		}
		for _, f := range files {
			sub, err := l.load(f, d)
			if err != nil {
				return nil, err
			}
			out = append(out, sub...)
		}
	}
	return out, nil
}
