package nginximport

// The mirror idiom (ngx_http_mirror_module):
//
//	location /v1/ {
//	    mirror /shadow;
//	    proxy_pass http://primary;
//	}
//	location = /shadow {
//	    internal;
//	    proxy_pass http://candidate$request_uri;
//	}
//
// nginx copies each request of /v1/ to the subrequest /shadow, which the
// second location proxies to candidate with the original URI, and throws
// the answer away. That is a gateway shadow of 100% to pool candidate
// (which also compares the answers, see "Shadow traffic"). The mirror's
// location becomes no route of its own.

// resolveMirrors marks the locations mirror directives send to, before
// the locations are translated, so that an internal mirror location is not
// listed as untranslated.
func (t *translator) resolveMirrors() {
	mirrors := append(t.httpScope.ownAll("mirror"), t.serverScope.ownAll("mirror")...)
	for _, l := range t.locations {
		mirrors = append(mirrors, l.scope.ownAll("mirror")...)
	}
	for _, m := range mirrors {
		if uri := arg(m, 0); uri != "off" {
			if l := t.findLocation(uri); l != nil {
				t.mirrorTargets[l.d] = true
			}
		}
	}
}

// shadow turns the mirror in effect for a location into the route's shadow
// pool ("" for none).
func (t *translator) shadow(sc *scope) string {
	ms := sc.getAll("mirror")
	if len(ms) == 0 {
		return ""
	}
	m := ms[0]
	if arg(m, 0) == "off" {
		t.use(m)
		return ""
	}
	target := t.findLocation(arg(m, 0))
	if target == nil {
		t.note(m, "no exact or prefix location serves %s, where nginx sends the copies", arg(m, 0))
		return ""
	}
	pp := target.scope.own("proxy_pass")
	if pp == nil {
		t.note(m, "the location of the copies (%s) has no proxy_pass", where(target.d))
		return ""
	}
	tg, why := parseProxyPass(pp)
	if why == "" && tg.variable != "" {
		why = "it picks its upstream from a variable"
	}
	var ptg poolTarget
	if why == "" {
		ptg, why = t.resolvePool(tg.host)
	}
	if why != "" {
		t.note(m, "the location of the copies (%s) cannot be translated: %s", where(target.d), why)
		return ""
	}
	p := t.commitPool(ptg, pp)
	attempt, setter := t.attemptTimeout(target.scope)
	p.uses = append(p.uses, timeoutUse{value: attempt, setter: setter, loc: target.d})
	t.use(m, target.d, pp, target.scope.own("internal"))
	switch tg.uri {
	case "$request_uri":
	case "":
		t.note(pp, "nginx sends the copies to %s itself (the mirror's URI, as proxy_pass has no $request_uri); the gateway sends them to the original path", arg(m, 0))
	default:
		t.note(pp, "the gateway sends the copies to the original path, not to %s", tg.uri)
	}
	for _, extra := range ms[1:] {
		t.note(extra, "the gateway mirrors a route to one pool; only the first mirror (%s) is translated", where(m))
	}
	if b := sc.get("mirror_request_body"); b != nil {
		if arg(b, 0) == "on" {
			t.use(b)
		} else {
			t.note(b, "the gateway always sends the body with the copy (up to the route's max_body)")
		}
	}
	return p.name
}

// finishMirrors lists the locations of mirrors that were not translated
// (a second mirror of a location, say): they would otherwise say nothing.
func (t *translator) finishMirrors() {
	for _, l := range t.locations {
		if t.mirrorTargets[l.d] && !t.handled[l.d] && t.notes[l.d] == nil {
			t.skip(l.d, "receives the copies of a mirror that is not translated")
		}
	}
}
