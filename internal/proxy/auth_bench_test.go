package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/valyala/fasthttp"

	"github.com/sluice-gw/sluice/internal/auth"
	"github.com/sluice-gw/sluice/internal/testutil"
)

// benchSecret is the HS256 secret of the benchmarks' jwt blocks.
const benchSecret = "0123456789abcdef0123456789abcdef"

// authBench is a route's auth block for a benchmark and the header a
// request that passes it carries.
type authBench struct {
	name, extra   string
	header, value string
}

// authBenches are the auth kinds, each with a valid credential: an API
// key among 1000 in its file, and tokens signed with each key type.
func authBenches(tb testing.TB) []authBench {
	tb.Helper()
	dir := tb.TempDir()
	key, _, err := auth.NewKey()
	if err != nil {
		tb.Fatal(err)
	}
	keys := "keys:\n"
	for i := range 999 {
		other, _, _ := auth.NewKey()
		keys += fmt.Sprintf("  - {name: key-%d, sha256: %s}\n", i, auth.Digest(other))
	}
	keys += "  - {name: bench, sha256: " + auth.Digest(key) + ", routes: [iris]}\n"
	keysFile := testutil.WriteFile(tb, dir, "keys.yaml", keys)

	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pemOf := func(pub any) string {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			tb.Fatal(err)
		}
		return testutil.WriteFile(tb, dir, fmt.Sprintf("%T.pem", pub), string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})))
	}
	token := func(alg jose.SignatureAlgorithm, key any) string {
		sig, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, (&jose.SignerOptions{}).WithType("JWT"))
		if err != nil {
			tb.Fatal(err)
		}
		now := time.Now()
		tok, err := jwt.Signed(sig).Claims(map[string]any{"sub": "user-0012345", "aud": "sluice", "scope": "predict",
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}).Serialize()
		if err != nil {
			tb.Fatal(err)
		}
		return "Bearer " + tok
	}
	jwtBlock := func(keys string) string {
		return "    auth: {jwt: {" + keys + ", audience: sluice, require: {scope: predict}}}\n"
	}
	return []authBench{
		{"api_key", "    auth: {api_keys: {keys_file: " + keysFile + "}}\n", "X-API-Key", key},
		{"jwt_hs256", jwtBlock("secret: " + benchSecret), "Authorization", token(jose.HS256, []byte(benchSecret))},
		{"jwt_rs256", jwtBlock("key_file: " + pemOf(&rsaKey.PublicKey) + ", algorithms: [RS256]"), "Authorization", token(jose.RS256, rsaKey)},
		{"jwt_es256", jwtBlock("key_file: " + pemOf(&ecKey.PublicKey) + ", algorithms: [ES256]"), "Authorization", token(jose.ES256, ecKey)},
	}
}

// BenchmarkAuthCheck is what authenticating costs a request, apart from
// the proxy round trip whose noise would hide it: for an API key, reading
// the header, hashing it (SHA-256), the lookup and the route check (the
// issue's budget: 300 ns); for a token, parsing and verifying it with the
// key parsed when the file loaded, and checking its claims.
func BenchmarkAuthCheck(b *testing.B) {
	addr := testutil.ClosedAddr(b)
	for _, bc := range authBenches(b) {
		b.Run(bc.name, func(b *testing.B) {
			route := newBenchProxy(b, addr, bc.extra).Snapshot().Routes[0]
			var ctx fasthttp.RequestCtx
			ctx.Request.Header.Set(bc.header, bc.value)
			now := time.Now()
			b.ReportAllocs()
			for b.Loop() {
				if v := route.auth.check(&ctx, now); v.fail.Status != 0 {
					b.Fatalf("refused: %s", v.reason)
				}
			}
		})
	}
}

// BenchmarkProxyAuth is the whole proxied request on a route with auth,
// beside the same route without: the difference is what auth adds,
// removing the credential and adding X-Sluice-Identity included.
func BenchmarkProxyAuth(b *testing.B) {
	addr := testutil.Backend(b, func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		ctx.SetBodyString(predictionJSON)
	})
	cases := append([]authBench{{name: "none"}}, authBenches(b)...)
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			req, ctx := predictRequest()
			if bc.header != "" {
				req.Header.Set(bc.header, bc.value)
			}
			benchProxied(b, newBenchProxy(b, addr, bc.extra), req, ctx)
		})
	}
}

// TestAPIKeyPathDoesNotAllocate: a request admitted by API key, its key
// removed and its identity added, costs no allocation more than a plain
// one (none).
func TestAPIKeyPathDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes what allocates; make test runs this test without it")
	}
	addr := testutil.Backend(t, func(ctx *fasthttp.RequestCtx) {
		if len(ctx.Request.Header.Peek("X-API-Key")) > 0 || string(ctx.Request.Header.Peek("X-Sluice-Identity")) != "bench" {
			ctx.SetStatusCode(fasthttp.StatusTeapot)
		}
		ctx.SetBodyString(predictionJSON)
	})
	bc := authBenches(t)[0]
	p := newBenchProxy(t, addr, bc.extra)
	req, ctx := predictRequest()
	req.Header.Set(bc.header, bc.value)
	proxied := func() {
		req.CopyTo(&ctx.Request)
		p.Handle(ctx)
		if ctx.Response.StatusCode() != 200 {
			t.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
		ctx.Response.Reset()
	}
	proxied()
	if n := testing.AllocsPerRun(200, proxied); n != 0 {
		t.Fatalf("%v allocations per request admitted by API key, want 0", n)
	}
}
