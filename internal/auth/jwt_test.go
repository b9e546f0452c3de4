package auth

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	jose "github.com/go-jose/go-jose/v4"

	"github.com/sluice-gw/sluice/internal/config"
)

// jwtTestNow is the clock every test verifies at.
var jwtTestNow = time.Unix(1_700_000_000, 0)

const (
	jwtTestIssuer   = "https://issuer.example"
	jwtTestAudience = "sluice"
	jwtTestLeeway   = 30 * time.Second
)

// jwtTestMaterial is the keys the tests sign with, and the files a
// gateway would be given for them. RSA keys are slow to make: once per
// test binary.
type jwtTestMaterial struct {
	rsa, otherRSA *rsa.PrivateKey
	ec            *ecdsa.PrivateKey
	ed            ed25519.PrivateKey
	secret        []byte
	rsaPEM        []byte // PKIX "PUBLIC KEY"
	rsaPKCS1PEM   []byte // "RSA PUBLIC KEY"
	rsaCertPEM    []byte // self-signed "CERTIFICATE"
	rsaDER        []byte // the PKIX bytes alone
	ecPEM         []byte
	edPEM         []byte
	jwks          []byte // rsa1 (RS256), ec1 (ES256), enc1 (use enc), bare (RSA, no kid or alg)
}

var jwtTestKeys = sync.OnceValue(func() *jwtTestMaterial {
	m := &jwtTestMaterial{secret: []byte("0123456789abcdef0123456789abcdef-test-secret")}
	var err error
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	m.rsa, err = rsa.GenerateKey(rand.Reader, 2048)
	must(err)
	m.otherRSA, err = rsa.GenerateKey(rand.Reader, 2048)
	must(err)
	m.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	m.rsaDER, err = x509.MarshalPKIXPublicKey(&m.rsa.PublicKey)
	must(err)
	m.rsaPEM = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: m.rsaDER})
	m.rsaPKCS1PEM = pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&m.rsa.PublicKey)})
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "issuer"}, NotBefore: jwtTestNow, NotAfter: jwtTestNow.Add(time.Hour)}
	certDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &m.rsa.PublicKey, m.rsa)
	must(err)
	m.rsaCertPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certDER})
	ecDER, err := x509.MarshalPKIXPublicKey(&m.ec.PublicKey)
	must(err)
	m.ecPEM = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: ecDER})
	edPub, ed, err := ed25519.GenerateKey(rand.Reader)
	must(err)
	m.ed = ed
	edDER, err := x509.MarshalPKIXPublicKey(edPub)
	must(err)
	m.edPEM = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: edDER})
	m.jwks, err = json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: &m.rsa.PublicKey, KeyID: "rsa1", Algorithm: "RS256", Use: "sig"},
		{Key: &m.ec.PublicKey, KeyID: "ec1", Algorithm: "ES256", Use: "sig"},
		{Key: &m.otherRSA.PublicKey, KeyID: "enc1", Algorithm: "RSA-OAEP", Use: "enc"},
	}})
	must(err)
	return m
})

// jwtSign signs claims (a map, or raw payload bytes) as a compact JWS.
func jwtSign(t testing.TB, alg jose.SignatureAlgorithm, key any, kid string, claims any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader(jose.HeaderKey("kid"), kid)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatalf("signer: %v", err)
	}
	payload, ok := claims.([]byte)
	if !ok {
		if payload, err = json.Marshal(claims); err != nil {
			t.Fatal(err)
		}
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	token, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return token
}

// jwtClaims are valid claims for jwtTestNow, changed by edit.
func jwtClaims(edit func(c map[string]any)) map[string]any {
	c := map[string]any{
		"sub": "alice",
		"iss": jwtTestIssuer,
		"aud": jwtTestAudience,
		"exp": jwtTestNow.Add(time.Hour).Unix(),
		"iat": jwtTestNow.Add(-time.Minute).Unix(),
	}
	if edit != nil {
		edit(c)
	}
	return c
}

// jwtUnsigned builds an alg none token by hand (go-jose will not sign one).
func jwtUnsigned(claims map[string]any) string {
	payload, _ := json.Marshal(claims)
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc(payload) + "."
}

