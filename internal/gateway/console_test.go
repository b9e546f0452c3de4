package gateway

import (
	"fmt"
	"html"
	"io"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/testutil"
)

// uiConfig has one route of every kind the console shows: a split
// with a shadow, a canary, a blue-green pair and a plain pool.
func uiConfig(t *testing.T, admin string) string {
	t.Helper()
	a, b, c := okBackend(t), okBackend(t), okBackend(t)
	return fmt.Sprintf(`
server: {listen: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"%s}
pools:
  pa: {backends: [%q], timeout: 2s}
  pb: {backends: [%q], timeout: 2s}
  pc: {backends: [%q], timeout: 2s}
routes:
  - name: exp
    match: {path_prefix: /exp}
    split:
      salt: s
      variants:
        - {name: a, pool: pa, weight: 90}
        - {name: b, pool: pb, weight: 10}
    shadow: {pool: pc, percent: 100}
  - name: iris
    match: {path_prefix: /iris}
    canary:
      stable: pa
      candidate: pb
      steps: [10, 100]
      interval: 1h
  - name: colours
    match: {path_prefix: /colours}
    blue_green: {blue: pa, green: pb, active: blue}
  - name: main
    match: {path_prefix: /}
    pool: pa
`, admin, a, b, c)
}

// uiPages are the console's pages and the id of each one's
// principal table.
var uiPages = []struct{ path, table string }{
	{"/ui/", "routes"},
	{"/ui/shadow", "shadow"},
	{"/ui/experiments", "experiments"},
	{"/ui/rollouts", "rollouts"},
	{"/ui/config", "config"},
}

// uiExternalURL finds an absolute URL: a console page loads nothing from
// elsewhere.
var uiExternalURL = regexp.MustCompile(`(?i)https?://`)

func TestConsolePagesRenderTheirTables(t *testing.T) {
	for _, tc := range []struct {
		name string
		yaml func(t *testing.T) string
		// rows is a row each principal table must have.
		rows map[string]string
	}{
		{"every kind of route", func(t *testing.T) string { return uiConfig(t, "") }, map[string]string{
			"routes":      `<tr data-route="exp" data-variant="b"`,
			"shadow":      `<tr data-route="exp">`,
			"experiments": `<tr data-route="exp" data-variant="a"`,
			"rollouts":    `<tr data-rollout="iris">`,
			"config":      `<th scope="row">sha256</th>`,
		}},
		{"one plain route", func(t *testing.T) string { return onePool([]string{okBackend(t)}, "") }, map[string]string{
			"routes":      `<tr data-route="main" data-variant="p"`,
			"shadow":      `No route has a shadow.`,
			"experiments": `No split routes.`,
			"rollouts":    `No canary routes.`,
			"config":      `<th scope="row">last error</th>`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := startGateway(t, tc.yaml(t))
			for range 20 {
				get(t, g.url+"/exp/x")
			}
			for _, p := range uiPages {
				status, body, h := get(t, g.admin+p.path)
				if status != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/html") {
					t.Fatalf("%s: %d %s", p.path, status, h.Get("Content-Type"))
				}
				for _, want := range []string{
					`<title>Sluice`, `<link rel="icon" href="data:,">`, `<nav id="nav">`, `<main id="main">`,
					`<table class="data" id="` + p.table + `">`, tc.rows[p.table],
					`<a href="/ui/"`, `<a href="/ui/shadow"`, `<a href="/ui/experiments"`, `<a href="/ui/rollouts"`, `<a href="/ui/config"`,
				} {
					if !strings.Contains(body, want) {
						t.Errorf("%s lacks %q", p.path, want)
					}
				}
				if u := uiExternalURL.FindString(body); u != "" {
					t.Errorf("%s names an external URL (%q): a console page loads nothing from elsewhere", p.path, u)
				}
			}
			for _, asset := range []string{"/ui/assets/console.css", "/ui/assets/console.js"} {
				status, body, _ := get(t, g.admin+asset)
				if status != 200 || uiExternalURL.MatchString(body) {
					t.Errorf("%s: %d, or it names an external URL", asset, status)
				}
			}
			if status, body, _ := get(t, g.admin+"/ui/nosuch"); status != 404 || !strings.Contains(body, `<main id="main">`) {
				t.Errorf("/ui/nosuch: %d, want the 404 page", status)
			}
		})
	}
}

