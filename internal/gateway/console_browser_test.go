package gateway

// The operator console at /ui/ in a real browser: Debian's chromium,
// headless, driven over the DevTools protocol by chromedp. These tests read
// the console's HTML contract (ids, classes and data attributes on its
// tables and buttons), never its layout, so a restyled console passes as
// long as the contract holds. Each page is also photographed at a desktop and
// a phone width into an artifact folder, for a person to look at.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image/png"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// consolePage is one console page and what its HTML contract promises.
type consolePage struct {
	name      string   // in the screenshot's file name
	path      string   // under the admin listener
	principal string   // the page's principal table: at least one body row
	also      []string // selectors that must each match something
}

var consolePages = []consolePage{
	{"overview", "/ui/", "#routes", []string{
		`#routes tbody tr[data-route="experiment"][data-variant="control"] td.share`,
		`#routes tbody tr[data-route][data-variant] td.rps`,
		`#routes tbody tr[data-route][data-variant] td.errors`,
		`#routes tbody tr[data-route][data-variant] td.p50`,
		`#routes tbody tr[data-route][data-variant] td.p99`,
		`#backends tbody tr[data-pool][data-backend]`,
	}},
	{"shadow", "/ui/shadow", "#shadow", []string{`#shadow tbody tr[data-route="mirrored"]`}},
	{"experiments", "/ui/experiments", "#experiments", nil},
	{"rollouts", "/ui/rollouts", "#rollouts", []string{
		`#rollouts tbody tr[data-rollout="canary"] td.state`,
		`button[data-route="canary"][data-action="abort"]`,
		`#flash`,
	}},
	{"config", "/ui/config", "#config", []string{`pre#diff`}},
}

// The two viewports every page is loaded and photographed at.
var consoleViewports = []struct{ width, height int64 }{{1280, 800}, {390, 844}}

// browserTabTimeout bounds one subtest's tab: a console that never answers,
// or a selector that never matches, fails the subtest instead of hanging
// the suite until go test's own timeout.
const browserTabTimeout = 60 * time.Second

// consoleConfig is a gateway with something on every console page: a
// 90/10 split without a sticky key (the experiment), a canary that stays
// progressing for the test's length (an hour's interval), and a route
// mirrored in full to a shadow pool. adminExtra is appended inside the
// admin block (", token: T").
func consoleConfig(t *testing.T, adminExtra string) string {
	t.Helper()
	model := func() string { return fakeModel(t, 0, 0) }
	return fmt.Sprintf(`
server: {listen: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"%s}
pools:
  control:   {backends: [%q, %q], timeout: 2s}
  treatment: {backends: [%q, %q], timeout: 2s}
  stable:    {backends: [%q], timeout: 2s}
  candidate: {backends: [%q], timeout: 2s}
  primary:   {backends: [%q], timeout: 2s}
  mirror:    {backends: [%q], timeout: 2s}
routes:
  - name: experiment
    match: {path_prefix: /experiment}
    split:
      variants:
        - {name: control, pool: control, weight: 90}
        - {name: treatment, pool: treatment, weight: 10}
  - name: canary
    match: {path_prefix: /canary}
    canary:
      stable: stable
      candidate: candidate
      steps: [10, 100]
      interval: 1h
  - name: mirrored
    match: {path_prefix: /mirrored}
    pool: primary
    shadow: {pool: mirror, percent: 100}
`, adminExtra, model(), model(), model(), model(), model(), model(), model(), model())
}

