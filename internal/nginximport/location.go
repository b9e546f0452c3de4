package nginximport

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// location is one location block of the translated server.
type location struct {
	d      *Directive
	mod    string // "" (prefix), "^~", "=", "~", "~*", "@", or "?" for a modifier nginx would refuse
	uri    string
	scope  *scope
	nested []*location
}

// route is one gateway route as translated from a location.
type route struct {
	from       *Directive // the location
	name       string
	prefix     string
	host       string
	strip      string
	pool       string
	split      *split
	fallback   string
	retries    *retries
	maxBody    int64
	shadow     string
	rateLimits []rateLimit
	cache      *cache
}

// locationArgs reads a location's modifier and URI, both the spaced form
// ("location = /x") and the joined one nginx also takes ("location =/x",
// "location ~*\.png$"): ngx_http_core_location.
func locationArgs(d *Directive) (mod, uri string) {
	switch len(d.Args) {
	case 2:
		switch d.Args[0] {
		case "=", "^~", "~", "~*":
			return d.Args[0], d.Args[1]
		}
		return "?", d.Args[1]
	case 1:
		a := d.Args[0]
		for _, m := range []string{"=", "~*", "~", "@"} {
			if strings.HasPrefix(a, m) && len(a) > len(m) {
				return m, a[len(m):]
			}
		}
		return "", a
	}
	return "?", ""
}

// collectLocations reads the location blocks in block, nested ones with
// them, into t.locations; it returns the ones directly in block.
func (t *translator) collectLocations(parent *scope, block *Directive) []*location {
	var out []*location
	for _, d := range block.Block {
		if d.Name != "location" || !d.IsBlock {
			continue
		}
		mod, uri := locationArgs(d)
		l := &location{d: d, mod: mod, uri: uri, scope: &scope{parent: parent, block: d, kind: "location"}}
		t.locations = append(t.locations, l)
		l.nested = t.collectLocations(l.scope, d)
		out = append(out, l)
	}
	return out
}

// findLocation is the location nginx would pick for uri among the exact
// and prefix ones (ngx_http_core_find_location; regular expressions are
// not translated, so they are not looked at).
func (t *translator) findLocation(uri string) *location {
	var best *location
	for _, l := range t.locations {
		switch {
		case l.mod == "=" && l.uri == uri:
			return l
		case (l.mod == "" || l.mod == "^~") && strings.HasPrefix(uri, l.uri) && (best == nil || len(l.uri) > len(best.uri)):
			best = l
		}
	}
	return best
}

// location translates one location, and the ones nested in it, into
// routes: a prefix location with proxy_pass becomes a route matching its
// prefix; anything else is listed with the reason.
func (t *translator) location(l *location) {
	d := l.d
	switch l.mod {
	case "=":
		if !t.mirrorTargets[d] {
			t.skip(d, "an exact match: the gateway matches path prefixes only, so a route for %s would also take every path under it", l.uri)
		}
		return
	case "~", "~*":
		t.skip(d, "a regular expression location: the gateway matches path prefixes only (and nginx tried this before any prefix location without ^~)")
		return
	case "@":
		t.skip(d, "a named location: only nginx's own redirects (error_page, try_files) reach it")
		return
	case "?":
		t.skip(d, "not a location nginx would accept")
		return
	}
	if !strings.HasPrefix(l.uri, "/") {
		t.skip(d, "a prefix that does not start with / matches no request path")
		return
	}
	if t.mirrorTargets[d] && l.scope.own("internal") != nil {
		return // the pool of a mirror: translated with the route that mirrors
	}
	if l.scope.own("internal") != nil {
		t.skip(d, "internal: only nginx's own subrequests (error_page, mirror, X-Accel-Redirect) reach it")
		return
	}
	pp := l.scope.own("proxy_pass")
	if pp == nil {
		for _, c := range d.Block {
			if strings.HasSuffix(c.Name, "_pass") { // fastcgi_pass, grpc_pass...
				t.skip(d, "%s: %s", c.Name, reason(c, d))
				return
			}
		}
		if len(l.nested) == 0 {
			t.skip(d, "no proxy_pass: nginx answers these requests itself (return, root, try_files...); the gateway only proxies")
			return
		}
		t.use(d)
		t.note(d, "no proxy_pass here: no route for %s itself; the locations nested in it are translated", l.uri)
	} else if why := t.route(l, pp); why != "" {
		t.skip(d, "%s", why)
		return
	}
	for _, n := range l.nested {
		t.location(n)
	}
}

// proxyTarget is proxy_pass's URL, taken apart.
type proxyTarget struct {
	host     string // an upstream name or host[:port]; "" when variable is set
	variable string // the variable naming the upstream at run time, without $
	uri      string // what follows the host: "", "/", "/v1/", "$request_uri"...
}

var leadingVariable = regexp.MustCompile(`^\$(?:\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))`)

