package nginximport

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
)

// Note is one nginx directive the translation leaves out, or carries over
// with a difference the operator should know about.
type Note struct {
	File      string
	Line      int
	Directive string // the directive as written: name and arguments
	Why       string
}

// String is the line gateway import-nginx prints: FILE:LINE: directive: why.
func (n Note) String() string {
	return fmt.Sprintf("%s:%d: %s: %s", n.File, n.Line, n.Directive, n.Why)
}

// Result is a translation: the gateway config and what it left out.
type Result struct {
	// YAML is the gateway config, starting with a comment that names the
	// source file.
	YAML []byte
	// Notes are the directives not translated (or translated with a
	// difference), in the order they appear in the config.
	Notes []Note
	// Pools and Routes count what the config holds.
	Pools, Routes int
}

// File loads the nginx config at path, with its includes, and translates it.
func File(path string) (*Result, error) {
	tree, err := Load(path)
	if err != nil {
		return nil, err
	}
	return Translate(path, tree)
}

// ErrNothingToTranslate is returned for a config with no server that
// proxies: there is no route to write.
var ErrNothingToTranslate = errors.New("nothing to translate")

// Translate turns a loaded tree into a gateway config. source is the main
// file's path: the header comment names it, and relative certificate paths
// are taken from its directory, as nginx takes them from its conf prefix.
func Translate(source string, tree []*Directive) (*Result, error) {
	t := &translator{
		source:        source,
		confDir:       filepath.Dir(source),
		upstreams:     map[string]*upstream{},
		splits:        map[string]*splitClients{},
		limitZones:    map[string]*limitZone{},
		cacheZones:    map[string]*cacheZone{},
		poolNames:     map[string]bool{},
		addrPools:     map[string]*pool{},
		mirrorTargets: map[*Directive]bool{},
		handled:       map[*Directive]bool{},
		whole:         map[*Directive]bool{},
		notes:         map[*Directive][]string{},
	}
	if err := t.main(tree); err != nil {
		return nil, err
	}
	var notes []Note
	t.collectNotes(nil, tree, &notes)
	yaml, err := t.emit(len(notes))
	if err != nil {
		return nil, fmt.Errorf("%s: writing the gateway config: %w", t.source, err)
	}
	return &Result{YAML: yaml, Notes: notes, Pools: len(t.pools), Routes: len(t.routes)}, nil
}

// translator holds one translation in progress.
type translator struct {
	source, confDir string

	// What the http block defines, by nginx name (splits by their
	// variable, without the $).
	upstreams  map[string]*upstream
	splits     map[string]*splitClients
	limitZones map[string]*limitZone
	cacheZones map[string]*cacheZone

	// The gateway config being built.
	server    serverConfig
	pools     []*pool // in output order
	poolNames map[string]bool
	addrPools map[string]*pool // pools made for a proxy_pass address, by address
	routes    []*route

	httpScope, serverScope *scope
	locations              []*location // of the translated server, nested ones included, in file order
	mirrorTargets          map[*Directive]bool

	// What happened to each directive. handled: translated, or accepted
	// as structure. whole: listed (or accepted) as a block, its contents
	// with it. notes: what the operator is told about it; a directive with
	// notes is listed with them, handled or not.
	handled map[*Directive]bool
	whole   map[*Directive]bool
	notes   map[*Directive][]string
}

// use marks directives as translated.
func (t *translator) use(ds ...*Directive) {
	for _, d := range ds {
		if d != nil {
			t.handled[d] = true
		}
	}
}

// note tells the operator something about d; the same message is given
// once, however many locations inherit d.
func (t *translator) note(d *Directive, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if !slices.Contains(t.notes[d], msg) {
		t.notes[d] = append(t.notes[d], msg)
	}
}

// skip lists d, with whatever is inside it, as not translated.
func (t *translator) skip(d *Directive, format string, args ...any) {
	t.note(d, format, args...)
	t.whole[d] = true
}

// structural are the directives accepted without a word: they set up the
// nginx process and its logs, which the gateway has no use for.
var structural = map[string]bool{
	"user": true, "worker_processes": true, "pid": true, "error_log": true, "events": true, "http": true,
}

// main walks the top level: the structural directives, then http.
func (t *translator) main(tree []*Directive) error {
	var http *Directive
	for _, d := range tree {
		switch {
		case d.Name == "http" && d.IsBlock && http == nil:
			http = d
		case d.Name == "http":
			t.skip(d, "nginx reads one http block; this one is not translated")
		case structural[d.Name]:
			t.use(d)
			t.whole[d] = d.IsBlock // events {...}: worker connection settings
		}
	}
	if http == nil {
		return fmt.Errorf("%s: no http block: %w", t.source, ErrNothingToTranslate)
	}
	return t.http(http)
}