// consoleTraffic sends splitRequests to the split route (from 4 clients;
// an unsticky split is exact per window of 100, so 2,000 land 1,800/200)
// and 50 to each of the other two routes, every one of which must be 200.
func consoleTraffic(t *testing.T, g *testGateway, splitRequests int) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	defer client.CloseIdleConnections()
	post := func(path string) error {
		resp, err := client.Post(g.url+path, "application/json", strings.NewReader(`{"input":[5.1,3.5,1.4,0.2]}`))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("POST %s: %d", path, resp.StatusCode)
		}
		return nil
	}
	const clients = 4
	errs := make([]error, clients)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for i := c; i < splitRequests; i += clients {
				if err := post("/experiment/predict"); err != nil {
					errs[c] = err
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for range 50 {
		for _, path := range []string{"/canary/predict", "/mirrored/predict"} {
			if err := post(path); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// findChromium returns Debian's chromium, or another name it goes by. No
// browser is a failure, not a skip: CI installs it, and a skipped test
// would pass a broken console unseen.
func findChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	t.Fatal("no chromium on PATH (tried chromium, chromium-browser, google-chrome): `make test` installs Debian's chromium (scripts/deps.sh chromium=chromium)")
	return ""
}

// startBrowser launches a headless chromium for the test and returns its
// browser context; tabs are opened from it with openTab. The process, and
// its temporary profile, go away when the test ends; within bounds the
// whole test, a hung browser included.
func startBrowser(t *testing.T, within time.Duration) context.Context {
	t.Helper()
	chromium := findChromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.Flag("headless", "new"),
		chromedp.NoSandbox, // root in a container has no user namespace to sandbox with
		chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true), // a container's /dev/shm is often 64 MB
	)
	// Its own process group, so that its helpers (zygote, renderers, GPU
	// process) can be killed with it rather than left to notice their
	// parent is gone; and killed with the test binary should that die
	// first (chromedp's own default, which this replaces).
	var cmd *exec.Cmd
	opts = append(opts, chromedp.ModifyCmdFunc(func(c *exec.Cmd) {
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		cmd = c
	}))
	deadline, cancelDeadline := context.WithTimeout(context.Background(), within)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(deadline, opts...)
	browserCtx, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		// Cancelling the allocator kills chromium and waits for it to
		// exit; then whatever is left of its group goes too.
		cancelBrowser()
		cancelAlloc()
		cancelDeadline()
		if cmd != nil && cmd.Process != nil {
			killGroup(cmd.Process.Pid)
		}
	})
	// The first Run starts the process, which lives as long as the context
	// given to it: this must be the browser context itself, not a
	// shorter-lived one.
	if err := chromedp.Run(browserCtx); err != nil {
		t.Fatalf("start %s: %v", chromium, err)
	}
	return browserCtx
}

// killGroup kills what is left of process group pgid. Not waited for:
// SIGKILL cannot be caught, and reaping the dead (their parent is gone) is
// init's work, which can take a second in a container.
func killGroup(pgid int) {
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// tab is one browser tab with what it saw: console errors, uncaught
// exceptions and error log entries (problems), requests to any host but the
// admin listener's (foreign), and JavaScript dialogs, which it accepts so a
// confirm() on a button cannot stall the page.
type tab struct {
	ctx       context.Context
	adminHost string

	mu       sync.Mutex
	problems []string
	foreign  []string
	dialogs  []string
}

// openTab opens a tab in browser for the running subtest, closed at its end.
func openTab(t *testing.T, browser context.Context, adminHost string) *tab {
	t.Helper()
	ctx, closeTab := chromedp.NewContext(browser)
	ctx, cancel := context.WithTimeout(ctx, browserTabTimeout)
	t.Cleanup(func() { cancel(); closeTab() })
	tb := &tab{ctx: ctx, adminHost: adminHost}
	chromedp.ListenTarget(ctx, tb.observe)
	// Open the tab now, with the runtime, log and network domains enabled,
	// so that the listener sees the first navigation's events.
	if err := chromedp.Run(ctx); err != nil {
		t.Fatalf("open tab: %v", err)
	}
	return tb
}

func (tb *tab) observe(ev any) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.APITypeError || ev.Type == runtime.APITypeAssert {
			var args []string
			for _, arg := range ev.Args {
				if len(arg.Value) > 0 {
					args = append(args, string(arg.Value))
				} else {
					args = append(args, arg.Description)
				}
			}
			tb.problems = append(tb.problems, "console."+string(ev.Type)+": "+strings.Join(args, " "))
		}
	case *runtime.EventExceptionThrown:
		tb.problems = append(tb.problems, "uncaught "+ev.ExceptionDetails.Error())
	case *log.EventEntryAdded:
		// The browser's own errors: a resource that failed to load, a
		// Content-Security-Policy violation.
		if ev.Entry.Level == log.LevelError {
			tb.problems = append(tb.problems, fmt.Sprintf("%s error: %s (%s)", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL))
		}
	case *network.EventRequestWillBeSent:
		u, err := url.Parse(ev.Request.URL)
		if err != nil || (u.Scheme != "data" && u.Host != tb.adminHost) {
			tb.foreign = append(tb.foreign, ev.Request.URL)
		}
	case *page.EventJavascriptDialogOpening:
		tb.dialogs = append(tb.dialogs, string(ev.Type)+": "+ev.Message)
		// Not from here: a listener must not block on the tab it listens to.
		go func() { _ = chromedp.Run(tb.ctx, page.HandleJavaScriptDialog(true)) }()
	}
}