// parseProxyPass reads proxy_pass's URL (ngx_http_proxy_pass); why says
// what the gateway cannot do with it.
func parseProxyPass(pp *Directive) (proxyTarget, string) {
	u := arg(pp, 0)
	switch {
	case len(pp.Args) != 1:
		return proxyTarget{}, "proxy_pass takes one URL"
	case strings.HasPrefix(u, "https://"):
		return proxyTarget{}, fmt.Sprintf("proxy_pass %s: the gateway speaks plain HTTP to its backends", u)
	case !strings.HasPrefix(u, "http://"):
		return proxyTarget{}, fmt.Sprintf("proxy_pass %s: only http:// upstreams translate", u)
	}
	rest := u[len("http://"):]
	var tg proxyTarget
	if m := leadingVariable.FindStringSubmatch(rest); m != nil {
		tg.variable, tg.uri = m[1]+m[2], rest[len(m[0]):]
	} else {
		end := strings.IndexAny(rest, "/$")
		if end < 0 {
			end = len(rest)
		}
		tg.host, tg.uri = rest[:end], rest[end:]
	}
	switch {
	case strings.HasPrefix(tg.host, "unix:"):
		return tg, fmt.Sprintf("proxy_pass %s: the gateway connects to backends over TCP only, not to unix sockets", u)
	case tg.host == "" && tg.variable == "":
		return tg, fmt.Sprintf("proxy_pass %s names no host", u)
	}
	return tg, ""
}

// route turns a prefix location with proxy_pass into a route. It returns
// why when the location cannot be one; nothing is recorded then.
func (t *translator) route(l *location, pp *Directive) string {
	tg, why := parseProxyPass(pp)
	if why != "" {
		return why
	}
	if !writable(l.uri) {
		return "the prefix holds what a gateway config cannot (control characters, invalid UTF-8, or ${...}, which the loader would read as an environment variable)"
	}
	strip, rewrite, why := t.pathRewrite(l, tg)
	if why != "" {
		return why
	}
	// Who answers: first check, then record, so that a location that is
	// not translated leaves no pool behind.
	var sp *splitClients
	var target poolTarget
	if tg.variable != "" {
		if sp = t.splits[tg.variable]; sp == nil {
			return fmt.Sprintf("proxy_pass picks its upstream from $%s at run time; only a split_clients variable translates (to a split)", tg.variable)
		}
		if sp.why != "" {
			return sp.why
		}
		named := 0
		for _, part := range sp.parts {
			if part.value == "" {
				continue
			}
			if _, why := t.resolvePool(part.value); why != "" {
				return fmt.Sprintf("split_clients $%s (%s) sends %s to %s: %s", sp.variable, where(sp.d), percentText(part.hundredths), part.value, why)
			}
			named++
		}
		if named == 0 {
			return fmt.Sprintf("split_clients $%s (%s) names no upstream", sp.variable, where(sp.d))
		}
	} else {
		if target, why = t.resolvePool(tg.host); why != "" {
			return why
		}
	}

	r := &route{from: l.d, prefix: l.uri, host: t.server.host, strip: strip}
	t.use(l.d, pp, rewrite)
	if sp != nil {
		r.split = t.splitRoute(sp)
	} else {
		r.pool = t.commitPool(target, pp).name
	}
	if tg.uri == "/" && strip != "" && !strings.HasSuffix(l.uri, "/") {
		t.note(pp, "translated as strip_prefix: %s; nginx replaces %s by / and so forwards %s/x as //x, the gateway as /x", strip, l.uri, l.uri)
	}

	attempt, setter := t.attemptTimeout(l.scope)
	for _, p := range r.poolNames() {
		t.poolByName(p).uses = append(t.poolByName(p).uses, timeoutUse{value: attempt, setter: setter, loc: l.d})
	}
	r.retries = t.retries(l.scope, r)
	r.maxBody = t.routeMaxBody(l)
	r.rateLimits = t.rateLimits(l.scope)
	r.cache = t.cache(l.scope)
	r.shadow = t.shadow(l.scope)
	r.fallback = t.fallback(r, l)
	r.name = t.routeName(l.uri)
	t.routes = append(t.routes, r)
	return ""
}

// poolNames are the pools a route sends to.
func (r *route) poolNames() []string {
	if r.split == nil {
		return []string{r.pool}
	}
	var out []string
	for _, v := range r.split.variants {
		out = append(out, v.pool)
	}
	return out
}

// regexEscape finds the escaped characters of a regular expression that
// is otherwise literal.
var regexEscape = regexp.MustCompile(`\\(.)`)

// stripRewrite matches "^/prefix/(.*)$": a literal prefix and the rest.
var stripRewrite = regexp.MustCompile(`^\^((?:[A-Za-z0-9/_~%!,;:@&=+-]|\\[^A-Za-z0-9])*)\(\.\*\)\$?$`)