func jwtMustVerifier(t testing.TB, cfg config.JWT, keyData []byte) *Verifier {
	t.Helper()
	if cfg.Leeway == 0 {
		cfg.Leeway = config.Duration(jwtTestLeeway)
	}
	v, err := NewVerifier(&cfg, keyData)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	return v
}

func TestJWTVerify(t *testing.T) {
	m := jwtTestKeys()
	checked := config.JWT{Issuer: jwtTestIssuer, Audience: jwtTestAudience}
	with := func(cfg config.JWT, edit func(*config.JWT)) config.JWT {
		edit(&cfg)
		return cfg
	}
	jwks := jwtMustVerifier(t, with(checked, func(c *config.JWT) { c.JWKSFile, c.Algorithms = "keys.json", []string{"RS256", "ES256"} }), m.jwks)
	jwksPS := jwtMustVerifier(t, with(checked, func(c *config.JWT) { c.JWKSFile, c.Algorithms = "keys.json", []string{"RS256", "PS256"} }), m.jwks)
	pemRSA := jwtMustVerifier(t, with(checked, func(c *config.JWT) { c.KeyFile, c.Algorithms = "key.pem", []string{"RS256"} }), m.rsaPEM)
	pkcs1 := jwtMustVerifier(t, with(checked, func(c *config.JWT) { c.KeyFile, c.Algorithms = "key.pem", []string{"RS256"} }), m.rsaPKCS1PEM)
	cert := jwtMustVerifier(t, with(checked, func(c *config.JWT) { c.KeyFile, c.Algorithms = "cert.pem", []string{"RS256"} }), m.rsaCertPEM)
	pemEC := jwtMustVerifier(t, with(checked, func(c *config.JWT) { c.KeyFile, c.Algorithms = "ec.pem", []string{"RS256", "ES256"} }), m.ecPEM)
	pemEd := jwtMustVerifier(t, with(checked, func(c *config.JWT) { c.KeyFile, c.Algorithms = "ed.pem", []string{"EdDSA"} }), m.edPEM)
	hs := jwtMustVerifier(t, with(checked, func(c *config.JWT) { c.Secret, c.Algorithms = string(m.secret), []string{"HS256"} }), nil)
	open := jwtMustVerifier(t, config.JWT{KeyFile: "key.pem", Algorithms: []string{"RS256"}}, m.rsaPEM)
	scoped := jwtMustVerifier(t, with(checked, func(c *config.JWT) {
		c.JWKSFile, c.Algorithms = "keys.json", []string{"RS256", "ES256"}
		c.Require = map[string]string{"scope": "predict", "groups": "ml"}
	}), m.jwks)

	rs256 := func(kid string, edit func(map[string]any)) string {
		return jwtSign(t, jose.RS256, m.rsa, kid, jwtClaims(edit))
	}
	scopes := func(scope any, groups any) func(map[string]any) {
		return func(c map[string]any) {
			if scope != nil {
				c["scope"] = scope
			}
			if groups != nil {
				c["groups"] = groups
			}
		}
	}
	valid := rs256("rsa1", nil)
	header, _, _ := strings.Cut(valid, ".")
	_, sig, _ := strings.Cut(valid[len(header)+1:], ".")
	tampered := header + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"mallory","exp":9999999999}`)) + "." + sig
	oversized := rs256("rsa1", func(c map[string]any) { c["pad"] = strings.Repeat("x", 9<<10) })

	tests := []struct {
		name   string
		v      *Verifier
		token  string
		status int    // 0: accepted
		reason string // part of the refusal's Reason
		sub    string // when accepted; "alice" when empty
	}{
		{name: "RS256 via JWKS, kid", v: jwks, token: valid},
		{name: "RS256 via JWKS, no kid", v: jwks, token: rs256("", nil)},
		{name: "RS256 via PEM key_file", v: pemRSA, token: valid},
		{name: "RS256 via PKCS1 PEM key_file", v: pkcs1, token: rs256("", nil)},
		{name: "RS256 via certificate key_file", v: cert, token: valid},
		{name: "key_file ignores kid", v: pemRSA, token: rs256("whatever", nil)},
		{name: "ES256 via JWKS", v: jwks, token: jwtSign(t, jose.ES256, m.ec, "ec1", jwtClaims(nil))},
		{name: "ES256 via JWKS, no kid", v: jwks, token: jwtSign(t, jose.ES256, m.ec, "", jwtClaims(nil))},
		{name: "ES256 via PEM key_file", v: pemEC, token: jwtSign(t, jose.ES256, m.ec, "", jwtClaims(nil))},
		{name: "EdDSA via PEM key_file", v: pemEd, token: jwtSign(t, jose.EdDSA, m.ed, "", jwtClaims(nil))},
		{name: "HS256 via secret", v: hs, token: jwtSign(t, jose.HS256, m.secret, "", jwtClaims(nil))},
		{name: "no issuer or audience configured", v: open, token: rs256("", func(c map[string]any) { delete(c, "iss"); delete(c, "aud") })},
		{name: "no sub", v: jwks, token: rs256("rsa1", func(c map[string]any) { delete(c, "sub") }), sub: "-"},

		{name: "expired beyond leeway", v: jwks, token: rs256("rsa1", func(c map[string]any) { c["exp"] = jwtTestNow.Add(-time.Minute).Unix() }), status: 401, reason: "expired"},
		{name: "expired within leeway", v: jwks, token: rs256("rsa1", func(c map[string]any) { c["exp"] = jwtTestNow.Add(-10 * time.Second).Unix() })},
		{name: "nbf in the future", v: jwks, token: rs256("rsa1", func(c map[string]any) { c["nbf"] = jwtTestNow.Add(5 * time.Minute).Unix() }), status: 401, reason: "not valid yet"},
		{name: "nbf within leeway", v: jwks, token: rs256("rsa1", func(c map[string]any) { c["nbf"] = jwtTestNow.Add(10 * time.Second).Unix() })},
		{name: "iat in the future", v: jwks, token: rs256("rsa1", func(c map[string]any) { c["iat"] = jwtTestNow.Add(5 * time.Minute).Unix() }), status: 401, reason: "issued in the future"},
		{name: "missing exp", v: jwks, token: rs256("rsa1", func(c map[string]any) { delete(c, "exp") }), status: 401, reason: "token has no expiry"},
		{name: "exp not a number", v: jwks, token: rs256("rsa1", func(c map[string]any) { c["exp"] = "2100-01-01" }), status: 401, reason: "exp is not a number"},
		{name: "exp null", v: jwks, token: rs256("rsa1", func(c map[string]any) { c["exp"] = nil }), status: 401, reason: "exp is not a number"},
		{name: "sub not a string", v: jwks, token: rs256("rsa1", func(c map[string]any) { c["sub"] = 7 }), status: 401, reason: "sub is not a string"},

		{name: "signed by another RSA key", v: jwks, token: jwtSign(t, jose.RS256, m.otherRSA, "rsa1", jwtClaims(nil)), status: 401, reason: "bad signature"},
		{name: "signed by another RSA key, key_file", v: pemRSA, token: jwtSign(t, jose.RS256, m.otherRSA, "", jwtClaims(nil)), status: 401, reason: "bad signature"},
		{name: "payload swapped", v: jwks, token: tampered, status: 401, reason: "bad signature"},
		{name: "wrong audience", v: jwks, token: rs256("rsa1", func(c map[string]any) { c["aud"] = "someone-else" }), status: 401, reason: "wrong audience"},
		{name: "no audience", v: jwks, token: rs256("rsa1", func(c map[string]any) { delete(c, "aud") }), status: 401, reason: "wrong audience"},
		{name: "aud array containing audience", v: jwks, token: rs256("rsa1", func(c map[string]any) { c["aud"] = []string{"other", jwtTestAudience} })},
		{name: "aud array without audience", v: jwks, token: rs256("rsa1", func(c map[string]any) { c["aud"] = []string{"other", "another"} }), status: 401, reason: "wrong audience"},
		{name: "aud array with a number", v: jwks, token: rs256("rsa1", func(c map[string]any) { c["aud"] = []any{jwtTestAudience, 1} }), status: 401, reason: "aud is not"},
		{name: "wrong issuer", v: jwks, token: rs256("rsa1", func(c map[string]any) { c["iss"] = "https://evil.example" }), status: 401, reason: "wrong issuer"},
		{name: "no issuer", v: jwks, token: rs256("rsa1", func(c map[string]any) { delete(c, "iss") }), status: 401, reason: "wrong issuer"},

		{name: "alg none", v: jwks, token: jwtUnsigned(jwtClaims(nil)), status: 401, reason: "algorithm not allowed"},
		{name: "alg none, key_file", v: pemRSA, token: jwtUnsigned(jwtClaims(nil)), status: 401, reason: "algorithm not allowed"},
		{name: "alg none, secret", v: hs, token: jwtUnsigned(jwtClaims(nil)), status: 401, reason: "algorithm not allowed"},
		{name: "HS256 with the public key PEM as secret, key_file", v: pemRSA, token: jwtSign(t, jose.HS256, m.rsaPEM, "", jwtClaims(nil)), status: 401, reason: "algorithm not allowed"},
		{name: "HS256 with the public key PEM as secret, JWKS", v: jwks, token: jwtSign(t, jose.HS256, m.rsaPEM, "rsa1", jwtClaims(nil)), status: 401, reason: "algorithm not allowed"},
		{name: "HS256 with the public key DER as secret", v: pemRSA, token: jwtSign(t, jose.HS256, m.rsaDER, "", jwtClaims(nil)), status: 401, reason: "algorithm not allowed"},
		{name: "RS384 when only RS256 is allowed", v: pemRSA, token: jwtSign(t, jose.RS384, m.rsa, "", jwtClaims(nil)), status: 401, reason: "algorithm not allowed"},
		{name: "RS256 to a secret verifier", v: hs, token: valid, status: 401, reason: "algorithm not allowed"},
		{name: "ES256 token naming the RSA key", v: jwks, token: jwtSign(t, jose.ES256, m.ec, "rsa1", jwtClaims(nil)), status: 401, reason: "no key for the token's algorithm"},
		{name: "RS256 allowed, EC key_file only", v: pemEC, token: valid, status: 401, reason: "no key for the token's algorithm"},
		{name: "PS256 against a key declaring RS256", v: jwksPS, token: jwtSign(t, jose.PS256, m.rsa, "rsa1", jwtClaims(nil)), status: 401, reason: "no key for the token's algorithm"},
		{name: "PS256 with no kid, no key declares it", v: jwksPS, token: jwtSign(t, jose.PS256, m.rsa, "", jwtClaims(nil)), status: 401, reason: "no key for the token's algorithm"},
		{name: "unknown kid", v: jwks, token: rs256("nope", nil), status: 401, reason: "unknown key"},
		{name: "kid of an encryption key", v: jwks, token: jwtSign(t, jose.RS256, m.otherRSA, "enc1", jwtClaims(nil)), status: 401, reason: "unknown key"},

		{name: "empty", v: jwks, token: "", status: 401, reason: "no token"},
		{name: "garbage", v: jwks, token: "not a token at all", status: 401, reason: "malformed"},
		{name: "three garbage parts", v: jwks, token: "abc.def.ghi", status: 401, reason: "malformed"},
		{name: "four parts", v: jwks, token: valid + ".x", status: 401, reason: "malformed"},
		{name: "oversized", v: jwks, token: oversized, status: 401, reason: "larger than 8 KiB"},
		{name: "payload not an object", v: jwks, token: jwtSign(t, jose.RS256, m.rsa, "rsa1", []byte(`["alice"]`)), status: 401, reason: "not a JSON object"},
		{name: "payload not JSON", v: jwks, token: jwtSign(t, jose.RS256, m.rsa, "rsa1", []byte(`alice`)), status: 401, reason: "malformed"},
		{name: "duplicate sub", v: jwks, token: jwtSign(t, jose.RS256, m.rsa, "rsa1", []byte(`{"sub":"alice","aud":"sluice","iss":"`+jwtTestIssuer+`","exp":1700003600,"sub":"admin"}`)), status: 401, reason: "appears twice"},
		{name: "duplicate required claim", v: scoped, token: jwtSign(t, jose.RS256, m.rsa, "rsa1", []byte(`{"sub":"alice","aud":"sluice","iss":"`+jwtTestIssuer+`","exp":1700003600,"groups":"ml","scope":"none","scope":"predict"}`)), status: 401, reason: "appears twice"},
		{name: "escaped claim names count", v: jwks, token: jwtSign(t, jose.RS256, m.rsa, "rsa1", []byte(`{"sub":"alice","aud":"sluice","iss":"`+jwtTestIssuer+`","exp":1700003600,"s\u0075b":"admin"}`)), status: 401, reason: "appears twice"},

		{name: "required scope among words", v: scoped, token: rs256("rsa1", scopes("a predict b", []string{"x", "ml"}))},
		{name: "required scope as the whole string", v: scoped, token: rs256("rsa1", scopes("predict", "ml"))},
		{name: "required scope absent from words", v: scoped, token: rs256("rsa1", scopes("a predictor b", []string{"ml"})), status: 403, reason: `scope claim does not hold "predict"`},
		{name: "required scope missing", v: scoped, token: rs256("rsa1", scopes(nil, []string{"ml"})), status: 403, reason: "token has no scope claim"},
		{name: "required array element absent", v: scoped, token: rs256("rsa1", scopes("predict", []string{"x", "mlops"})), status: 403, reason: `groups claim does not hold "ml"`},
		{name: "required claim of another type", v: scoped, token: rs256("rsa1", scopes("predict", map[string]any{"ml": true})), status: 403, reason: "groups claim"},
		{name: "required array of non-strings", v: scoped, token: rs256("rsa1", scopes("predict", []any{1, true})), status: 403, reason: "groups claim"},
		{name: "requirements come after the signature", v: scoped, token: jwtSign(t, jose.RS256, m.otherRSA, "rsa1", jwtClaims(scopes("predict", "ml"))), status: 401, reason: "bad signature"},
		{name: "requirements come after expiry", v: scoped, token: rs256("rsa1", func(c map[string]any) { c["exp"] = jwtTestNow.Add(-time.Hour).Unix() }), status: 401, reason: "expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := tt.v.Verify([]byte(tt.token), jwtTestNow)
			if tt.status == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				want := tt.sub
				switch want {
				case "":
					want = "alice"
				case "-":
					want = ""
				}
				if id.Kind != KindJWT || id.Name != want {
					t.Errorf("identity = %q/%q, want %q/%q", id.Kind, id.Name, KindJWT, want)
				}
				if !json.Valid(id.Claims) || (want != "" && !bytes.Contains(id.Claims, []byte(`"sub":"`+want+`"`))) {
					t.Errorf("claims = %s, want the payload with sub %q", id.Claims, want)
				}
				return
			}
			if id != nil {
				t.Errorf("refusal returned an identity %+v", id)
			}
			te, ok := errors.AsType[*TokenError](err)
			if !ok {
				t.Fatalf("err = %v (%T), want a *TokenError", err, err)
			}
			wantCode := "invalid_token"
			if tt.status == http.StatusForbidden {
				wantCode = "insufficient_scope"
			}
			if te.Status != tt.status || te.Code != wantCode || !strings.Contains(te.Reason, tt.reason) {
				t.Errorf("refusal = %d %s %q, want %d %s with %q", te.Status, te.Code, te.Reason, tt.status, wantCode, tt.reason)
			}
			if len(tt.token) > 20 {
				for part := range strings.SplitSeq(tt.token, ".") {
					if len(part) > 8 && strings.Contains(err.Error(), part) {
						t.Errorf("refusal %q quotes the token", err)
					}
				}
			}
		})
	}
}

// TestJWTVerifyTriesAFewKeys: a token without a kid is checked against
// the first jwtMaxTries keys made for its alg, never all of a large set.
func TestJWTVerifyTriesAFewKeys(t *testing.T) {
	var set jose.JSONWebKeySet
	var keys []*ecdsa.PrivateKey
	for i := range jwtMaxTries + 2 {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: &k.PublicKey, KeyID: fmt.Sprint("ec", i), Use: "sig"})
	}
	data, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	v := jwtMustVerifier(t, config.JWT{JWKSFile: "k.json", Algorithms: []string{"ES256"}}, data)
	for i, k := range keys {
		tried := i < jwtMaxTries
		if _, err := v.Verify([]byte(jwtSign(t, jose.ES256, k, "", jwtClaims(nil))), jwtTestNow); (err == nil) != tried {
			t.Errorf("key %d without kid: err = %v, want accepted %v", i, err, tried)
		}
		if _, err := v.Verify([]byte(jwtSign(t, jose.ES256, k, fmt.Sprint("ec", i), jwtClaims(nil))), jwtTestNow); err != nil {
			t.Errorf("key %d with its kid: %v", i, err)
		}
	}
}

func TestJWTVerifyAtZeroTimeUsesTheClock(t *testing.T) {
	m := jwtTestKeys()
	v := jwtMustVerifier(t, config.JWT{KeyFile: "key.pem", Algorithms: []string{"RS256"}}, m.rsaPEM)
	// Valid at jwtTestNow, long expired now.
	token := jwtSign(t, jose.RS256, m.rsa, "", jwtClaims(nil))
	if _, err := v.Verify([]byte(token), time.Time{}); err == nil {
		t.Fatal("a token that expired in 2023 was accepted at time.Now")
	}
}

func TestJWTVerifierKeys(t *testing.T) {
	m := jwtTestKeys()
	for _, tt := range []struct {
		name string
		cfg  config.JWT
		data []byte
		want int
	}{
		{"JWKS without its encryption key", config.JWT{JWKSFile: "k.json", Algorithms: []string{"RS256", "ES256"}}, m.jwks, 2},
		{"JWKS keys for allowed algorithms only", config.JWT{JWKSFile: "k.json", Algorithms: []string{"ES256"}}, m.jwks, 1},
		{"key file", config.JWT{KeyFile: "k.pem", Algorithms: []string{"RS256", "ES256"}}, m.rsaPEM, 1},
		{"secret", config.JWT{Secret: string(m.secret), Algorithms: []string{"HS256"}}, nil, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := jwtMustVerifier(t, tt.cfg, tt.data).Keys(); got != tt.want {
				t.Errorf("Keys() = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestJWTNewVerifierErrors(t *testing.T) {
	m := jwtTestKeys()
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	weakDER, _ := x509.MarshalPKIXPublicKey(&weak.PublicKey)
	privateJWKS, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: m.ec, KeyID: "leak", Algorithm: "ES256"}}})
	privatePEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("not really")})
	pemOf := func(typ string, b []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}) }
	shortSecret := "a-32-byte-secret-for-hs256-only!"

	tests := []struct {
		name string
		cfg  config.JWT
		data []byte
		want string
	}{
		{"garbage JWKS", config.JWT{JWKSFile: "k.json", Algorithms: []string{"RS256"}}, []byte("not json"), "not a JSON Web Key Set"},
		{"JWKS with no keys", config.JWT{JWKSFile: "k.json", Algorithms: []string{"RS256"}}, []byte(`{"keys":[]}`), "no signing key"},
		{"JWKS that is one bare key", config.JWT{JWKSFile: "k.json", Algorithms: []string{"RS256"}}, []byte(`{"kty":"RSA","n":"AQAB","e":"AQAB"}`), "no signing key"},
		{"JWKS with a broken key", config.JWT{JWKSFile: "k.json", Algorithms: []string{"RS256"}}, []byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}]}`), "key 0"},
		{"JWKS with only keys for other algorithms", config.JWT{JWKSFile: "k.json", Algorithms: []string{"PS512"}}, m.jwks, "no signing key"},
		{"JWKS with a private key", config.JWT{JWKSFile: "k.json", Algorithms: []string{"ES256"}}, privateJWKS, "private key"},
		{"JWKS with a weak RSA key", config.JWT{JWKSFile: "k.json", Algorithms: []string{"RS256"}}, []byte(`{"keys":[` + jwtJWK(t, &weak.PublicKey) + `]}`), "1024 bits"},
		{"PEM that is not a key", config.JWT{KeyFile: "k.pem", Algorithms: []string{"RS256"}}, pemOf("CERTIFICATE REQUEST", []byte("x")), "not PUBLIC KEY"},
		{"PEM private key", config.JWT{KeyFile: "k.pem", Algorithms: []string{"RS256"}}, privatePEM, "private key"},
		{"PEM public key of garbage", config.JWT{KeyFile: "k.pem", Algorithms: []string{"RS256"}}, pemOf("PUBLIC KEY", []byte("garbage")), "key file"},
		{"no PEM at all", config.JWT{KeyFile: "k.pem", Algorithms: []string{"RS256"}}, []byte("hello"), "no PEM block"},
		{"PEM with a weak RSA key", config.JWT{KeyFile: "k.pem", Algorithms: []string{"RS256"}}, pemOf("PUBLIC KEY", weakDER), "1024 bits"},
		{"EC key file, RSA algorithms", config.JWT{KeyFile: "k.pem", Algorithms: []string{"RS256"}}, m.ecPEM, "ECDSA P-256 key, which verifies none"},
		{"HMAC with a public key file", config.JWT{KeyFile: "k.pem", Algorithms: []string{"RS256", "HS256"}}, m.rsaPEM, "algorithm confusion"},
		{"HMAC with a JWKS", config.JWT{JWKSFile: "k.json", Algorithms: []string{"HS256"}}, m.jwks, "algorithm confusion"},
		{"RSA with a secret", config.JWT{Secret: string(m.secret), Algorithms: []string{"HS256", "RS256"}}, nil, "needs a public key"},
		{"secret too short for HS512", config.JWT{Secret: shortSecret, Algorithms: []string{"HS256", "HS512"}}, nil, "too short for HS512"},
		{"alg none", config.JWT{KeyFile: "k.pem", Algorithms: []string{"RS256", "none"}}, m.rsaPEM, "never accepted"},
		{"unknown alg", config.JWT{KeyFile: "k.pem", Algorithms: []string{"RS257"}}, m.rsaPEM, "unknown algorithm"},
		{"no algorithms", config.JWT{KeyFile: "k.pem"}, m.rsaPEM, "no algorithms"},
		{"two key sources", config.JWT{KeyFile: "k.pem", Secret: string(m.secret), Algorithms: []string{"HS256"}}, m.rsaPEM, "exactly one"},
		{"no key source", config.JWT{Algorithms: []string{"RS256"}}, nil, "exactly one"},
		{"empty requirement", config.JWT{KeyFile: "k.pem", Algorithms: []string{"RS256"}, Require: map[string]string{"scope": ""}}, m.rsaPEM, "required claim"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := NewVerifier(&tt.cfg, tt.data)
			if err == nil {
				t.Fatalf("accepted, with %d keys", v.Keys())
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %q, want it to say %q", err, tt.want)
			}
			if tt.cfg.Secret != "" && strings.Contains(err.Error(), tt.cfg.Secret) {
				t.Errorf("err %q quotes the secret", err)
			}
		})
	}
}