func TestConsolePartialIsTheInnerHTMLOfMain(t *testing.T) {
	g := startGateway(t, uiConfig(t, ""))
	for _, p := range uiPages {
		_, full, _ := get(t, g.admin+p.path)
		status, partial, h := get(t, g.admin+p.path, "X-Sluice-Partial", "1")
		if status != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/html") {
			t.Fatalf("%s partial: %d %s", p.path, status, h.Get("Content-Type"))
		}
		for _, not := range []string{"<!DOCTYPE", "<html", "<head", "<nav", "<main", "</main>", "<script"} {
			if strings.Contains(partial, not) {
				t.Errorf("%s partial has %q: it must be main's inner HTML alone", p.path, not)
			}
		}
		if !strings.Contains(partial, `<table class="data" id="`+p.table+`">`) {
			t.Errorf("%s partial lacks its table", p.path)
		}
		// The full page's main holds the same markup, but for the moment
		// it was rendered at.
		inner := full[strings.Index(full, `<main id="main">`)+len(`<main id="main">`) : strings.Index(full, "</main>")]
		if uiBlankLive(inner) != uiBlankLive(partial) {
			t.Errorf("%s: partial differs from the page's main:\n%s\n---\n%s", p.path, partial, inner)
		}
	}
}

// uiBlankLive blanks what changes from one rendering to the next: the time,
// the live numbers.
func uiBlankLive(page string) string {
	page = regexp.MustCompile(`\d\d:\d\d:\d\d`).ReplaceAllString(page, "T")
	return strings.TrimSpace(regexp.MustCompile(`<td class="num[^"]*">[^<]*</td>`).ReplaceAllString(page, "N"))
}

// uiShareCell reads a variant's share on the overview.
func uiShareCell(body, route, variant string) string {
	re := regexp.MustCompile(`<tr data-route="` + route + `" data-variant="` + variant + `"[^>]*>.*?<td class="num share">([^<]*)</td>`)
	if m := re.FindStringSubmatch(body); m != nil {
		return m[1]
	}
	return ""
}

