package nginximport

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// serverConfig is the gateway's server block as translated.
type serverConfig struct {
	from        *Directive // the nginx server block
	listen      string
	listenNote  string // a line comment on listen, when nginx's default was taken
	tls         *tlsFiles
	redirect    string
	redirectBy  *Directive // the server block that redirects
	maxBody     int64
	idleTimeout time.Duration
	trusted     []string
	host        string // every route's match.host
}

type tlsFiles struct{ cert, key string }

// serverBlock translates the chosen server: its listener, certificate and
// names, the port-80 server that redirects to it, and its locations. The
// other server blocks are listed: the gateway has one client listener.
func (t *translator) serverBlock(chosen *Directive, servers []*Directive) {
	t.use(chosen)
	sc := &scope{parent: t.httpScope, block: chosen, kind: "server"}
	t.serverScope = sc
	t.server.from = chosen
	if ssl := t.listen(sc); ssl != nil {
		t.tls(sc, ssl)
	}
	for _, s := range servers {
		if s == chosen || (t.server.tls != nil && t.server.redirect == "" && t.redirectServer(s)) {
			continue
		}
		t.otherServer(s, chosen)
	}
	t.serverName(sc)
	t.serverLimits(sc)
	t.realIP(sc)

	top := t.collectLocations(sc, chosen)
	t.resolveMirrors()
	for _, l := range top {
		t.location(l)
	}
	// nginx picks the longest matching prefix (ngx_http_core_find_location);
	// the gateway takes the first route that matches, so longer prefixes go
	// first. A sort that keeps file order among equal lengths keeps the
	// output stable.
	sort.SliceStable(t.routes, func(i, j int) bool { return len(t.routes[i].prefix) > len(t.routes[j].prefix) })
}

// listenSpec is one listen directive, read.
type listenSpec struct {
	d      *Directive
	addr   string // the gateway's form: ":443", "127.0.0.1:8080", "[::]:80"
	ssl    bool
	extras []string // parameters with a consequence the gateway does not share
	why    string   // why the address cannot be the gateway's
}

func parseListen(d *Directive) listenSpec {
	ls := listenSpec{d: d}
	for _, p := range d.Args[min(1, len(d.Args)):] {
		switch p {
		case "ssl":
			ls.ssl = true
		case "http2", "quic", "http3", "proxy_protocol":
			ls.extras = append(ls.extras, p)
		}
		// default_server, reuseport, backlog=, so_keepalive=...: how nginx
		// shares and tunes its sockets; nothing the gateway needs.
	}
	a := arg(d, 0)
	host, port := "", "80" // "If only address is given, the port 80 is used."
	switch {
	case a == "":
		ls.why = "listen names no address"
		return ls
	case strings.HasPrefix(a, "unix:"):
		ls.why = "the gateway listens on TCP only, not on a unix socket"
		return ls
	case strings.Trim(a, "0123456789") == "":
		port = a
	case strings.HasPrefix(a, "*:"):
		port = a[2:]
	default:
		h, p, err := net.SplitHostPort(a)
		if err != nil {
			h, p = strings.TrimSuffix(strings.TrimPrefix(a, "["), "]"), "80"
		}
		if h == "*" {
			h = ""
		}
		if _, err := netip.ParseAddr(h); err != nil && h != "" && h != "localhost" {
			ls.why = fmt.Sprintf("the gateway listens on an IP address or localhost, not on the name %q", h)
			return ls
		}
		host, port = h, p
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		ls.why = fmt.Sprintf("%q has no valid port", a)
		return ls
	}
	ls.addr = net.JoinHostPort(host, port)
	return ls
}

// sameSocket reports whether two listen addresses are one socket for the
// gateway: Go binds ":443" on IPv4 and IPv6 together, which nginx spells
// as "listen 443; listen [::]:443;".
func sameSocket(a, b string) bool {
	ha, pa, _ := net.SplitHostPort(a)
	hb, pb, _ := net.SplitHostPort(b)
	return pa == pb && (ha == hb || (ha == "" && hb == "::") || (ha == "::" && hb == ""))
}

// listen picks server.listen from the server's listen directives: the TLS
// one when there is one. It returns that directive when it terminates TLS.
func (t *translator) listen(sc *scope) *Directive {
	var specs []listenSpec
	for _, d := range sc.ownAll("listen") {
		specs = append(specs, parseListen(d))
	}
	pick := slices.IndexFunc(specs, func(s listenSpec) bool { return s.why == "" && s.ssl })
	if pick < 0 {
		pick = slices.IndexFunc(specs, func(s listenSpec) bool { return s.why == "" })
	}
	if pick < 0 {
		t.server.listen, t.server.listenNote = ":80", "nginx's default: a server without listen takes *:80"
		for _, s := range specs {
			t.note(s.d, "%s", s.why)
		}
		return nil
	}
	chosen := specs[pick]
	t.server.listen = chosen.addr
	t.use(chosen.d)
	for _, x := range chosen.extras {
		switch x {
		case "http2":
			t.note(chosen.d, "the listener is translated; its http2 is not: the gateway serves HTTP/1.1 (clients fall back to it)")
		case "proxy_protocol":
			t.note(chosen.d, "the listener is translated; its proxy_protocol is not: the gateway does not read the PROXY protocol header")
		default:
			t.note(chosen.d, "the listener is translated; its %s is not: the gateway serves no HTTP/3", x)
		}
	}
	for i, s := range specs {
		switch {
		case i == pick:
		case s.why != "":
			t.note(s.d, "%s", s.why)
		case s.ssl == chosen.ssl && sameSocket(s.addr, chosen.addr):
			t.use(s.d) // the same socket on the other IP family
		default:
			t.note(s.d, "the gateway has one client listener; server.listen is %s (from %s)", chosen.addr, where(chosen.d))
		}
	}
	if !chosen.ssl {
		return nil
	}
	return chosen.d
}

