package nginximport

import (
	"slices"
	"strings"
	"time"
)

// cacheZone is a proxy_cache_path's keys_zone (ngx_http_proxy_module):
//
//	proxy_cache_path /var/cache/nginx keys_zone=preds:10m max_size=1g inactive=60m;
type cacheZone struct {
	d        *Directive
	name     string
	maxBytes int64 // max_size; 0 when not written
	uses     int   // routes that cache in it
}

// cache is a route's cache as translated.
type cache struct {
	ttl      time.Duration // 0: the gateway's default
	maxBytes int64         // 0: the gateway's default
	coalesce bool
}

// The gateway's bounds on a route cache.
const (
	minCacheBytes = 64 << 10
	maxCacheBytes = 64 << 30
	minCacheTTL   = time.Second
	maxCacheTTL   = 720 * time.Hour
)

func (t *translator) cacheZone(d *Directive) {
	name := zoneName(d, "keys_zone")
	if name == "" {
		t.skip(d, "names no keys_zone=NAME:SIZE")
		return
	}
	z := &cacheZone{d: d, name: name}
	kv, _ := params(d.Args)
	if ms, ok := kv["max_size"]; ok {
		n, err := parseSize(ms)
		if err != nil {
			t.note(d, "max_size: %v; the gateway's default max_bytes (64MiB) applies", err)
		} else {
			z.maxBytes = n
		}
	}
	t.cacheZones[name] = z
}

// cache turns proxy_cache into the route's cache. nginx's cache is on
// disk and bounded by max_size; the gateway's is in memory and bounded
// by max_bytes, so max_size becomes max_bytes within the gateway's bounds
// (64KiB to 64GiB). levels, inactive and use_temp_path are about the
// disk layout and are not carried. The ttl is proxy_cache_valid's for
// 200, the only status the gateway stores; proxy_cache_lock (one request
// fills a missing entry while the others wait) is coalesce.
func (t *translator) cache(sc *scope) *cache {
	pc := sc.get("proxy_cache")
	if pc == nil {
		return nil
	}
	zone := arg(pc, 0)
	if zone == "off" {
		t.use(pc)
		return nil
	}
	z := t.cacheZones[zone]
	if z == nil {
		t.note(pc, "no proxy_cache_path defines keys_zone %s", zone)
		return nil
	}
	c := &cache{}
	t.use(pc, z.d)
	z.uses++
	if z.maxBytes > 0 {
		c.maxBytes = min(max(z.maxBytes, minCacheBytes), maxCacheBytes)
		if c.maxBytes != z.maxBytes {
			t.note(z.d, "max_size is outside what the gateway's in-memory cache takes (64KiB to 64GiB): max_bytes is %s", sizeText(c.maxBytes))
		}
	}
	valid := sc.getAll("proxy_cache_valid")
	ttl, from := validFor200(valid)
	t.use(valid...)
	switch {
	case from == nil:
		t.note(pc, "no proxy_cache_valid covers 200: nginx caches an answer only as far as the worker's Cache-Control or Expires allows; the gateway caches 200 answers for its ttl (default 1m)")
	case ttl == 0:
		t.note(from, "0 does not cache 200 answers: the route is translated without a cache")
		return nil
	default:
		c.ttl = min(max(ttl, minCacheTTL), maxCacheTTL)
		if c.ttl != ttl {
			t.note(from, "the gateway's cache ttl is 1s to 720h: %s is written", durationText(c.ttl))
		}
	}
	if lock := sc.get("proxy_cache_lock"); lock != nil {
		c.coalesce = arg(lock, 0) == "on"
		t.use(lock)
	}
	if m := sc.get("proxy_cache_methods"); m != nil && slices.Contains(m.Args, "POST") {
		t.use(m)
	} else {
		t.note(pc, "nginx caches GET and HEAD answers only (proxy_cache_methods); the gateway caches the 200 answers of every method, POST predictions included, keyed on the body")
	}
	return c
}

// validFor200 is how long proxy_cache_valid keeps a 200 answer: the first
// line that names 200 or "any", a line without codes counting as "200 301
// 302" (ngx_http_file_cache_valid). from is that line, nil when none.
func validFor200(lines []*Directive) (time.Duration, *Directive) {
	for _, d := range lines {
		if len(d.Args) == 0 {
			continue
		}
		codes, ttl := d.Args[:len(d.Args)-1], d.Args[len(d.Args)-1]
		if len(codes) == 0 {
			codes = []string{"200"}
		}
		if slices.ContainsFunc(codes, func(c string) bool { return c == "200" || strings.EqualFold(c, "any") }) {
			v, err := parseTime(ttl)
			if err != nil {
				return 0, nil
			}
			return v, d
		}
	}
	return 0, nil
}