func TestConsoleShowsLiveSplitShares(t *testing.T) {
	g := startGateway(t, uiConfig(t, ""))
	// Before any request the route has no share to show.
	_, body, _ := get(t, g.admin+"/ui/")
	if got := uiShareCell(body, "exp", "a"); got != "–" {
		t.Errorf("share before any request: %q, want –", got)
	}
	client := &http.Client{Timeout: 5 * time.Second}
	for i := range 2000 {
		resp, err := client.Get(g.url + "/exp/" + strconv.Itoa(i))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	// The sampler reads the counters once a second.
	var a, b float64
	deadline := time.Now().Add(3 * time.Second)
	for {
		_, body, _ = get(t, g.admin+"/ui/")
		a, _ = strconv.ParseFloat(strings.TrimSuffix(uiShareCell(body, "exp", "a"), "%"), 64)
		b, _ = strconv.ParseFloat(strings.TrimSuffix(uiShareCell(body, "exp", "b"), "%"), 64)
		if math.Abs(a-90) <= 2 && math.Abs(b-10) <= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("shares a %q b %q, want 90.0%% and 10.0%% within 2 points", uiShareCell(body, "exp", "a"), uiShareCell(body, "exp", "b"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, cell := range []string{"rps", "errors", "p50", "p99"} {
		re := regexp.MustCompile(`<tr data-route="exp" data-variant="a"[^>]*>.*?<td class="num ` + cell + `">([^<]*)</td>`)
		m := re.FindStringSubmatch(body)
		if m == nil || m[1] == "–" || m[1] == "" {
			t.Errorf("variant a's %s cell: %v, want a number", cell, m)
		}
	}
	if !strings.Contains(body, `<td class="num errors">0.0%</td>`) {
		t.Errorf("no 5xx answered, yet no error cell says 0.0%%")
	}
}

// uiNoRedirect is a client that shows a redirect instead of following it.
var uiNoRedirect = &http.Client{Timeout: 5 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func TestConsoleUITokenCookie(t *testing.T) {
	g := startGateway(t, uiConfig(t, `, token: secret`))
	do := func(method, path string, headers ...string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, g.admin+path, nil)
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		resp, err := uiNoRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	for _, p := range []string{"/ui/", "/ui/rollouts", "/ui/assets/console.js", "/ui/nosuch"} {
		if resp := do("GET", p); resp.StatusCode != 401 {
			t.Errorf("%s without the token: %d, want 401", p, resp.StatusCode)
		}
	}
	if resp := do("GET", "/ui/?token=wrong"); resp.StatusCode != 401 || len(resp.Cookies()) != 0 {
		t.Errorf("a wrong ?token: %d, cookies %v; want 401 and none", resp.StatusCode, resp.Cookies())
	}

	resp := do("GET", "/ui/rollouts?token=secret")
	if resp.StatusCode != 303 || resp.Header.Get("Location") != "/ui/rollouts" {
		t.Fatalf("?token=secret: %d to %q, want 303 to /ui/rollouts", resp.StatusCode, resp.Header.Get("Location"))
	}
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "sluice_admin" {
			cookie = c
		}
	}
	if cookie == nil || cookie.Value != "secret" || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode ||
		cookie.Path != "/" || cookie.Secure {
		t.Fatalf("cookie %+v, want sluice_admin=secret HttpOnly SameSite=Strict Path=/ and not Secure over plain HTTP", cookie)
	}
	sent := "sluice_admin=secret"
	for _, p := range []string{"/ui/", "/ui/rollouts", "/ui/assets/console.css", "/admin/config"} {
		if resp := do("GET", p, "Cookie", sent); resp.StatusCode != 200 {
			t.Errorf("%s with the cookie: %d, want 200", p, resp.StatusCode)
		}
	}
	if resp := do("GET", "/ui/", "Cookie", "sluice_admin=wrong"); resp.StatusCode != 401 {
		t.Errorf("a wrong cookie: %d, want 401", resp.StatusCode)
	}
	if resp := do("GET", "/ui/", "Authorization", "Bearer secret"); resp.StatusCode != 200 {
		t.Errorf("the bearer header on /ui/: %d, want 200", resp.StatusCode)
	}
	// Health, readiness and metrics stay open.
	if resp := do("GET", "/healthz"); resp.StatusCode != 200 {
		t.Errorf("/healthz: %d", resp.StatusCode)
	}
}

func TestConsoleAbortThroughTheCookieRollsBack(t *testing.T) {
	g := startGateway(t, uiConfig(t, `, token: secret`))
	cookie := "sluice_admin=secret"
	// A page of another origin (the client port on the same host) cannot
	// use the cookie to act.
	status, _, _ := send(t, "POST", g.admin+"/admin/rollouts/iris/abort", "", "Cookie", cookie, "Origin", g.url)
	if status != 403 {
		t.Fatalf("abort from another origin with the cookie: %d, want 403", status)
	}
	status, body, _ := send(t, "POST", g.admin+"/admin/rollouts/iris/abort", "", "Cookie", cookie, "Origin", g.admin)
	if status != 200 || !strings.Contains(body, `"rolled_back"`) {
		t.Fatalf("abort with the cookie: %d %s", status, body)
	}
	_, page, _ := get(t, g.admin+"/ui/rollouts", "Cookie", cookie)
	row := regexp.MustCompile(`(?s)<tr data-rollout="iris">.*?</tr>`).FindString(page)
	if !strings.Contains(row, `<td class="state">rolled_back</td>`) {
		t.Fatalf("rollouts row after the abort: %s", row)
	}
	for _, action := range []string{"pause", "resume", "promote", "abort"} {
		form := `<form method="post" action="/admin/rollouts/iris/` + action + `" class="act"><button type="submit" data-route="iris" data-action="` + action + `">`
		if !strings.Contains(row, form) {
			t.Errorf("no %s form in %s", action, row)
		}
	}
	// Aborting again is a conflict, and the API says why.
	status, body, _ = send(t, "POST", g.admin+"/admin/rollouts/iris/abort", "", "Cookie", cookie)
	if status != 409 || !strings.Contains(body, "rolled back already") {
		t.Fatalf("second abort: %d %s, want 409", status, body)
	}
}

func TestConsoleConfigShowsTheDiffOfAReload(t *testing.T) {
	a := testutil.Named(t, "a")
	g := startGateway(t, onePool([]string{a}, ""))
	_, body, _ := get(t, g.admin+"/ui/config")
	if !strings.Contains(body, `<pre id="diff" class="empty">no previous config`) {
		t.Errorf("before any reload the diff says: %s", body[strings.Index(body, `<pre id="diff">`):])
	}
	b := testutil.Named(t, "b")
	replaceFile(t, g.path, onePool([]string{a, b}, "    timeout: 3s\n"))
	if _, err := g.Reload("test"); err != nil {
		t.Fatal(err)
	}
	_, body, _ = get(t, g.admin+"/ui/config")
	body = html.UnescapeString(body) // html/template writes '+' as &#43;
	for _, want := range []string{
		`<th scope="row">generation</th><td>2</td>`,
		`<span class="del">-  p: {backends: [` + a + `], timeout: 2s}</span>`,
		`<span class="add">+  p: {backends: [` + a + `, ` + b + `], timeout: 2s}</span>`,
		`<span class="add">+    timeout: 3s</span>`,
		`From generation 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("config page lacks %q:\n%s", want, body[strings.Index(body, `<main`):])
		}
	}

	// A rejected file shows as the last error, with its line.
	replaceFile(t, g.path, onePool([]string{a}, "    nosuchkey: 1\n"))
	if _, err := g.Reload("test"); err == nil {
		t.Fatal("a config with an unknown key was applied")
	}
	_, body, _ = get(t, g.admin+"/ui/config")
	if !strings.Contains(body, `<ul class="errors">`) || !strings.Contains(body, "nosuchkey") {
		t.Errorf("config page lacks the last error:\n%s", body[strings.Index(body, `<main`):])
	}
}

// TestConsoleButtonWithoutJavaScript: a rollout button pressed in a
// browser without JavaScript posts its form; the API sends the browser
// back to the rollouts page, whose flash line says what happened.
func TestConsoleButtonWithoutJavaScript(t *testing.T) {
	g := startGateway(t, uiConfig(t, `, token: secret`))
	noFollow := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	post := func(action string) *http.Response {
		req, _ := http.NewRequest("POST", g.admin+"/admin/rollouts/iris/"+action, strings.NewReader(""))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Cookie", "sluice_admin=secret")
		req.Header.Set("Origin", g.admin)
		resp, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	for _, tc := range []struct{ action, flash string }{
		{"pause", "iris: pause → paused"},
		{"pause", "iris: pause: "}, // already paused: the API's reason follows
	} {
		resp := post(tc.action)
		where := resp.Header.Get("Location")
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(where, "/ui/rollouts?flash=") {
			t.Fatalf("form post %s: %d to %q, want 303 to the rollouts page", tc.action, resp.StatusCode, where)
		}
		_, page, _ := get(t, g.admin+where, "Cookie", "sluice_admin=secret")
		flash := regexp.MustCompile(`<div id="flash"[^>]*>([^<]*)</div>`).FindStringSubmatch(html.UnescapeString(page))
		if flash == nil || !strings.HasPrefix(flash[1], tc.flash) {
			t.Errorf("after %s the flash line reads %q, want it to start with %q", tc.action, flash, tc.flash)
		}
	}
}