// check fails t with every problem and foreign request seen so far.
func (tb *tab) check(t *testing.T) {
	t.Helper()
	tb.mu.Lock()
	defer tb.mu.Unlock()
	for _, p := range tb.problems {
		t.Errorf("browser: %s", p)
	}
	for _, u := range tb.foreign {
		t.Errorf("request to %s: the console may load nothing but from the admin listener %s", u, tb.adminHost)
	}
	if len(tb.dialogs) > 0 {
		t.Logf("dialogs accepted: %q", tb.dialogs)
	}
}

// run runs actions in the tab, failing t with what for context.
func (tb *tab) run(t *testing.T, what string, actions ...chromedp.Action) {
	t.Helper()
	if err := chromedp.Run(tb.ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// load navigates to address and waits for the console's main table: a page
// that does not answer 200 fails at once, one that never shows
// "#main table.data" within 10 s fails with what it shows instead.
func (tb *tab) load(t *testing.T, address string, width, height int64) {
	t.Helper()
	resp, err := chromedp.RunResponse(tb.ctx, chromedp.EmulateViewport(width, height), chromedp.Navigate(address))
	if err != nil {
		t.Fatalf("load %s: %v", address, err)
	}
	if resp.Status != http.StatusOK {
		t.Fatalf("load %s: %d %s: %s", address, resp.Status, resp.StatusText, tb.outerHTML(t, "body"))
	}
	ctx, cancel := context.WithTimeout(tb.ctx, 10*time.Second)
	defer cancel()
	if err := chromedp.Run(ctx, chromedp.WaitReady("#main table.data", chromedp.ByQuery)); err != nil {
		t.Fatalf("load %s: no #main table.data (%v): %s", address, err, tb.outerHTML(t, "body"))
	}
}

// waitJS evaluates expr in tab every 50 ms until ok accepts its value or
// within passes, and returns the last value and whether ok accepted it.
func waitJS[T any](t *testing.T, tb *tab, expr string, within time.Duration, ok func(T) bool) (T, bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		v := evalJS[T](t, tb, expr)
		if ok(v) {
			return v, true
		}
		if time.Now().After(deadline) {
			return v, false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// evalJS evaluates expr in tab once.
func evalJS[T any](t *testing.T, tb *tab, expr string) T {
	t.Helper()
	var v T
	tb.run(t, "evaluate "+expr, chromedp.Evaluate(expr, &v))
	return v
}

// outerHTML is selector's first match as HTML, cut to a readable length,
// for failure messages.
func (tb *tab) outerHTML(t *testing.T, selector string) string {
	t.Helper()
	var html string
	tb.run(t, "read "+selector, chromedp.Evaluate(
		fmt.Sprintf(`(document.querySelector(%q) || {outerHTML: "(no %s)"}).outerHTML`, selector, selector), &html))
	if len(html) > 2000 {
		html = html[:2000] + "..."
	}
	return html
}

// countJS is an expression counting selector's matches.
func countJS(selector string) string {
	return fmt.Sprintf(`document.querySelectorAll(%q).length`, selector)
}

// artifactDir is where the screenshots go: $SLUICE_TEST_ARTIFACTS, or
// test-artifacts/console at the repository's root, kept after the test for
// a person (or CI) to look at.
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("SLUICE_TEST_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "..", "test-artifacts", "console")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	return dir
}

// checkNotBlank fails t unless shot is a PNG with more than one colour: a
// page that rendered nothing photographs as a single flat frame.
func checkNotBlank(t *testing.T, shot []byte) {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	b := img.Bounds()
	first := img.At(b.Min.X, b.Min.Y)
	r0, g0, b0, a0 := first.RGBA()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			if r, g, bl, a := img.At(x, y).RGBA(); r != r0 || g != g0 || bl != b0 || a != a0 {
				return
			}
		}
	}
	t.Fatalf("screenshot %dx%d is a single colour: the page rendered nothing", b.Dx(), b.Dy())
}

func TestConsoleInBrowser(t *testing.T) {
	browser := startBrowser(t, 5*time.Minute)
	g := startGateway(t, consoleConfig(t, ""))
	consoleTraffic(t, g, 2000)
	adminHost := g.AdminAddr()
	artifacts := artifactDir(t)
	t.Logf("screenshots in %s", artifacts)

	// First, while the traffic is inside the overview's window (its last
	// minute).
	t.Run("overview-shows-the-split", func(t *testing.T) {
		tb := openTab(t, browser, adminHost)
		tb.load(t, g.admin+"/ui/", 1280, 800)
		want := map[string]float64{"control": 90, "treatment": 10}
		shares := func(cells map[string]string) bool {
			for variant, w := range want {
				got, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(cells[variant]), "%"), 64)
				if err != nil || math.Abs(got-w) > 2 {
					return false
				}
			}
			return true
		}
		// Up to 3 s: the numbers may arrive with a live refresh.
		cells, ok := waitJS(t, tb, `Object.fromEntries(Array.from(
			document.querySelectorAll('#routes tbody tr[data-route="experiment"][data-variant]'),
			tr => [tr.dataset.variant, (tr.querySelector("td.share") || {textContent: ""}).textContent]))`,
			3*time.Second, shares)
		if !ok {
			t.Errorf("share cells %q, want within 2 points of 90.0%% and 10.0%%; #routes: %s", cells, tb.outerHTML(t, "#routes"))
		}
		tb.check(t)
	})

	for _, vp := range consoleViewports {
		for _, p := range consolePages {
			t.Run(fmt.Sprintf("%s-%dx%d", p.name, vp.width, vp.height), func(t *testing.T) {
				tb := openTab(t, browser, adminHost)
				tb.load(t, g.admin+p.path, vp.width, vp.height)
				var title string
				tb.run(t, "title", chromedp.Title(&title))
				if !strings.HasPrefix(title, "Sluice") {
					t.Errorf("title %q, want it to start with Sluice", title)
				}
				rows := p.principal + " tbody tr"
				if n, ok := waitJS(t, tb, countJS(rows), 2*time.Second, func(n int) bool { return n > 0 }); !ok {
					t.Errorf("%s: %d rows; the table: %s", rows, n, tb.outerHTML(t, p.principal))
				}
				for _, sel := range p.also {
					if evalJS[int](t, tb, countJS(sel)) == 0 {
						t.Errorf("nothing matches %s; #main: %s", sel, tb.outerHTML(t, "#main"))
					}
				}
				var nav []string
				tb.run(t, "read #nav", chromedp.Evaluate(
					`Array.from(document.querySelectorAll("#nav a[href]"), a => new URL(a.href).pathname)`, &nav))
				for _, other := range consolePages {
					if !slices.Contains(nav, other.path) {
						t.Errorf("#nav links %q, not %s", nav, other.path)
					}
				}
				// Past one live refresh of main, so that its script's
				// errors and requests are seen too.
				time.Sleep(1500 * time.Millisecond)
				if evalJS[int](t, tb, countJS(rows)) == 0 {
					t.Errorf("%s: no rows after a refresh; the table: %s", rows, tb.outerHTML(t, p.principal))
				}

				var shot []byte
				tb.run(t, "screenshot", chromedp.FullScreenshot(&shot, 100)) // 100: PNG
				name := filepath.Join(artifacts, fmt.Sprintf("%s-%dx%d.png", p.name, vp.width, vp.height))
				if err := os.WriteFile(name, shot, 0o644); err != nil {
					t.Fatal(err)
				}
				checkNotBlank(t, shot)
				tb.check(t)
			})
		}
	}

	t.Run("rollouts-abort-button", func(t *testing.T) {
		tb := openTab(t, browser, adminHost)
		const row = `#rollouts tr[data-rollout="canary"]`
		stateJS := fmt.Sprintf(`(document.querySelector(%q) || {textContent: ""}).textContent.trim()`, row+" td.state")
		tb.load(t, g.admin+"/ui/rollouts", 1280, 800)
		if state := evalJS[string](t, tb, stateJS); state != "progressing" {
			t.Fatalf("before the click the canary is %q, want progressing; the row: %s", state, tb.outerHTML(t, row))
		}
		tb.run(t, "click abort", chromedp.Click(`button[data-route="canary"][data-action="abort"]`, chromedp.ByQuery))
		if state, ok := waitJS(t, tb, stateJS, 2*time.Second, func(s string) bool { return s == "rolled_back" }); !ok {
			t.Errorf("2 s after abort the page shows %q, want rolled_back; the row: %s; #flash: %s",
				state, tb.outerHTML(t, row), tb.outerHTML(t, "#flash"))
		}
		var v struct {
			Rollouts []rolloutView `json:"rollouts"`
		}
		adminJSON(t, g.admin+"/admin/rollouts", &v)
		found := false
		for _, r := range v.Rollouts {
			if r.Route != "canary" {
				continue
			}
			found = true
			if r.State != "rolled_back" {
				t.Errorf("/admin/rollouts says %s after the click, want rolled_back", r.State)
			}
			if last := r.History[len(r.History)-1]; last.Event != "rolled_back" || last.By != "operator" {
				t.Errorf("last rollout event %+v, want the operator's rollback", last)
			}
		}
		if !found {
			t.Errorf("/admin/rollouts has no canary: %+v", v)
		}
		tb.check(t)
	})
}

