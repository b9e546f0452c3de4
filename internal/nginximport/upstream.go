package nginximport

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
)

// upstream is an nginx upstream block and the pool it became.
type upstream struct {
	d    *Directive
	name string
	pool *pool // nil when no server of it is usable
}

// pool is one gateway pool as translated.
type pool struct {
	name          string
	comment       string
	backends      []backend
	balance       string // written for pools of two backends or more
	maxConns      int    // 0: the gateway's default
	outlier       *outlier
	uses          []timeoutUse // one per location (or mirror) that sends to it
	timeout       time.Duration
	timeoutSetter *Directive // nil: nginx's default
	backup        *pool      // the pool of the upstream's backup servers
	primary       *pool      // for a backup pool: the pool it backs up
}

type backend struct {
	addr   string
	weight int
}

// outlier is what max_fails and fail_timeout become.
type outlier struct {
	failures int
	ejectFor time.Duration
	from     *Directive
}

// timeoutUse is the attempt timeout one location asks of a pool.
type timeoutUse struct {
	value  time.Duration
	setter *Directive // nil: nginx's default
	loc    *Directive
}

// nginx's defaults for an upstream server (ngx_http_upstream_module:
// server): one failure within 10s takes a server out for 10s.
const (
	defaultMaxFails = 1
	// maxConsecutiveFailures is the most outlier.consecutive_failures the
	// gateway's config takes.
	maxConsecutiveFailures = 10000
	defaultFailTimeout     = 10 * time.Second
	maxWeight              = 10000 // the gateway's largest backend weight
)

// upstream translates "upstream NAME { server ...; }" into pool NAME, and
// its backup servers into pool NAME-backup, which becomes the fallback of
// the routes that send to NAME: nginx sends to backup servers "when the
// primary servers are unavailable", as the gateway sends to a route's
// fallback when its pool has no available backend. Every upstream becomes
// a pool, used or not, so nothing defined is lost.
func (t *translator) upstream(d *Directive) {
	if !d.IsBlock || len(d.Args) != 1 {
		t.skip(d, "an upstream block takes one name")
		return
	}
	name := d.Args[0]
	if _, dup := t.upstreams[name]; dup {
		t.skip(d, "upstream %s is defined twice (nginx refuses that); the first is translated", name)
		return
	}
	t.use(d)
	up := &upstream{d: d, name: name}
	t.upstreams[name] = up
	primary := &pool{comment: fmt.Sprintf("upstream %s (%s)", name, where(d)), balance: "round_robin"}
	backup := &pool{comment: fmt.Sprintf("the backup servers of upstream %s (%s)", name, where(d))}
	var servers []*Directive
	for _, c := range d.Block {
		switch c.Name {
		case "server":
			if t.upstreamServer(c, primary, backup) {
				servers = append(servers, c)
			}
		case "least_conn":
			// Fewest active connections by weight; the gateway's
			// least_pending counts requests in flight per weight.
			primary.balance = "least_pending"
			t.use(c)
		case "random":
			// "random two [least_conn]" picks two servers at random and
			// the less loaded: the power of two choices, p2c.
			switch {
			case len(c.Args) == 0:
				primary.balance = "random"
				t.use(c)
			case c.Args[0] == "two":
				primary.balance = "p2c"
				t.use(c)
				if len(c.Args) > 1 && c.Args[1] != "least_conn" {
					t.note(c, "translated as balance: p2c (two random picks, the one with fewer requests in flight wins); %s is not", c.Args[1])
				}
			}
		}
	}
	primary.outlier = t.outlierOf(servers)
	primary.maxConns = t.maxConnsOf(servers)
	if len(primary.backends) == 0 {
		t.note(d, "no server of it the gateway can use: no pool is written, and locations that proxy to it are not translated")
		return
	}
	primary.name = t.uniquePoolName(safeName(name, "upstream"))
	t.addPool(primary)
	up.pool = primary
	if len(backup.backends) > 0 {
		backup.name = t.uniquePoolName(primary.name + "-backup")
		backup.balance, backup.maxConns, backup.outlier = primary.balance, primary.maxConns, primary.outlier
		backup.primary, primary.backup = primary, backup
		t.addPool(backup)
	}
}

