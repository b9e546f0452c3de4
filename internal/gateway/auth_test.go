package gateway

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/valyala/fasthttp"

	"github.com/sluice-gw/sluice/internal/auth"
	"github.com/sluice-gw/sluice/internal/testutil"
)

// seenBackend answers with what it was sent: the identity header and
// whether any credential reached it.
func seenBackend(t *testing.T) string {
	return testutil.Backend(t, func(ctx *fasthttp.RequestCtx) {
		h := &ctx.Request.Header
		b, _ := json.Marshal(map[string]any{
			"identity":      string(h.Peek("X-Sluice-Identity")),
			"authorization": string(h.Peek("Authorization")),
			"api_key":       string(h.Peek("X-API-Key")),
			"method":        string(h.Method()),
		})
		ctx.SetContentType("application/json")
		ctx.SetBody(b)
	})
}

type seen struct {
	Identity      string `json:"identity"`
	Authorization string `json:"authorization"`
	APIKey        string `json:"api_key"`
	Method        string `json:"method"`
}

// authKeys are the plain keys of a test's keys file.
type authKeys struct {
	teamA, teamB, revoked, slow, fast string
}

// writeKeysFile writes a keys file holding the digests of keys, less
// those left out.
func writeKeysFile(t *testing.T, path string, k authKeys, leaveOut ...string) {
	t.Helper()
	var b strings.Builder
	b.WriteString("keys:\n")
	for _, e := range []struct{ name, key, extra string }{
		{"team-a", k.teamA, "routes: [keys]"},
		{"team-b", k.teamB, "routes: [other]"},
		{"to-revoke", k.revoked, "tags: [api]"},
		{"slow", k.slow, "rate_limit: {rate: 1/h, burst: 3}"},
		{"fast", k.fast, "rate_limit: {rate: 1/h, burst: 7}"},
	} {
		if strings.Contains(strings.Join(leaveOut, ","), e.name) {
			continue
		}
		fmt.Fprintf(&b, "  - {name: %s, sha256: %s, %s}\n", e.name, auth.Digest(e.key), e.extra)
	}
	replaceFile(t, path, b.String())
}

func newKey(t *testing.T) string {
	t.Helper()
	k, _, err := auth.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// signer signs test tokens.
type signer struct {
	t   *testing.T
	key any
	alg jose.SignatureAlgorithm
	kid string
}

func (s signer) token(claims map[string]any) string {
	s.t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if s.kid != "" {
		opts = opts.WithHeader("kid", s.kid)
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: s.alg, Key: s.key}, opts)
	if err != nil {
		s.t.Fatal(err)
	}
	tok, err := jwt.Signed(sig).Claims(claims).Serialize()
	if err != nil {
		s.t.Fatal(err)
	}
	return tok
}