// TestConsoleBrowserToken: with an admin token the console is closed to a
// plain request, and the link an operator is given, /ui/?token=T, trades
// the token for an HttpOnly cookie and lands on the overview.
func TestConsoleBrowserToken(t *testing.T) {
	browser := startBrowser(t, 2*time.Minute)
	g := startGateway(t, consoleConfig(t, `, token: secret`))
	consoleTraffic(t, g, 100)

	if status, body, _ := get(t, g.admin+"/ui/"); status != http.StatusUnauthorized {
		t.Fatalf("GET /ui/ without the token: %d %.200s, want 401", status, body)
	}

	tb := openTab(t, browser, g.AdminAddr())
	tb.load(t, g.admin+"/ui/?token=secret", 1280, 800)
	var location string
	tb.run(t, "location", chromedp.Location(&location))
	if location != g.admin+"/ui/" {
		t.Errorf("landed on %s, want %s/ui/ (the token out of the address bar)", location, g.admin)
	}
	if n, ok := waitJS(t, tb, countJS("#routes tbody tr"), 2*time.Second, func(n int) bool { return n > 0 }); !ok {
		t.Errorf("#routes has %d rows; #main: %s", n, tb.outerHTML(t, "#main"))
	}
	var cookies []*network.Cookie
	tb.run(t, "cookies", chromedp.ActionFunc(func(ctx context.Context) error {
		var err error
		cookies, err = network.GetCookies().WithURLs([]string{g.admin + "/ui/"}).Do(ctx)
		return err
	}))
	httpOnly := false
	for _, c := range cookies {
		httpOnly = httpOnly || c.HTTPOnly
	}
	if !httpOnly {
		t.Errorf("no HttpOnly cookie for /ui/ after the token link: %+v", cookies)
	}
	// Past one live refresh: it too must be authorised by the cookie.
	time.Sleep(1500 * time.Millisecond)
	if evalJS[int](t, tb, countJS("#routes tbody tr")) == 0 {
		t.Errorf("no rows after a refresh; #main: %s", tb.outerHTML(t, "#main"))
	}
	tb.check(t)
}