// jwtJWK is a public key as one JWK, for sets go-jose would not marshal.
func jwtJWK(t *testing.T, key any) string {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKey{Key: key, KeyID: "k", Use: "sig"})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestJWTVerifyConcurrent shares one verifier between goroutines, for
// -race.
func TestJWTVerifyConcurrent(t *testing.T) {
	m := jwtTestKeys()
	v := jwtMustVerifier(t, config.JWT{JWKSFile: "k.json", Algorithms: []string{"RS256", "ES256"}, Require: map[string]string{"scope": "predict"}}, m.jwks)
	good := []byte(jwtSign(t, jose.ES256, m.ec, "ec1", jwtClaims(func(c map[string]any) { c["scope"] = "predict" })))
	bad := []byte(jwtSign(t, jose.ES256, m.ec, "ec1", jwtClaims(nil)))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				if _, err := v.Verify(good, jwtTestNow); err != nil {
					t.Errorf("good token refused: %v", err)
				}
				if _, err := v.Verify(bad, jwtTestNow); err == nil {
					t.Errorf("token without scope accepted")
				}
			}
		})
	}
	wg.Wait()
}

func jwtBenchVerify(b *testing.B, v *Verifier, token string) {
	tok := []byte(token)
	if _, err := v.Verify(tok, jwtTestNow); err != nil {
		b.Fatal(err)
	}
	// first: the token is new (its signature is checked); cached: it was
	// verified before, and only its claims are checked again.
	b.Run("first", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			v.verified.Invalidate(xxhash.Sum64(tok))
			if _, err := v.Verify(tok, jwtTestNow); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := v.Verify(tok, jwtTestNow); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// jwtBenchClaims is a typical access token.
func jwtBenchClaims(c map[string]any) {
	c["scope"] = "openid predict embeddings"
	c["jti"] = "b7d3c1e0-5a1f-4f0e-9b52-1c7a2f6a9e11"
}

func BenchmarkJWTVerifyRS256(b *testing.B) {
	m := jwtTestKeys()
	v := jwtMustVerifier(b, config.JWT{JWKSFile: "k.json", Algorithms: []string{"RS256", "ES256"}, Issuer: jwtTestIssuer, Audience: jwtTestAudience, Require: map[string]string{"scope": "predict"}}, m.jwks)
	jwtBenchVerify(b, v, jwtSign(b, jose.RS256, m.rsa, "rsa1", jwtClaims(jwtBenchClaims)))
}

func BenchmarkJWTVerifyES256(b *testing.B) {
	m := jwtTestKeys()
	v := jwtMustVerifier(b, config.JWT{JWKSFile: "k.json", Algorithms: []string{"RS256", "ES256"}, Issuer: jwtTestIssuer, Audience: jwtTestAudience, Require: map[string]string{"scope": "predict"}}, m.jwks)
	jwtBenchVerify(b, v, jwtSign(b, jose.ES256, m.ec, "ec1", jwtClaims(jwtBenchClaims)))
}

func BenchmarkJWTVerifyHS256(b *testing.B) {
	m := jwtTestKeys()
	v := jwtMustVerifier(b, config.JWT{Secret: string(m.secret), Algorithms: []string{"HS256"}, Issuer: jwtTestIssuer, Audience: jwtTestAudience, Require: map[string]string{"scope": "predict"}}, nil)
	jwtBenchVerify(b, v, jwtSign(b, jose.HS256, m.secret, "", jwtClaims(jwtBenchClaims)))
}

// BenchmarkJWTCheckClaims is the gateway's own share of a Verify: the pass
// over a verified payload (go-jose's parsing and the signature are the
// rest).
func BenchmarkJWTCheckClaims(b *testing.B) {
	v := jwtMustVerifier(b, config.JWT{Secret: string(jwtTestKeys().secret), Algorithms: []string{"HS256"}, Issuer: jwtTestIssuer, Audience: jwtTestAudience, Require: map[string]string{"scope": "predict"}}, nil)
	payload, err := json.Marshal(jwtClaims(jwtBenchClaims))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, refusal := v.checkClaims(payload, jwtTestNow); refusal != nil {
			b.Fatal(refusal)
		}
	}
}

// TestJWTCachedTokenStillExpires: a token verified once is remembered,
// but its claims are checked at every use: past its exp (and the leeway)
// the same bytes are refused, and a token that differs in one byte from
// a remembered one is verified in full.
func TestJWTCachedTokenStillExpires(t *testing.T) {
	m := jwtTestKeys()
	v := jwtMustVerifier(t, config.JWT{Secret: string(m.secret), Algorithms: []string{"HS256"}, Leeway: config.Duration(30 * time.Second)}, nil)
	tok := []byte(jwtSign(t, jose.HS256, m.secret, "", jwtClaims(nil)))
	first, err := v.Verify(tok, jwtTestNow)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := v.Verify(tok, jwtTestNow); err != nil || again != first {
		t.Fatalf("second use: %v, %v; want the remembered identity", again, err)
	}
	var exp int64
	if err := json.Unmarshal(jsonField(t, first.Claims, "exp"), &exp); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(tok, time.Unix(exp, 0).Add(time.Minute)); err == nil {
		t.Fatal("a remembered token was accepted after it expired")
	}
	forged := append([]byte(nil), tok...)
	forged[len(forged)-2] ^= 1
	if _, err := v.Verify(forged, jwtTestNow); err == nil {
		t.Fatal("a token one byte off a remembered one was accepted")
	}
}

// jsonField is the raw value of a top-level field of a JSON object.
func jsonField(t *testing.T, obj []byte, name string) json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(obj, &m); err != nil {
		t.Fatal(err)
	}
	return m[name]
}