// pathRewrite works out the path the backend gets, as strip_prefix. nginx
// (ngx_http_proxy_module, proxy_pass): when proxy_pass has a URI, the part
// of the path the location matched is replaced by it; without one (or with
// $request_uri) the path goes as the client sent it. A rewrite with break
// changes the path before that, and proxy_pass's URI is then ignored.
// The gateway can strip a prefix and nothing else, so only the cases that
// amount to stripping translate:
//
//	location /api/ { proxy_pass http://up/; }                strip /api/
//	location /api/v1/ { proxy_pass http://up/v1/; }          strip /api
//	location /api/ { rewrite ^/api/(.*)$ /$1 break; ... }    strip /api/
//
// It returns the rewrite directive it translated, if any.
func (t *translator) pathRewrite(l *location, tg proxyTarget) (strip string, rewrite *Directive, why string) {
	if rws := l.scope.ownAll("rewrite"); len(rws) == 1 {
		rw := rws[0]
		if m := stripRewrite.FindStringSubmatch(arg(rw, 0)); m != nil && arg(rw, 1) == "/$1" && arg(rw, 2) == "break" && len(rw.Args) == 3 {
			lit := regexEscape.ReplaceAllString(m[1], "$1")
			if strings.HasPrefix(l.uri, lit) && lit != "" {
				if !strings.HasSuffix(lit, "/") {
					t.note(rw, "translated as strip_prefix: %s; nginx turns %s/x into //x, the gateway into /x", lit, lit)
				}
				return lit, rw, ""
			}
		}
	}
	uri := tg.uri
	switch {
	case uri == "" || uri == "$request_uri":
		return "", nil, ""
	case strings.Contains(uri, "$"):
		return "", nil, fmt.Sprintf("proxy_pass builds the path from variables (%s): the gateway forwards the path as it came, less a strip_prefix", uri)
	case uri == l.uri:
		return "", nil, ""
	case uri == "/":
		return l.uri, nil, ""
	case strings.HasPrefix(uri, "/") && strings.HasSuffix(l.uri, uri) && len(l.uri) > len(uri):
		return l.uri[:len(l.uri)-len(uri)], nil, ""
	}
	return "", nil, fmt.Sprintf("proxy_pass replaces %s with %s: the gateway can strip a prefix from the path but not put another in its place", l.uri, uri)
}

// routeMaxBody is client_max_body_size as a location sets it (its own, or
// an enclosing location's); the server's goes to server.max_body.
func (t *translator) routeMaxBody(l *location) int64 {
	for s := l.scope; s != nil && s.kind == "location"; s = s.parent {
		if d := s.own("client_max_body_size"); d != nil {
			if n, ok := t.bodySize(d); ok && n != t.server.maxBody {
				return n
			}
			return 0
		}
	}
	return 0
}

// defaultProxyTimeout is nginx's default for proxy_connect_timeout,
// proxy_send_timeout and proxy_read_timeout.
const defaultProxyTimeout = 60 * time.Second

// attemptTimeout is the gateway's pool timeout for requests of a scope.
// nginx bounds three phases of an attempt separately, 60s each by
// default: connecting (proxy_connect_timeout), each write of the request
// (proxy_send_timeout) and each read of the answer (proxy_read_timeout),
// the first of which waits for the model to compute. The gateway's pool
// timeout bounds one attempt's connect, send and wait for the response
// headers together, so it is the largest of them: proxy_read_timeout
// (its default when it is not written), or a longer connect or send
// timeout that is written. The unwritten connect and send defaults do not
// count: a worker that takes longer than the answer's timeout to accept a
// connection or take a small body is one to give up on sooner, not later.
// An attempt slow in two phases at once may get less time than nginx's
// budgets add up to. setter is the directive that gave the timeout, nil
// for nginx's default.
func (t *translator) attemptTimeout(sc *scope) (time.Duration, *Directive) {
	best, setter := defaultProxyTimeout, (*Directive)(nil)
	for _, name := range []string{"proxy_read_timeout", "proxy_connect_timeout", "proxy_send_timeout"} {
		d := sc.get(name)
		if d == nil {
			continue
		}
		v, err := parseTime(arg(d, 0))
		if err != nil || v == 0 {
			t.note(d, "not a time nginx would take; nginx's default, 60s, is assumed")
			continue
		}
		t.use(d)
		if name == "proxy_read_timeout" || v > best {
			best, setter = v, d
		}
	}
	return best, setter
}

// routeName names a route after its prefix: /v1/models/iris/ is
// v1-models-iris, / is root.
func (t *translator) routeName(prefix string) string {
	base := safeName(strings.Trim(prefix, "/"), "root")
	name := base
	for i := 2; t.routeNameTaken(name); i++ {
		name = fmt.Sprintf("%s-%d", base, i)
	}
	return name
}

func (t *translator) routeNameTaken(name string) bool {
	for _, r := range t.routes {
		if r.name == name {
			return true
		}
	}
	return false
}