// claims are a valid token's claims for the test's jwt block.
func claims(sub string, edit func(map[string]any)) map[string]any {
	now := time.Now()
	c := map[string]any{"sub": sub, "iss": "https://id.example", "aud": "sluice", "scope": "read predict",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	if edit != nil {
		edit(c)
	}
	return c
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// TestAuthOutcomes is every answer auth can give, through a running
// gateway: API keys (missing, wrong, revoked while running, for another
// route, valid) and JWTs (expired, wrong signature, wrong audience,
// unsigned, HMAC-signed with the public key, missing scope, valid).
func TestAuthOutcomes(t *testing.T) {
	dir := t.TempDir()
	keysPath := filepath.Join(dir, "keys.yaml")
	auditPath := filepath.Join(dir, "audit.jsonl")
	k := authKeys{teamA: newKey(t), teamB: newKey(t), revoked: newKey(t), slow: newKey(t), fast: newKey(t)}
	writeKeysFile(t, keysPath, k)

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &rsaKey.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	jwksPath := testutil.WriteFile(t, dir, "jwks.json", string(jwks))
	pubDER, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	otherRSA, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)

	backend := seenBackend(t)
	g := startGateway(t, fmt.Sprintf(`
server:
  listen: "127.0.0.1:0"
  audit: {file: %q, sample_allowed: 1}
admin: {listen: "127.0.0.1:0"}
pools:
  p: {backends: [%q]}
routes:
  - name: keys
    match: {path_prefix: /keys}
    strip_prefix: /keys
    pool: p
    tags: [api]
    auth: {api_keys: {keys_file: %q}}
  - name: other
    match: {path_prefix: /other}
    pool: p
    auth: {api_keys: {keys_file: %q}}
  - name: tokens
    match: {path_prefix: /tokens}
    pool: p
    auth:
      jwt: {jwks_file: %q, issuer: "https://id.example", audience: sluice, require: {scope: predict}}
  - name: public
    match: {path_prefix: /}
    pool: p
`, auditPath, backend, keysPath, keysPath, jwksPath))

	good := signer{t, rsaKey, jose.RS256, "k1"}
	unsigned := b64(`{"alg":"none","typ":"JWT"}`) + "." + b64(fmt.Sprintf(`{"sub":"mallory","iss":"https://id.example","aud":"sluice","scope":"predict","exp":%d}`, time.Now().Add(time.Hour).Unix())) + "."
	cases := []struct {
		name, path string
		headers    []string
		status     int
		code       string // the error code of a refusal
		challenge  string // part of WWW-Authenticate on a 401
		identity   string // what the backend is told on a 200
	}{
		{"no key", "/keys", nil, 401, "unauthorized", `APIKey realm="sluice", header="X-API-Key"`, ""},
		{"wrong key", "/keys", []string{"X-API-Key", "sk_wrong"}, 401, "unauthorized", "APIKey", ""},
		{"key for another route", "/other", []string{"X-API-Key", k.teamA}, 403, "forbidden", "", ""},
		{"valid key", "/keys", []string{"X-API-Key", k.teamA}, 200, "", "", "team-a"},
		{"key by route tag", "/keys", []string{"X-API-Key", k.revoked}, 200, "", "", "to-revoke"},
		{"no token", "/tokens", nil, 401, "unauthorized", `Bearer realm="sluice"`, ""},
		{"expired token", "/tokens", []string{"Authorization", "Bearer " + good.token(claims("alice", func(c map[string]any) {
			c["exp"] = time.Now().Add(-10 * time.Minute).Unix()
		}))}, 401, "unauthorized", `error="invalid_token"`, ""},
		{"wrong signature", "/tokens", []string{"Authorization", "Bearer " + signer{t, otherRSA, jose.RS256, "k1"}.token(claims("alice", nil))}, 401, "unauthorized", "invalid_token", ""},
		{"wrong audience", "/tokens", []string{"Authorization", "Bearer " + good.token(claims("alice", func(c map[string]any) { c["aud"] = "someone-else" }))}, 401, "unauthorized", "invalid_token", ""},
		{"alg none", "/tokens", []string{"Authorization", "Bearer " + unsigned}, 401, "unauthorized", "invalid_token", ""},
		{"HS256 signed with the RS256 public key", "/tokens", []string{"Authorization", "Bearer " + signer{t, pubPEM, jose.HS256, "k1"}.token(claims("mallory", nil))}, 401, "unauthorized", "invalid_token", ""},
		{"ES256 token for an RS256 key id", "/tokens", []string{"Authorization", "Bearer " + signer{t, ecKey, jose.ES256, "k1"}.token(claims("mallory", nil))}, 401, "unauthorized", "invalid_token", ""},
		{"missing scope", "/tokens", []string{"Authorization", "Bearer " + good.token(claims("alice", func(c map[string]any) { c["scope"] = "read" }))}, 403, "forbidden", `error="insufficient_scope"`, ""},
		{"valid token", "/tokens", []string{"Authorization", "Bearer " + good.token(claims("alice", nil))}, 200, "", "", "alice"},
		{"public route drops a forged identity", "/", []string{"X-Sluice-Identity", "admin"}, 200, "", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, body, h := get(t, g.url+tc.path, tc.headers...)
			if status != tc.status {
				t.Fatalf("status %d, want %d: %s", status, tc.status, body)
			}
			if tc.status != 200 {
				if e := decodeError(t, []byte(body)); e.Error.Code != tc.code {
					t.Errorf("code %q, want %q", e.Error.Code, tc.code)
				}
				// RFC 6750 3.1: a 403 for a token's scope names it too.
				if got := h.Get("WWW-Authenticate"); (tc.status == 401 && got == "") || !strings.Contains(got, tc.challenge) {
					t.Errorf("WWW-Authenticate %q, want one containing %q", got, tc.challenge)
				}
				return
			}
			var s seen
			if err := json.Unmarshal([]byte(body), &s); err != nil {
				t.Fatal(err)
			}
			if s.Identity != tc.identity {
				t.Errorf("backend saw identity %q, want %q", s.Identity, tc.identity)
			}
			if s.Authorization != "" || s.APIKey != "" {
				t.Errorf("a credential reached the backend: %+v", s)
			}
		})
	}

	t.Run("decisions are counted", func(t *testing.T) {
		_, metrics, _ := get(t, g.admin+"/metrics")
		for _, want := range []string{
			`sluice_auth_decisions_total{decision="unauthorized",route="keys"} 2`,
			`sluice_auth_decisions_total{decision="forbidden",route="other"} 1`,
			`sluice_auth_decisions_total{decision="forbidden",route="tokens"} 1`,
			`sluice_auth_decisions_total{decision="allowed",route="tokens"} 1`,
		} {
			if !strings.Contains(metrics, want) {
				t.Errorf("metrics lack %s", want)
			}
		}
	})

	t.Run("revoked while running", func(t *testing.T) {
		if status, body, _ := get(t, g.url+"/keys", "X-API-Key", k.revoked); status != 200 {
			t.Fatalf("before revoking: %d %s", status, body)
		}
		writeKeysFile(t, keysPath, k, "to-revoke")
		revokedAt := time.Now()
		eventually(t, time.Second, "the removed key refused", func() bool {
			status, _, _ := get(t, g.url+"/keys", "X-API-Key", k.revoked)
			return status == 401
		})
		t.Logf("refused %v after the file changed", time.Since(revokedAt).Round(time.Millisecond))
		if status, _, _ := get(t, g.url+"/keys", "X-API-Key", k.teamA); status != 200 {
			t.Errorf("the keys left in the file stopped working: %d", status)
		}
	})

	t.Run("a broken keys file keeps the keys", func(t *testing.T) {
		replaceFile(t, keysPath, "keys:\n  - {name: x, sha256: not-a-digest}\n")
		eventually(t, 2*time.Second, "the broken file reported", func() bool {
			var v struct {
				Files []struct {
					Path      string `json:"path"`
					LastError string `json:"last_error"`
				} `json:"files"`
			}
			adminJSON(t, g.admin+"/admin/auth", &v)
			for _, f := range v.Files {
				if f.Path == keysPath && f.LastError != "" {
					return true
				}
			}
			return false
		})
		if status, _, _ := get(t, g.url+"/keys", "X-API-Key", k.teamA); status != 200 {
			t.Errorf("a broken keys file dropped the keys in force: %d", status)
		}
	})

	t.Run("no plain key in the keys file, audit log or admin API", func(t *testing.T) {
		writeKeysFile(t, keysPath, k)
		_, adminView, _ := get(t, g.admin+"/admin/auth")
		_, configView, _ := get(t, g.admin+"/admin/config")
		eventually(t, 2*time.Second, "audit lines written", func() bool {
			data, _ := os.ReadFile(auditPath)
			return strings.Count(string(data), "\n") >= len(cases)-1 // the public route has no auth
		})
		keysFile, _ := os.ReadFile(keysPath)
		auditLog, _ := os.ReadFile(auditPath)
		for where, text := range map[string]string{"keys file": string(keysFile), "audit log": string(auditLog), "/admin/auth": adminView, "/admin/config": configView} {
			for _, key := range []string{k.teamA, k.teamB, k.revoked, k.slow, k.fast, "sk_wrong"} {
				if strings.Contains(text, key) {
					t.Errorf("the %s holds a plain key", where)
				}
			}
			if where != "keys file" && strings.Contains(text, auth.Digest(k.teamA)) {
				t.Errorf("the %s shows a key's hash", where)
			}
		}
		for _, tc := range cases {
			for i := 0; i+1 < len(tc.headers); i += 2 {
				if tok := strings.TrimPrefix(tc.headers[i+1], "Bearer "); len(tok) > 20 && strings.Contains(string(auditLog), tok) {
					t.Errorf("the audit log holds the token of %q", tc.name)
				}
			}
		}
		var first struct {
			RequestID               string `json:"request_id"`
			ClientIP                string `json:"client_ip"`
			Route, Decision, Reason string
			Status                  int
		}
		line, _, _ := strings.Cut(string(auditLog), "\n")
		if err := json.Unmarshal([]byte(line), &first); err != nil {
			t.Fatalf("audit line is not JSON: %v: %q", err, line)
		}
		if first.Route != "keys" || first.Decision != "unauthorized" || first.Status != 401 || first.ClientIP != "127.0.0.1" || first.RequestID == "" || first.Reason == "" {
			t.Errorf("first audit line %+v, want the refused request without a key", first)
		}
		// sample_allowed: 1 writes every admitted request, with its answer.
		if !strings.Contains(string(auditLog), `"identity":"team-a","kind":"api_key","route":"keys","method":"GET","path":"/keys","decision":"allowed","status":200`) ||
			!strings.Contains(string(auditLog), `"identity":"alice","kind":"jwt","route":"tokens"`) {
			t.Errorf("no allowed lines for team-a and alice in the audit log:\n%s", auditLog)
		}
	})
}