// upstreamServer adds one "server ADDR [params]" to the primary or backup
// pool. It reports whether the server was taken.
func (t *translator) upstreamServer(c *Directive, primary, backup *pool) bool {
	kv, flags := params(c.Args[min(1, len(c.Args)):])
	addr, ok := hostPort(arg(c, 0), 80) // "If a port is not specified, the port 80 is used."
	switch {
	case strings.HasPrefix(arg(c, 0), "unix:"):
		t.note(c, "the gateway connects to backends over TCP only, not to unix sockets: left out of the pool")
		return false
	case !ok:
		t.note(c, "not a host:port the gateway can connect to: left out of the pool")
		return false
	case hasEnvSyntax(addr):
		t.note(c, "the gateway's config would read ${...} as an environment variable: left out of the pool")
		return false
	case slices.Contains(flags, "down"):
		t.note(c, "marked down: left out of the pool")
		return false
	}
	weight := 1
	if w, set := kv["weight"]; set {
		n, err := strconv.Atoi(w)
		switch {
		case err != nil || n < 1:
			t.note(c, "weight=%s is not a weight nginx would take; 1 is written", w)
		case n > maxWeight:
			t.note(c, "weight=%d is more than the gateway takes; %d is written", n, maxWeight)
			weight = maxWeight
		default:
			weight = n
		}
	}
	for _, a := range c.Args[min(1, len(c.Args)):] {
		switch k, _, _ := strings.Cut(a, "="); k {
		case "weight", "max_fails", "fail_timeout", "max_conns", "backup":
		default:
			t.note(c, "the server is translated; its %s is not: no gateway equivalent (NGINX Plus)", a)
		}
	}
	target := primary
	if slices.Contains(flags, "backup") {
		target = backup
	}
	// nginx allows a server twice (it then gets twice the share); the
	// gateway wants each address once, with the weights added up.
	if i := slices.IndexFunc(target.backends, func(b backend) bool { return b.addr == addr }); i >= 0 {
		target.backends[i].weight = min(target.backends[i].weight+weight, maxWeight)
	} else {
		target.backends = append(target.backends, backend{addr: addr, weight: weight})
	}
	t.use(c)
	return true
}

// failSettings are one server's max_fails and fail_timeout, nginx's
// defaults filled in; explicit tells whether either was written.
func failSettings(c *Directive) (fails int, failTimeout time.Duration, explicit bool, err error) {
	kv, _ := params(c.Args[min(1, len(c.Args)):])
	fails, failTimeout = defaultMaxFails, defaultFailTimeout
	if v, ok := kv["max_fails"]; ok {
		explicit = true
		if fails, err = strconv.Atoi(v); err != nil || fails < 0 {
			return 0, 0, true, fmt.Errorf("max_fails=%s is not a number nginx would take", v)
		}
	}
	if v, ok := kv["fail_timeout"]; ok {
		explicit = true
		if failTimeout, err = parseTime(v); err != nil {
			return 0, 0, true, err
		}
	}
	return fails, failTimeout, explicit, nil
}

// outlierOf turns max_fails and fail_timeout into the pool's outlier
// ejection. nginx takes a server out for fail_timeout after max_fails
// failed attempts within fail_timeout (ngx_http_upstream_module); the
// gateway after consecutive_failures failed attempts in a row, for
// eject_for. max_eject_for is set to eject_for: nginx's time out does not
// grow with repeated failures, the gateway's does unless capped. Without
// either parameter nothing is written: the gateway's own defaults (5 in a
// row, 30s) are gentler than nginx's (1 in 10s), and fail no request
// nginx would serve. The gateway ejects every backend of a pool alike;
// servers that differ from the first one that sets the parameters are
// listed.
func (t *translator) outlierOf(servers []*Directive) *outlier {
	first := slices.IndexFunc(servers, func(c *Directive) bool {
		_, _, explicit, err := failSettings(c)
		return explicit && err == nil
	})
	if first < 0 {
		return nil
	}
	from := servers[first]
	fails, timeout, _, _ := failSettings(from)
	o := &outlier{failures: fails, ejectFor: timeout, from: from}
	switch {
	case fails == 0:
		t.note(from, "max_fails=0 turns nginx's failure accounting off; the gateway always ejects: consecutive_failures is set to its most, %d", maxConsecutiveFailures)
		o.failures = maxConsecutiveFailures
	case fails > maxConsecutiveFailures:
		t.note(from, "max_fails=%d is more than the gateway takes: consecutive_failures is set to its most, %d", fails, maxConsecutiveFailures)
		o.failures = maxConsecutiveFailures
	}
	if timeout < time.Second {
		t.note(from, "fail_timeout=%s is shorter than the gateway's ejections: eject_for is set to 1s", durationText(timeout))
		o.ejectFor = time.Second
	}
	for _, c := range servers {
		f, ft, _, err := failSettings(c)
		switch {
		case err != nil:
			t.note(c, "the server is translated; %v", err)
		case c != from && (f != fails || ft != timeout):
			t.note(c, "its max_fails=%d fail_timeout=%s differ from the pool's outlier settings (from %s): the gateway ejects every backend of a pool alike",
				f, durationText(ft), where(from))
		}
	}
	return o
}

// maxConnsOf turns the servers' max_conns into the pool's max_conns (per
// backend in both) when they all agree.
func (t *translator) maxConnsOf(servers []*Directive) int {
	values := map[int][]*Directive{}
	for _, c := range servers {
		kv, _ := params(c.Args[min(1, len(c.Args)):])
		n := 0 // nginx's default: no limit
		if v, ok := kv["max_conns"]; ok {
			var err error
			if n, err = strconv.Atoi(v); err != nil || n < 0 {
				t.note(c, "max_conns=%s is not a number nginx would take", v)
				continue
			}
		}
		values[n] = append(values[n], c)
	}
	if len(values) == 1 {
		for n := range values {
			return n
		}
	}
	for n, cs := range values {
		if n > 0 {
			for _, c := range cs {
				t.note(c, "its max_conns=%d is not translated: the servers of this upstream differ, and the gateway's max_conns applies to every backend of a pool", n)
			}
		}
	}
	return 0
}

