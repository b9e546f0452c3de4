package nginximport

import (
	"bytes"
	"fmt"
	"net"
	"strconv"
	"strings"
	"unicode"

	"gopkg.in/yaml.v3"
)

// adminListen is where the translated config puts the admin API: the
// gateway's default, which must not be the client port (the validator
// refuses that), so another loopback port is taken when nginx listened
// there.
func (t *translator) adminListen() string {
	for port := 9901; ; port++ {
		addr := "127.0.0.1:" + strconv.Itoa(port)
		if !clash(addr, t.server.listen) && !clash(addr, t.server.redirect) {
			return addr
		}
	}
}

// clash reports whether two listen addresses share a port where either
// binds every address.
func clash(a, b string) bool {
	ha, pa, err1 := net.SplitHostPort(a)
	hb, pb, err2 := net.SplitHostPort(b)
	wild := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return err1 == nil && err2 == nil && pa == pb && (ha == hb || wild(ha) || wild(hb))
}

// emit writes the config as YAML: server, admin, pools, routes, each key
// in the order of the config reference, with comments naming the nginx
// lines each block comes from. The same tree always gives the same bytes.
func (t *translator) emit(untranslated int) ([]byte, error) {
	root := mapping(false)
	doc := &yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{root}}
	doc.HeadComment = fmt.Sprintf("Translated from %s by gateway import-nginx.\n", t.source)
	if untranslated == 0 {
		doc.HeadComment += "Every nginx directive was translated."
	} else {
		doc.HeadComment += fmt.Sprintf("%d nginx directives were not translated as they are: gateway import-nginx\nlists them on stderr with the reason. Review them before serving this file.", untranslated)
	}

	add(root, "server", t.emitServer()).HeadComment = "server block at " + where(t.server.from)
	admin := mapping(false)
	add(admin, "listen", quoted(t.adminListen()))
	add(root, "admin", admin).HeadComment = "No nginx equivalent: metrics, health and the admin API, never on the client port."

	pools := mapping(false)
	for _, p := range t.pools {
		add(pools, p.name, t.emitPool(p)).HeadComment = p.comment
	}
	add(root, "pools", pools)

	routes := &yaml.Node{Kind: yaml.SequenceNode}
	for _, r := range t.routes {
		n := emitRoute(r)
		n.HeadComment = fmt.Sprintf("location %s (%s)", r.prefix, where(r.from))
		routes.Content = append(routes.Content, n)
	}
	add(root, "routes", routes).HeadComment = "Longest prefix first: nginx picks the longest matching location, the gateway the first matching route."

	cleanComments(doc)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, err // the translation writes only UTF-8 (writable), so this is a bug
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func (t *translator) emitServer() *yaml.Node {
	s := t.server
	n := mapping(false)
	listen := quoted(s.listen)
	listen.LineComment = s.listenNote
	add(n, "listen", listen)
	if s.tls != nil {
		tls := mapping(true)
		add(tls, "cert", str(s.tls.cert))
		add(tls, "key", str(s.tls.key))
		add(n, "tls", tls)
	}
	if s.redirect != "" {
		r := quoted(s.redirect)
		r.LineComment = "the server at " + where(s.redirectBy)
		add(n, "redirect_http", r)
	}
	if s.idleTimeout > 0 {
		add(n, "idle_timeout", str(durationText(s.idleTimeout)))
	}
	if s.maxBody > 0 {
		add(n, "max_body", str(sizeText(s.maxBody)))
	}
	if len(s.trusted) > 0 {
		list := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
		for _, p := range s.trusted {
			list.Content = append(list.Content, str(p))
		}
		add(n, "trusted_proxies", list)
	}
	return n
}

func (t *translator) emitPool(p *pool) *yaml.Node {
	n := mapping(false)
	backends := &yaml.Node{Kind: yaml.SequenceNode}
	for _, b := range p.backends {
		if b.weight == 1 {
			backends.Content = append(backends.Content, str(b.addr))
			continue
		}
		long := mapping(true)
		add(long, "addr", str(b.addr))
		add(long, "weight", num(b.weight))
		backends.Content = append(backends.Content, long)
	}
	add(n, "backends", backends)
	if len(p.backends) > 1 && p.balance != "" {
		add(n, "balance", str(p.balance))
	}
	if p.maxConns > 0 {
		add(n, "max_conns", num(p.maxConns))
	}
	timeout := str(durationText(p.timeout))
	if d := p.timeoutSetter; d != nil {
		timeout.LineComment = d.Text() + ", " + where(d)
	} else {
		timeout.LineComment = "nginx's default proxy_read_timeout"
	}
	add(n, "timeout", timeout)
	if o := p.outlier; o != nil {
		m := mapping(true)
		add(m, "consecutive_failures", num(o.failures))
		add(m, "eject_for", str(durationText(o.ejectFor)))
		add(m, "max_eject_for", str(durationText(o.ejectFor)))
		add(n, "outlier", m)
	}
	return n
}