// TestAuthPerKeyRateLimits: each key's own limit from the keys file
// admits that key's burst, whatever the other key does.
func TestAuthPerKeyRateLimits(t *testing.T) {
	dir := t.TempDir()
	keysPath := filepath.Join(dir, "keys.yaml")
	k := authKeys{teamA: newKey(t), teamB: newKey(t), revoked: newKey(t), slow: newKey(t), fast: newKey(t)}
	writeKeysFile(t, keysPath, k)
	g := startGateway(t, onePool([]string{okBackend(t)}, fmt.Sprintf(`    auth: {api_keys: {keys_file: %q}}`, keysPath)))
	admitted := map[string]int{}
	for range 10 {
		for name, key := range map[string]string{"slow": k.slow, "fast": k.fast} {
			status, _, h := get(t, g.url+"/x", "X-API-Key", key)
			switch status {
			case 200:
				admitted[name]++
			case 429:
				if h.Get("Retry-After") == "" || h.Get("RateLimit-Limit") == "" {
					t.Errorf("429 without Retry-After and RateLimit-Limit: %v", h)
				}
			default:
				t.Fatalf("key %s: status %d", name, status)
			}
		}
	}
	if admitted["slow"] != 3 || admitted["fast"] != 7 {
		t.Errorf("admitted %v, want slow 3 (its burst) and fast 7", admitted)
	}
	var v struct {
		Files []struct {
			Keys []struct {
				Name    string
				Limited int64
			}
		}
	}
	adminJSON(t, g.admin+"/admin/auth", &v)
	limited := map[string]int64{}
	for _, f := range v.Files {
		for _, key := range f.Keys {
			limited[key.Name] = key.Limited
		}
	}
	if limited["slow"] != 7 || limited["fast"] != 3 {
		t.Errorf("/admin/auth limited %v, want slow 7 and fast 3", limited)
	}
}