// tls writes server.tls from ssl_certificate and ssl_certificate_key,
// which a server inherits from http.
func (t *translator) tls(sc *scope, listenAt *Directive) {
	certs, keys := sc.getAll("ssl_certificate"), sc.getAll("ssl_certificate_key")
	if len(certs) == 0 || len(keys) == 0 {
		t.note(listenAt, "ssl without ssl_certificate and ssl_certificate_key: no tls block is written, so this listener serves plain HTTP")
		return
	}
	for _, d := range []*Directive{certs[0], keys[0]} {
		if f := arg(d, 0); strings.Contains(f, "$") || strings.HasPrefix(f, "data:") {
			t.note(d, "a certificate chosen at run time (variables, data:) has no equivalent: the gateway reads one certificate and key from files; no tls block is written")
			return
		} else if !writable(f) {
			t.note(d, "the path holds characters a gateway config cannot (control characters or invalid UTF-8); no tls block is written")
			return
		}
	}
	t.server.tls = &tlsFiles{cert: t.confPath(arg(certs[0], 0)), key: t.confPath(arg(keys[0], 0))}
	t.use(certs[0], keys[0])
	for _, d := range append(certs[1:], keys[1:]...) {
		t.note(d, "the gateway serves one certificate, the first (%s)", where(certs[0]))
	}
}

// confPath resolves a path as nginx does for certificates: a relative path
// is taken from the directory of nginx.conf (nginx's conf prefix). The
// result is relative to where the import ran, as the gateway resolves
// relative paths against its working directory.
func (t *translator) confPath(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(t.confDir, p)
}

// redirectHosts are the ways of writing "the host the client asked for"
// in an https redirect, all of which the gateway's redirect listener does.
var redirectHosts = []string{"$host", "$server_name", "$http_host"}

// redirectServer takes s as server.redirect_http when it is the usual
// plain-HTTP server that sends everyone to https:
//
//	server { listen 80; return 301 https://$host$request_uri; }
//
// (the return may also stand alone in a "location /"). It reports whether
// s was taken.
func (t *translator) redirectServer(s *Directive) bool {
	sc := &scope{parent: t.httpScope, block: s, kind: "server"}
	listens := sc.ownAll("listen")
	var specs []listenSpec
	for _, d := range listens {
		ls := parseListen(d)
		if ls.why != "" || ls.ssl {
			return false
		}
		specs = append(specs, ls)
	}
	ret, loc := sc.own("return"), (*Directive)(nil)
	if ret == nil {
		for _, d := range s.Block {
			if d.Name == "location" && d.IsBlock && len(d.Args) == 1 && d.Args[0] == "/" && len(d.Block) == 1 && d.Block[0].Name == "return" {
				ret, loc = d.Block[0], d
			}
		}
	}
	code, url := arg(ret, 0), arg(ret, 1)
	if ret != nil && len(ret.Args) == 1 {
		code, url = "302", arg(ret, 0) // "return URL;" redirects with 302
	}
	if ret == nil || !strings.HasPrefix(url, "https://") || !strings.HasSuffix(url, "$request_uri") {
		return false
	}
	addr := ":80"
	if len(specs) > 0 {
		addr = specs[0].addr
	}
	if _, p1, _ := net.SplitHostPort(addr); strings.HasSuffix(t.server.listen, ":"+p1) {
		return false // the same port as the TLS listener: not something the gateway can do
	}
	t.server.redirect, t.server.redirectBy = addr, s
	t.use(s, ret, loc, sc.own("server_name"))
	for i, ls := range specs {
		if i == 0 || sameSocket(ls.addr, addr) {
			t.use(ls.d)
		} else {
			t.note(ls.d, "the gateway redirects from one address; server.redirect_http is %s", addr)
		}
	}
	if code != "301" && code != "308" {
		t.note(ret, "translated as server.redirect_http, which redirects permanently: 301 for GET and HEAD, 308 (which keeps the method) for others")
	}
	if host := strings.TrimSuffix(strings.TrimPrefix(url, "https://"), "$request_uri"); !slices.Contains(redirectHosts, host) {
		t.note(ret, "translated as server.redirect_http, which sends the client to the host it asked for, not to %s", host)
	}
	for _, d := range s.Block {
		if d.Name == "location" && d != loc {
			t.skip(d, "in the redirect server (%s), which answers every request with the redirect before any location is matched", where(s))
		}
	}
	return true
}

