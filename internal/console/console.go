// Package console is the operator console at /ui/ on the admin listener:
// server-rendered pages of what the admin API reports (routes and their
// live traffic, pools and backends, the shadow comparison, experiments,
// rollouts with their buttons, the config and its last change), readable
// without JavaScript and on a phone.
//
// Every page is one html/template over a view built here in Go: numbers
// are formatted before the template sees them, and html/template escapes
// every text it writes (shadow samples and field names came from the
// network). The pages load nothing from elsewhere: the stylesheet, the
// script and the templates are embedded, charts are inline SVG, and the
// Content-Security-Policy says so to the browser.
//
// The script refreshes the page's <main id="main"> once a second: it asks
// for the same path with the header X-Sluice-Partial: 1, and the answer is
// then the inner HTML of main alone, rendered by the same template. The
// rollout buttons are forms that POST to /admin/rollouts/ROUTE/ACTION,
// which the script sends with fetch instead, to show the API's answer.
//
// The admin listener guards /ui/ with the admin token (see
// internal/admin): this package renders and never sees a credential.
package console

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/admin"
	"github.com/sluice-gw/sluice/internal/experiments"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/rollout"
	"github.com/sluice-gw/sluice/internal/shadow"
)

// PartialHeader, set to "1" on a page request, asks for the inner HTML of
// the page's <main> alone: what the script swaps in.
const PartialHeader = "X-Sluice-Partial"

// Prefix is where the console is mounted.
const Prefix = "/ui/"

// Gateway is what the console reads.
type Gateway interface {
	// Snapshot is the config serving now; nil before the first load.
	Snapshot() *proxy.Snapshot
	// LastError is the last rejected config, nil when the last load
	// succeeded.
	LastError() *admin.LoadError
	// PreviousConfig is the config applied before the one serving now;
	// nil when none was.
	PreviousConfig() *AppliedConfig
	Experiments() *experiments.Registry
	Shadows() *shadow.Registry
	Rollouts() *rollout.Registry
}

// AppliedConfig is a config file that served: enough of it to compare
// with the one serving now.
type AppliedConfig struct {
	Generation uint64
	LoadedAt   time.Time
	SHA256     string
	Source     []byte
}

// Console serves the pages. Create it with New, run its Traffic sampler
// with Run, and mount it (it is an http.Handler) at Prefix.
type Console struct {
	gw      Gateway
	traffic *Traffic
	now     func() time.Time
	pages   map[string]*page
	missing *page
	assets  map[string]asset
}

// page is one console page: its path, its name in the title and the nav,
// its template (the layout and the page's main) and how its view is built.
type page struct {
	path, name string
	tmpl       *template.Template
	view       func(c *Console) any
}

// asset is an embedded file with its type and ETag.
type asset struct {
	body        []byte
	contentType string
	etag        string
}

//go:embed templates assets
var files embed.FS

// nav is the pages in the order the nav bar lists them.
var nav = []struct{ Path, Name string }{
	{Prefix, "Overview"},
	{Prefix + "shadow", "Shadow"},
	{Prefix + "experiments", "Experiments"},
	{Prefix + "rollouts", "Rollouts"},
	{Prefix + "config", "Config"},
}

// New builds the console over g; gatherer is the gateway's metrics
// registry, which the Traffic sampler reads.
func New(g Gateway, gatherer prometheus.Gatherer) *Console {
	c := &Console{gw: g, traffic: NewTraffic(gatherer), now: time.Now, pages: map[string]*page{}}
	views := map[string]func(c *Console) any{
		Prefix:                 (*Console).overview,
		Prefix + "shadow":      (*Console).shadowPage,
		Prefix + "experiments": (*Console).experimentsPage,
		Prefix + "rollouts":    (*Console).rolloutsPage,
		Prefix + "config":      (*Console).configPage,
	}
	for _, n := range nav {
		file := strings.ToLower(n.Name) + ".html"
		c.pages[n.Path] = &page{path: n.Path, name: n.Name, tmpl: parse(file), view: views[n.Path]}
	}
	c.missing = &page{name: "Not found", tmpl: parse("notfound.html"), view: func(*Console) any { return nil }}
	c.assets = loadAssets()
	return c
}

// parse is the layout with one page's templates.
func parse(file string) *template.Template {
	return template.Must(template.New("layout.html").ParseFS(files, "templates/layout.html", "templates/"+file))
}

func loadAssets() map[string]asset {
	types := map[string]string{".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
	out := map[string]asset{}
	entries, err := fs.ReadDir(files, "assets")
	if err != nil {
		panic(err) // embedded at build time: cannot fail
	}
	for _, e := range entries {
		body, err := files.ReadFile("assets/" + e.Name())
		if err != nil {
			panic(err)
		}
		sum := sha256.Sum256(body)
		out[Prefix+"assets/"+e.Name()] = asset{body: body, contentType: types[path.Ext(e.Name())],
			etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
	}
	return out
}

// Run samples the gateway's traffic until ctx ends.
func (c *Console) Run(ctx context.Context) { c.traffic.Run(ctx, SampleEvery) }

// contentSecurity lets a page load its own stylesheet, script and fetches
// and nothing else; the favicon is an empty data: URL, so that a browser
// does not ask for /favicon.ico.
const contentSecurity = "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; " +
	"img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// ServeHTTP answers GET and HEAD under Prefix: a page, a page's main
// (with PartialHeader), an asset, or a 404 page.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "the console is read with GET; its buttons post to /admin/", http.StatusMethodNotAllowed)
		return
	}
	if a, ok := c.assets[r.URL.Path]; ok {
		w.Header().Set("Content-Type", a.contentType)
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("ETag", a.etag)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
		return
	}
	p, status := c.pages[r.URL.Path], http.StatusOK
	if p == nil {
		p, status = c.missing, http.StatusNotFound
	}
	var buf bytes.Buffer
	name := "layout.html"
	if r.Header.Get(PartialHeader) == "1" {
		name = "main"
	}
	err := p.tmpl.ExecuteTemplate(&buf, name, layout{
		Title: "Sluice · " + p.name, Nav: c.navFor(p.path), Stamp: c.stamp(), Main: p.view(c),
		Flash: flashOf(r),
	})
	if err != nil {
		http.Error(w, "rendering the page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Vary", PartialHeader)
	h.Set("Content-Security-Policy", contentSecurity)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// layout is what every page's template gets: Main is the page's own view.
type layout struct {
	Title string
	Nav   []navLink
	Stamp stamp
	Main  any
	// Flash is the outcome of a button pressed without JavaScript, which
	// the admin API sends back here as ?flash=.
	Flash string
}

// flashOf is the page's ?flash= line, cut to a sane length; the template
// escapes it like any other text.
func flashOf(r *http.Request) string {
	f := r.URL.Query().Get("flash")
	if len(f) > 300 {
		f = f[:300]
	}
	return f
}

type navLink struct {
	Path, Name string
	Current    bool
}

func (c *Console) navFor(current string) []navLink {
	out := make([]navLink, len(nav))
	for i, n := range nav {
		out[i] = navLink{Path: n.Path, Name: n.Name, Current: n.Path == current}
	}
	return out
}

// stamp says which config a page shows and when it was rendered.
type stamp struct {
	Generation string
	At         string
}

func (c *Console) stamp() stamp {
	s := stamp{Generation: dash, At: c.now().UTC().Format("15:04:05 UTC")}
	if snap := c.gw.Snapshot(); snap != nil {
		s.Generation = strconv.FormatUint(snap.Generation, 10)
	}
	return s
}
