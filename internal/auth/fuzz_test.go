package auth

import (
	"bytes"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/sluice-gw/sluice/internal/config"
)

// FuzzJWTVerify feeds the verifier tokens built from a valid one: cut,
// spliced, re-headed, garbage. None may panic, and whatever is accepted
// must carry exactly the claims that were signed: changing what a token
// says without the key must never pass.
func FuzzJWTVerify(f *testing.F) {
	m := jwtTestKeys()
	cfg := config.JWT{JWKSFile: "k.json", Algorithms: []string{"RS256", "ES256"}, Issuer: jwtTestIssuer, Audience: jwtTestAudience}
	v := jwtMustVerifier(f, cfg, m.jwks)
	signed := jwtSign(f, jose.RS256, m.rsa, "rsa1", jwtClaims(nil))
	who, err := v.Verify([]byte(signed), jwtTestNow)
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(signed))
	f.Add([]byte(jwtSign(f, jose.ES256, m.ec, "ec1", jwtClaims(nil))))
	f.Add([]byte(jwtSign(f, jose.HS256, m.secret, "rsa1", jwtClaims(nil))))
	f.Add([]byte("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."))
	f.Add([]byte("a.b.c"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, token []byte) {
		got, err := v.Verify(token, jwtTestNow)
		if err != nil {
			if _, ok := err.(*TokenError); !ok {
				t.Fatalf("refusal is %T, want *TokenError", err)
			}
			return
		}
		if got.Name != who.Name || !bytes.Equal(got.Claims, who.Claims) {
			t.Fatalf("accepted a token that says something else: %q", got.Claims)
		}
	})
}

// FuzzParseKeys: a keys file of any content parses or is refused with
// problems; it never panics, and a parsed set never holds a key without
// a name.
func FuzzParseKeys(f *testing.F) {
	f.Add([]byte("keys:\n  - {name: a, sha256: " + Digest("x") + ", routes: [iris], rate_limit: {rate: 10/s, burst: 5}}\n"))
	f.Add([]byte("keys: []\n"))
	f.Add([]byte("keys:\n  - name: a\n    sha256: zz\n"))
	f.Add([]byte("{"))
	f.Fuzz(func(t *testing.T, data []byte) {
		set, err := ParseKeys(data)
		if err != nil {
			return
		}
		for _, k := range set.Keys() {
			if k.Name == "" {
				t.Fatalf("parsed a key without a name from %q", data)
			}
		}
	})
}