func emitRoute(r *route) *yaml.Node {
	n := mapping(false)
	add(n, "name", str(r.name))
	match := mapping(true)
	add(match, "path_prefix", str(r.prefix))
	if r.host != "" {
		add(match, "host", str(r.host))
	}
	add(n, "match", match)
	if r.strip != "" {
		add(n, "strip_prefix", str(r.strip))
	}
	if r.split != nil {
		sp := mapping(false)
		if r.split.sticky != "" {
			add(sp, "sticky", str(r.split.sticky))
		}
		if r.split.salt != "" {
			add(sp, "salt", str(r.split.salt))
		}
		variants := &yaml.Node{Kind: yaml.SequenceNode}
		for _, v := range r.split.variants {
			m := mapping(true)
			add(m, "name", str(v.name))
			add(m, "pool", str(v.pool))
			add(m, "weight", num(v.weight))
			variants.Content = append(variants.Content, m)
		}
		add(sp, "variants", variants)
		add(n, "split", sp)
	} else {
		add(n, "pool", str(r.pool))
	}
	if r.fallback != "" {
		add(n, "fallback", str(r.fallback))
	}
	if rt := r.retries; rt != nil {
		m := mapping(true)
		add(m, "attempts", num(rt.attempts))
		if len(rt.on) > 0 && rt.attempts > 0 {
			on := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
			for _, c := range rt.on {
				on.Content = append(on.Content, str(c))
			}
			add(m, "on", on)
		}
		if rt.nonIdempotent && rt.attempts > 0 {
			add(m, "non_idempotent", &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: "true"})
		}
		add(n, "retries", m)
	}
	if r.maxBody > 0 {
		add(n, "max_body", str(sizeText(r.maxBody)))
	}
	if r.shadow != "" {
		m := mapping(true)
		add(m, "pool", str(r.shadow))
		add(m, "percent", num(100))
		add(n, "shadow", m)
	}
	if len(r.rateLimits) > 0 {
		list := &yaml.Node{Kind: yaml.SequenceNode}
		for _, rl := range r.rateLimits {
			m := mapping(true)
			add(m, "key", str(rl.key))
			add(m, "rate", str(rl.rate))
			add(m, "burst", num(rl.burst))
			add(m, "max_keys", num(rl.maxKeys))
			list.Content = append(list.Content, m)
		}
		add(n, "rate_limit", list)
	}
	if c := r.cache; c != nil {
		m := mapping(true)
		if c.ttl > 0 {
			add(m, "ttl", str(durationText(c.ttl)))
		}
		if c.maxBytes > 0 {
			add(m, "max_bytes", str(sizeText(c.maxBytes)))
		}
		if c.coalesce {
			add(m, "coalesce", &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: "true"})
		}
		add(n, "cache", m)
	}
	return n
}

// cleanComments makes every comment printable: comments quote nginx text
// (paths, directives), which may hold control characters that YAML does
// not allow.
func cleanComments(n *yaml.Node) {
	clean := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r == '\n' || (r >= ' ' && r != 0x7f && unicode.IsPrint(r)) {
				return r
			}
			return '?'
		}, s)
	}
	n.HeadComment, n.LineComment, n.FootComment = clean(n.HeadComment), clean(n.LineComment), clean(n.FootComment)
	for _, c := range n.Content {
		cleanComments(c)
	}
}

// YAML node builders.

func mapping(flow bool) *yaml.Node {
	n := &yaml.Node{Kind: yaml.MappingNode}
	if flow {
		n.Style = yaml.FlowStyle
	}
	return n
}

// add appends key: value to a mapping and returns the key node, for a
// comment.
func add(m *yaml.Node, key string, value *yaml.Node) *yaml.Node {
	k := str(key)
	m.Content = append(m.Content, k, value)
	return k
}

func str(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }

func quoted(s string) *yaml.Node {
	n := str(s)
	n.Style = yaml.DoubleQuotedStyle
	return n
}

func num(n int) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.Itoa(n)}
}