// otherServer lists what a server block that is not translated holds.
func (t *translator) otherServer(s, chosen *Directive) {
	t.use(s)
	desc := "listen *:80"
	if l := (&scope{block: s}).own("listen"); l != nil {
		desc = "listen " + strings.Join(l.Args, " ")
	}
	if n := (&scope{block: s}).own("server_name"); n != nil {
		desc += ", server_name " + strings.Join(n.Args, " ")
	}
	for _, d := range s.Block {
		t.skip(d, "in the server block at %s (%s), which is not translated: the gateway has one client listener, translated from the first server block that proxies (%s)",
			where(s), desc, where(chosen))
	}
}

// serverName turns a single server name into every route's match.host.
// "_" and "" are nginx's idioms for "no name" and are taken as such.
func (t *translator) serverName(sc *scope) {
	d := sc.own("server_name")
	if d == nil {
		return
	}
	t.use(d)
	var names []string
	for _, n := range d.Args {
		if n != "_" && n != "" {
			names = append(names, n)
		}
	}
	n := ""
	if len(names) > 0 {
		n = strings.ToLower(names[0])
	}
	switch {
	case len(names) == 0:
	case len(names) > 1:
		t.note(d, "the gateway's match.host takes one name: the routes are written without one and match any host")
	case strings.HasPrefix(n, "~"):
		t.note(d, "a regular expression: the gateway's match.host takes a name or *.domain; the routes match any host")
	case strings.HasPrefix(n, "."):
		t.note(d, "%s means the domain and its subdomains; the gateway's match.host takes one of the two: the routes match any host", n)
	case !hostNameRE.MatchString(strings.TrimPrefix(n, "*.")):
		t.note(d, "the gateway's match.host takes a plain name or a leading *.domain: the routes match any host")
	default:
		// "*.example.com" matches every subdomain at any depth in both.
		t.server.host = n
	}
}

// serverLimits reads client_max_body_size and keepalive_timeout, as the
// server has them (its own, else http's).
func (t *translator) serverLimits(sc *scope) {
	if d := sc.get("client_max_body_size"); d != nil {
		if n, ok := t.bodySize(d); ok {
			t.server.maxBody = n
		}
	}
	if d := sc.get("keepalive_timeout"); d != nil {
		v, err := parseTime(arg(d, 0))
		switch {
		case err != nil:
			t.note(d, "%v", err)
		case v == 0:
			t.note(d, "0 turns keep-alive off; the gateway always allows it, closing connections idle for server.idle_timeout (default 60s)")
		default:
			t.server.idleTimeout = v
			t.use(d)
			if len(d.Args) > 1 {
				t.note(d, "translated as server.idle_timeout; the second value (the Keep-Alive: timeout header) is not: the gateway sends no Keep-Alive header")
			}
		}
	}
}

// bodySize reads client_max_body_size for server.max_body or a route's
// max_body.
func (t *translator) bodySize(d *Directive) (int64, bool) {
	n, err := parseSize(arg(d, 0))
	switch {
	case err != nil:
		t.note(d, "%v", err)
		return 0, false
	case n == 0:
		t.note(d, "0 turns nginx's body limit off; the gateway always has one (server.max_body, default 1MiB): set it to the largest body you expect")
		return 0, false
	}
	t.use(d)
	return n, true
}

// realIP turns set_real_ip_from into server.trusted_proxies: the gateway
// believes X-Forwarded-For from those peers and walks it from the right
// past every trusted hop (ngx_http_realip_module with real_ip_header
// X-Forwarded-For and real_ip_recursive on).
func (t *translator) realIP(sc *scope) {
	from := sc.getAll("set_real_ip_from")
	if len(from) == 0 {
		return
	}
	header := sc.get("real_ip_header")
	for _, d := range from {
		p := arg(d, 0)
		if _, err := netip.ParsePrefix(p); err != nil {
			if _, err := netip.ParseAddr(p); err != nil {
				t.note(d, "the gateway trusts addresses and CIDR ranges only")
				continue
			}
		}
		t.server.trusted = append(t.server.trusted, p)
		t.use(d)
		if header == nil {
			t.note(d, "translated to server.trusted_proxies; nginx reads the client address from X-Real-IP here (real_ip_header's default), the gateway from X-Forwarded-For")
		}
	}
	if header != nil {
		if strings.EqualFold(arg(header, 0), "X-Forwarded-For") {
			t.use(header)
		} else {
			t.note(header, "the gateway reads the client address from X-Forwarded-For only")
		}
	}
	if r := sc.get("real_ip_recursive"); r != nil {
		if arg(r, 0) == "on" {
			t.use(r)
		} else {
			t.note(r, "the gateway always walks X-Forwarded-For past every trusted proxy, as real_ip_recursive on does")
		}
	}
}