// TestCORSPreflight: the gateway answers preflights for allowed origins
// with the CORS headers, and other origins get none; answers to allowed
// origins carry Access-Control-Allow-Origin, their 401s too.
func TestCORSPreflight(t *testing.T) {
	dir := t.TempDir()
	key := newKey(t)
	keysPath := testutil.WriteFile(t, dir, "keys.yaml", "keys:\n  - {name: web, sha256: "+auth.Digest(key)+"}\n")
	backend := seenBackend(t)
	g := startGateway(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0", security_headers: true}
admin: {listen: "127.0.0.1:0"}
pools:
  p: {backends: [%q]}
routes:
  - name: iris
    match: {path_prefix: /v2/models/iris, methods: [POST]}
    pool: p
    auth: {api_keys: {keys_file: %q}}
    cors: {origins: ["https://app.example"], methods: [POST], headers: [Content-Type, X-User-Id, X-API-Key]}
  - name: rest
    match: {path_prefix: /}
    pool: p
`, backend, keysPath))
	url := g.url + "/v2/models/iris/infer"
	preflight := func(origin, method, headers string) (int, string, http.Header) {
		return send(t, "OPTIONS", url, "", "Origin", origin, "Access-Control-Request-Method", method, "Access-Control-Request-Headers", headers)
	}

	status, body, h := preflight("https://app.example", "POST", "content-type, x-user-id, x-api-key")
	if status != 204 || body != "" {
		t.Fatalf("preflight from an allowed origin: %d %q", status, body)
	}
	for name, want := range map[string]string{
		"Access-Control-Allow-Origin":  "https://app.example",
		"Access-Control-Allow-Methods": "POST",
		"Access-Control-Allow-Headers": "Content-Type, X-User-Id, X-API-Key",
		"Access-Control-Max-Age":       "600",
	} {
		if got := h.Get(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	if h.Get("Access-Control-Allow-Credentials") != "" {
		t.Error("credentials allowed without cors.credentials")
	}

	for _, tc := range []struct{ name, origin, method, headers string }{
		{"another origin", "https://evil.example", "POST", "content-type"},
		{"a method not allowed", "https://app.example", "DELETE", ""},
		{"a header not allowed", "https://app.example", "POST", "x-secret"},
	} {
		status, _, h := preflight(tc.origin, tc.method, tc.headers)
		for name := range h {
			if strings.HasPrefix(name, "Access-Control-") {
				t.Errorf("preflight with %s: %d with %s: %q", tc.name, status, name, h.Get(name))
			}
		}
	}

	// The real request: allowed origin marked, on success and on a 401;
	// another origin gets no CORS header, and the backend never saw a
	// preflight.
	status, body, h = send(t, "POST", url, "{}", "Origin", "https://app.example", "X-API-Key", key)
	var s seen
	if err := json.Unmarshal([]byte(body), &s); status != 200 || err != nil || s.Method != "POST" {
		t.Fatalf("request: %d %q", status, body)
	}
	if h.Get("Access-Control-Allow-Origin") != "https://app.example" || !strings.Contains(strings.Join(h.Values("Vary"), ","), "Origin") ||
		!strings.Contains(h.Get("Access-Control-Expose-Headers"), "X-Request-Id") {
		t.Errorf("answer to an allowed origin: %v", h)
	}
	if status, _, h := send(t, "POST", url, "{}", "Origin", "https://app.example"); status != 401 || h.Get("Access-Control-Allow-Origin") != "https://app.example" {
		t.Errorf("401 to an allowed origin: %d, Access-Control-Allow-Origin %q", status, h.Get("Access-Control-Allow-Origin"))
	}
	if _, _, h := send(t, "POST", url, "{}", "Origin", "https://evil.example", "X-API-Key", key); h.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("answer to another origin carries Access-Control-Allow-Origin %q", h.Get("Access-Control-Allow-Origin"))
	}

	// security_headers on every answer, the gateway's own too; no HSTS
	// over plain HTTP.
	for _, path := range []string{"/v2/models/iris/infer", "/anything"} {
		_, _, h := send(t, "POST", g.url+path, "{}")
		if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("X-Frame-Options") != "DENY" || h.Get("Strict-Transport-Security") != "" {
			t.Errorf("%s: security headers %v", path, h)
		}
	}
}

// TestIdentityKeySources: once a request is admitted, api_key and
// jwt:CLAIM are key sources like any other. A route rate limit keyed on
// api_key gives each key a bucket of its own, and a split sticky on
// jwt:sub keeps each caller on one variant, whatever else the request
// carries.
func TestIdentityKeySources(t *testing.T) {
	dir := t.TempDir()
	a, b := newKey(t), newKey(t)
	keysPath := testutil.WriteFile(t, dir, "keys.yaml", "keys:\n  - {name: a, sha256: "+auth.Digest(a)+"}\n  - {name: b, sha256: "+auth.Digest(b)+"}\n")
	const secret = "0123456789abcdef0123456789abcdef-identity"
	g := startGateway(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"}
pools:
  p1: {backends: [%q]}
  p2: {backends: [%q]}
routes:
  - name: limited
    match: {path_prefix: /limited}
    pool: p1
    auth: {api_keys: {keys_file: %q}}
    rate_limit: {key: api_key, rate: 1/h, burst: 2}
  - name: sticky
    match: {path_prefix: /sticky}
    auth: {jwt: {secret: %q}}
    split:
      sticky: jwt:sub
      variants:
        - {name: one, pool: p1, weight: 50}
        - {name: two, pool: p2, weight: 50}
`, okBackend(t), okBackend(t), keysPath, secret))

	admitted := map[string]int{}
	for range 4 {
		for name, key := range map[string]string{"a": a, "b": b} {
			if status, _, _ := get(t, g.url+"/limited", "X-API-Key", key); status == 200 {
				admitted[name]++
			}
		}
	}
	if admitted["a"] != 2 || admitted["b"] != 2 {
		t.Errorf("admitted %v, want 2 each: a bucket per key name", admitted)
	}

	hs := signer{t, []byte(secret), jose.HS256, ""}
	variants := map[string]map[string]bool{}
	for _, sub := range []string{"alice", "bob", "carol", "dave", "erin", "frank"} {
		variants[sub] = map[string]bool{}
		for i := range 5 {
			// A fresh token each time, and a varying header: only sub keys the split.
			tok := hs.token(claims(sub, func(c map[string]any) { c["jti"] = fmt.Sprint(i); delete(c, "aud"); delete(c, "iss") }))
			status, _, h := get(t, g.url+"/sticky", "Authorization", "Bearer "+tok, "X-User-Id", fmt.Sprint(i))
			if status != 200 {
				t.Fatalf("%s: status %d", sub, status)
			}
			variants[sub][h.Get("X-Sluice-Variant")] = true
		}
	}
	seen := map[string]bool{}
	for sub, vs := range variants {
		if len(vs) != 1 {
			t.Errorf("%s got variants %v, want one", sub, vs)
		}
		for v := range vs {
			seen[v] = true
		}
	}
	if len(seen) != 2 {
		t.Logf("six callers all landed on %v (possible, 1 in 32)", seen)
	}
}
