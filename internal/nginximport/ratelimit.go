package nginximport

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// limitZone is a limit_req_zone (ngx_http_limit_req_module):
//
//	limit_req_zone $binary_remote_addr zone=perip:10m rate=10r/s;
type limitZone struct {
	d       *Directive
	name    string
	key     string // the gateway's key source
	rate    string // the gateway's rate: "10/s", "30/m"
	maxKeys int
	why     string // why the zone cannot be translated
	uses    int    // routes that limit by it
}

// rateLimit is one entry of a route's rate_limit.
type rateLimit struct {
	key, rate      string
	burst, maxKeys int
}

var nginxRate = regexp.MustCompile(`^(\d+)r/([sm])$`)

// Bytes a zone spends per key: "One megabyte zone can keep about 16
// thousand 64-byte states" (limit_req_zone); a key longer than an address
// (an API key) takes about twice that. max_keys is what the zone would
// hold: nginx forgets the least recently used key when the zone is full,
// as the gateway does past max_keys.
const (
	zoneBytesPerAddress = 64
	zoneBytesPerKey     = 128
	maxRateLimitKeys    = 10_000_000 // the gateway's most
)

func (t *translator) limitZone(d *Directive) {
	kv, flags := params(d.Args[min(1, len(d.Args)):])
	name, size, _ := strings.Cut(kv["zone"], ":")
	if name == "" {
		t.skip(d, "names no zone=NAME:SIZE")
		return
	}
	z := &limitZone{d: d, name: name}
	t.limitZones[name] = z
	names, literal := variables(arg(d, 0))
	switch {
	case len(names) != 1 || literal != "":
		z.why = fmt.Sprintf("its key %q is not one variable, and the gateway keys a limit on one key source", arg(d, 0))
	default:
		z.key, z.why = keySource(names[0])
	}
	if m := nginxRate.FindStringSubmatch(kv["rate"]); m != nil && m[1] != "0" {
		z.rate = m[1] + "/" + m[2]
	} else if z.why == "" {
		z.why = fmt.Sprintf("rate=%s is not a rate nginx would take (Nr/s or Nr/m)", kv["rate"])
	}
	per := int64(zoneBytesPerKey)
	if z.key == "client_ip" {
		per = zoneBytesPerAddress
	}
	if n, err := parseSize(size); err == nil {
		z.maxKeys = int(min(max(n/per, 1), maxRateLimitKeys))
	} else if z.why == "" {
		z.why = fmt.Sprintf("zone size %q is not an nginx size", size)
	}
	if slices.Contains(flags, "sync") {
		t.note(d, "sync (NGINX Plus zone synchronisation) is not translated: gateway replicas share a limit with scope: global and a redis block")
	}
}

// rateLimits turns the limit_req directives in effect for a location into
// the route's rate_limit entries, one per directive: nginx checks every
// limit_req that applies, and so does the gateway.
//
// The bucket: nginx admits a request when the key's excess, drained at the
// rate since its last request, plus this request stays within burst, and
// the excess never goes below zero (ngx_http_limit_req_lookup). A quiet
// key therefore gets burst + 1 requests at once: "if 21 requests arrive
// from a given IP address simultaneously, NGINX forwards the first one to
// the upstream server group immediately and puts the remaining 20 in the
// queue" (NGINX, "Rate Limiting with NGINX", for burst=20). That is a
// token bucket of burst + 1 tokens refilled at the rate, so the gateway's
// burst is nginx's plus one; limit_req without burst is a bucket of one.
func (t *translator) rateLimits(sc *scope) []rateLimit {
	lrs := sc.getAll("limit_req")
	if len(lrs) == 0 {
		return nil
	}
	if dry := sc.get("limit_req_dry_run"); dry != nil {
		if arg(dry, 0) == "on" {
			for _, lr := range lrs {
				t.note(lr, "limit_req_dry_run on (%s): nginx only counts what it would refuse; the gateway has no dry run, so the limit is not translated", where(dry))
			}
			t.note(dry, "the gateway has no dry run")
			return nil
		}
		t.use(dry)
	}
	if st := sc.get("limit_req_status"); st != nil {
		if arg(st, 0) == "429" {
			t.use(st)
		} else {
			t.note(st, "the gateway refuses with 429 Too Many Requests (with Retry-After), not %s", arg(st, 0))
		}
	}
	var out []rateLimit
	for _, lr := range lrs {
		kv, flags := params(lr.Args)
		z := t.limitZones[kv["zone"]]
		switch {
		case z == nil:
			t.note(lr, "no limit_req_zone defines zone %s", kv["zone"])
			continue
		case z.why != "":
			t.note(lr, "zone %s (%s) cannot be translated: %s", z.name, where(z.d), z.why)
			t.note(z.d, "%s", z.why)
			continue
		}
		burst := 0
		if b, ok := kv["burst"]; ok {
			n, err := strconv.Atoi(b)
			if err != nil || n < 0 || n >= 1000000 {
				t.note(lr, "burst=%s is not a number the gateway takes", b)
				continue
			}
			burst = n
		}
		// Without nodelay nginx holds the requests over the rate (up to
		// burst of them) and releases them at the rate; the gateway never
		// queues a request, it refuses it. delay=N holds only those past
		// the first N.
		delay, err := strconv.Atoi(kv["delay"])
		switch {
		case slices.Contains(flags, "nodelay"), burst == 0:
		case err == nil && delay >= burst:
		default:
			t.note(lr, "requests over the rate are refused (429), not delayed")
		}
		out = append(out, rateLimit{key: z.key, rate: z.rate, burst: burst + 1, maxKeys: z.maxKeys})
		z.uses++
		t.use(lr, z.d)
	}
	return out
}

// finishZones says what became of zones: unused ones, and ones shared by
// several routes, which nginx keeps as one and the gateway as one per
// route; and of split_clients blocks that cannot be translated.
func (t *translator) finishZones() {
	for _, sp := range t.splits {
		if sp.why != "" {
			t.skip(sp.d, "%s", sp.why)
		}
	}
	for _, d := range t.httpScope.ownAll("limit_req_zone") {
		z := t.limitZones[zoneName(d, "zone")]
		switch {
		case z == nil || z.d != d:
		case z.why != "" && z.uses == 0:
			t.note(d, "%s", z.why)
		case z.uses == 0:
			t.note(d, "no translated location limits by zone %s", z.name)
		case z.uses > 1:
			t.note(d, "zone %s is shared by %d translated locations: nginx keeps one bucket per key for all of them, the gateway one per route", z.name, z.uses)
		}
	}
	for _, d := range t.httpScope.ownAll("proxy_cache_path") {
		z := t.cacheZones[zoneName(d, "keys_zone")]
		switch {
		case z == nil || z.d != d:
		case z.uses == 0:
			t.note(d, "no translated location caches in zone %s", z.name)
		case z.uses > 1:
			t.note(d, "zone %s is shared by %d translated locations: each gateway route has a cache of its own, max_bytes each", z.name, z.uses)
		}
	}
}

// zoneName is the NAME of a directive's key=NAME:SIZE argument.
func zoneName(d *Directive, key string) string {
	kv, _ := params(d.Args)
	name, _, _ := strings.Cut(kv[key], ":")
	return name
}