// http reads the definitions (upstreams, split_clients, zones) and then
// the server that becomes the gateway's listener.
func (t *translator) http(h *Directive) error {
	t.use(h)
	t.httpScope = &scope{block: h, kind: "http"}
	var servers []*Directive
	for _, d := range h.Block {
		switch d.Name {
		case "upstream":
			t.upstream(d)
		case "split_clients":
			t.splitClients(d)
		case "limit_req_zone":
			t.limitZone(d)
		case "proxy_cache_path":
			t.cacheZone(d)
		case "server":
			if d.IsBlock {
				servers = append(servers, d)
			}
		}
	}
	var chosen *Directive
	for _, s := range servers {
		if proxies(s) {
			chosen = s
			break
		}
	}
	if chosen == nil {
		return fmt.Errorf("%s: no server block has a location with proxy_pass: %w", t.source, ErrNothingToTranslate)
	}
	t.serverBlock(chosen, servers)
	if len(t.routes) == 0 {
		return fmt.Errorf("%s:%d: no location of this server could be translated (run with the notes: every one is listed): %w",
			chosen.File, chosen.Line, ErrNothingToTranslate)
	}
	t.finishPools()
	t.finishZones()
	t.finishMirrors()
	return nil
}

// proxies reports whether a server block has a location (at any depth)
// that proxies.
func proxies(s *Directive) bool {
	for _, d := range s.Block {
		if d.Name == "location" && d.IsBlock && (hasDirective(d.Block, "proxy_pass") || proxies(d)) {
			return true
		}
	}
	return false
}

func hasDirective(list []*Directive, name string) bool {
	return slices.ContainsFunc(list, func(d *Directive) bool { return d.Name == name })
}

// collectNotes lists, in the order of the config, every directive with a
// note and every one neither translated nor structural (with the reason
// from reasons.go). Inside a block listed as a whole nothing more is said.
func (t *translator) collectNotes(parent *Directive, list []*Directive, out *[]Note) {
	for _, d := range list {
		msgs := t.notes[d]
		if len(msgs) == 0 && !t.handled[d] && d.Name != "error_log" { // error_log: structural at any level
			msgs = []string{reason(d, parent)}
		}
		for _, m := range msgs {
			*out = append(*out, Note{File: d.File, Line: d.Line, Directive: d.Text(), Why: m})
		}
		if d.IsBlock && t.handled[d] && !t.whole[d] {
			t.collectNotes(d, d.Block, out)
		}
	}
}

// scope is one level of nginx's configuration inheritance: http, server
// or location. A directive not set at a level takes the value of the
// nearest enclosing level that sets it (ngx_conf_merge_*_value), and an
// array directive (limit_req, mirror, proxy_cache_valid, proxy_set_header)
// is inherited only by a level that has none of its own.
type scope struct {
	parent *scope
	block  *Directive
	kind   string // "http", "server" or "location"
}

// own is the first directive named name written in this block itself.
func (s *scope) own(name string) *Directive {
	for _, d := range s.block.Block {
		if d.Name == name && !d.IsBlock {
			return d
		}
	}
	return nil
}

// ownAll is every directive named name written in this block itself.
func (s *scope) ownAll(name string) []*Directive {
	var out []*Directive
	for _, d := range s.block.Block {
		if d.Name == name && !d.IsBlock {
			out = append(out, d)
		}
	}
	return out
}

// get is the directive in effect here: this level's, or the nearest
// enclosing level's.
func (s *scope) get(name string) *Directive {
	for x := s; x != nil; x = x.parent {
		if d := x.own(name); d != nil {
			return d
		}
	}
	return nil
}

// getAll is the array directive in effect here: every one the nearest
// level that has any writes.
func (s *scope) getAll(name string) []*Directive {
	for x := s; x != nil; x = x.parent {
		if ds := x.ownAll(name); len(ds) > 0 {
			return ds
		}
	}
	return nil
}

// arg is a directive's i-th argument, or "".
func arg(d *Directive, i int) string {
	if d == nil || i >= len(d.Args) {
		return ""
	}
	return d.Args[i]
}

// where names a directive's place for comments and notes: FILE:LINE.
func where(d *Directive) string { return fmt.Sprintf("%s:%d", d.File, d.Line) }

// params splits "key=value" arguments; flags are the ones without '='.
func params(args []string) (kv map[string]string, flags []string) {
	kv = map[string]string{}
	for _, a := range args {
		if k, v, ok := strings.Cut(a, "="); ok {
			kv[k] = v
		} else {
			flags = append(flags, a)
		}
	}
	return kv, flags
}