// poolTarget is a pool a proxy_pass names, found but not yet recorded:
// an upstream's, or one to be made for an address.
type poolTarget struct {
	up   *upstream
	addr string
	host string // as written
}

// resolvePool finds what proxy_pass http://HOST sends to: the upstream of
// that name, or else the address itself (port 80 when none is written).
func (t *translator) resolvePool(host string) (poolTarget, string) {
	if up, ok := t.upstreams[host]; ok {
		if up.pool == nil {
			return poolTarget{}, fmt.Sprintf("upstream %s (%s) has no server the gateway can use", host, where(up.d))
		}
		return poolTarget{up: up}, ""
	}
	addr, ok := hostPort(host, 80)
	switch {
	case !ok:
		return poolTarget{}, fmt.Sprintf("%s is neither an upstream nor a host:port the gateway can connect to", host)
	case hasEnvSyntax(addr):
		return poolTarget{}, "the gateway's config would read ${...} in the address as an environment variable"
	}
	return poolTarget{addr: addr, host: host}, ""
}

// commitPool returns the pool of a target, making the pool of an address
// the first time one is named. Such a pool is named after the address
// (127.0.0.1:9101 is pool 127.0.0.1-9101).
func (t *translator) commitPool(tg poolTarget, from *Directive) *pool {
	if tg.up != nil {
		return tg.up.pool
	}
	if p := t.addrPools[tg.addr]; p != nil {
		return p
	}
	p := &pool{
		name:     t.uniquePoolName(addrPoolName(tg.addr)),
		comment:  fmt.Sprintf("proxy_pass http://%s (%s)", tg.host, where(from)),
		backends: []backend{{addr: tg.addr, weight: 1}},
	}
	t.addPool(p)
	t.addrPools[tg.addr] = p
	return p
}

// addrPoolName names the pool of an address: 127.0.0.1:9101 is
// 127.0.0.1-9101, [::1]:9101 is ipv6-1-9101.
func addrPoolName(addr string) string {
	host, port, _ := net.SplitHostPort(addr)
	if strings.Contains(host, ":") {
		host = "ipv6-" + strings.Trim(strings.Join(strings.FieldsFunc(host, func(r rune) bool { return r == ':' }), "-"), "-")
	}
	return safeName(host+"-"+port, "backend")
}

func (t *translator) addPool(p *pool) {
	t.pools = append(t.pools, p)
	t.poolNames[p.name] = true
}

func (t *translator) uniquePoolName(base string) string {
	name := base
	for i := 2; t.poolNames[name]; i++ {
		name = fmt.Sprintf("%s-%d", base, i)
	}
	t.poolNames[name] = true // reserved, so that two pools never get one name
	return name
}

func (t *translator) poolByName(name string) *pool {
	for _, p := range t.pools {
		if p.name == name {
			return p
		}
	}
	return nil
}

// fallback is the route's fallback: the backup pool of the upstream it
// sends to.
func (t *translator) fallback(r *route, l *location) string {
	if r.split == nil {
		if b := t.poolByName(r.pool).backup; b != nil {
			return b.name
		}
		return ""
	}
	for _, name := range r.poolNames() {
		if b := t.poolByName(name).backup; b != nil {
			t.note(l.d, "pool %s has backup servers (pool %s), but a split route has one fallback for every variant: none is written", name, b.name)
		}
	}
	return ""
}

// finishPools sets every pool's timeout, once every location has said
// what it needs.
func (t *translator) finishPools() {
	for _, p := range t.pools {
		p.timeout, p.timeoutSetter = t.poolTimeout(p)
	}
}

// poolTimeout is a pool's attempt timeout: the longest any location that
// sends to it asks for (a pool has one), nginx's http-level setting for a
// pool nothing sends to. The locations that asked for less are told.
func (t *translator) poolTimeout(p *pool) (time.Duration, *Directive) {
	uses := p.uses
	if p.primary != nil {
		uses = p.primary.uses // the fallback takes the attempts the primary would have had
	}
	if len(uses) == 0 {
		return t.attemptTimeout(t.httpScope)
	}
	longest := uses[0]
	for _, u := range uses[1:] {
		if u.value > longest.value {
			longest = u
		}
	}
	if p.primary != nil {
		return longest.value, longest.setter
	}
	for _, u := range uses {
		if u.value < longest.value {
			at := u.setter
			if at == nil {
				at = u.loc
			}
			from := "nginx's default"
			if longest.setter != nil {
				from = where(longest.setter)
			}
			t.note(at, "pool %s has one attempt timeout, the longest of the locations that send to it: %s (%s)", p.name, durationText(longest.value), from)
		}
	}
	return longest.value, longest.setter
}
