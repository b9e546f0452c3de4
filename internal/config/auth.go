package config

import (
	"net/url"
	"strings"
	"time"
)

// Auth says who may call a route (SPEC section 2). A route's auth block
// replaces the server-wide one as a whole, as an nginx directive set in a
// location replaces the server's; a route with `auth: {disabled: true}`
// is public under a server-wide default. With both api_keys and jwt, a
// request passes with either credential: an API key header when it has
// one, else a bearer token.
type Auth struct {
	// APIKeys accepts keys whose SHA-256 is listed in a file.
	APIKeys *APIKeys `yaml:"api_keys" json:"api_keys,omitempty"`
	// JWT accepts signed bearer tokens.
	JWT *JWT `yaml:"jwt" json:"jwt,omitempty"`
	// PassCredentials forwards the API key header and Authorization
	// upstream. Default false: both are removed before forwarding (and
	// before mirroring), and the backend learns who called from
	// X-Sluice-Identity alone.
	PassCredentials bool `yaml:"pass_credentials" json:"pass_credentials,omitempty"`
	// Disabled, on a route, makes it public under a server-wide auth.
	Disabled bool `yaml:"disabled" json:"disabled,omitempty"`
}

// APIKeys checks a header against a keys file (SPEC section 2): YAML
// listing each key's name, its SHA-256 and optionally the routes or tags it
// may call and its own rate limit. The file never holds a key itself; it
// is watched and reloaded on change, and a file that does not parse keeps
// the keys it had.
type APIKeys struct {
	// KeysFile is the path of the keys file. Required.
	KeysFile string `yaml:"keys_file" json:"keys_file"`
	// Header carries the key. Default X-API-Key.
	Header string `yaml:"header" json:"header"`
}

// JWT verifies bearer tokens (RFC 7519) from the Authorization header.
// Exactly one of JWKSFile, KeyFile and Secret gives the keys; files are
// watched and reloaded like keys files. A token must be signed with one
// of Algorithms by a key made for that algorithm: "none" is never
// accepted, nor an HMAC token checked against a public key.
type JWT struct {
	// JWKSFile is a JSON Web Key Set (RFC 7517) file; a token's kid picks
	// the key, or without one the first (at most four) keys made for the
	// token's algorithm are tried.
	JWKSFile string `yaml:"jwks_file" json:"jwks_file,omitempty"`
	// KeyFile is one PEM public key or certificate (RSA of 2048 bits or
	// more, ECDSA, Ed25519).
	KeyFile string `yaml:"key_file" json:"key_file,omitempty"`
	// Secret is a shared HMAC secret (HS256/384/512), at least 32 bytes;
	// write it as ${ENV_VAR}. Never shown by the admin API.
	Secret string `yaml:"secret" json:"-"`
	// Algorithms a token may be signed with. Default: RS256 and ES256
	// for public keys, HS256 for a secret.
	Algorithms []string `yaml:"algorithms" json:"algorithms"`
	// Issuer, when set, must equal the token's iss.
	Issuer string `yaml:"issuer" json:"issuer,omitempty"`
	// Audience, when set, must be the token's aud or one of them.
	Audience string `yaml:"audience" json:"audience,omitempty"`
	// Require maps claim names to a value the claim must hold: equal to a
	// string claim, one of the words of a space-separated one (OAuth's
	// scope), or an element of an array. A token without it is refused
	// with 403. Zero: none.
	Require map[string]string `yaml:"require" json:"require,omitempty"`
	// Leeway is the clock skew allowed on exp, nbf and iat. Default 30s;
	// at most 5m.
	Leeway Duration `yaml:"leeway" json:"leeway"`
}

// CORS answers browsers' cross-origin checks for a route (the Fetch
// standard's CORS protocol): preflight requests from an allowed origin are
// answered by the gateway, and answers to allowed origins carry
// Access-Control-Allow-Origin. Requests from other origins get no CORS
// headers (the browser then hides the answer); they are still served.
type CORS struct {
	// Origins are allowed origins, scheme://host[:port] exactly, or "*"
	// for any. Required.
	Origins []string `yaml:"origins" json:"origins"`
	// Methods a preflight may ask for. Default GET, HEAD and POST.
	Methods []string `yaml:"methods" json:"methods"`
	// Headers a preflight may ask for (Access-Control-Allow-Headers),
	// case-insensitive. Zero: none beyond the CORS-safelisted ones.
	Headers []string `yaml:"headers" json:"headers,omitempty"`
	// ExposeHeaders are response headers a page may read. Default: the
	// gateway's own, X-Request-Id and X-Sluice-Variant.
	ExposeHeaders []string `yaml:"expose_headers" json:"expose_headers,omitempty"`
	// Credentials lets pages send cookies and Authorization
	// (Access-Control-Allow-Credentials). Not with origin "*".
	Credentials bool `yaml:"credentials" json:"credentials,omitempty"`
	// MaxAge is how long a browser may cache a preflight answer.
	// Default 10m.
	MaxAge Duration `yaml:"max_age" json:"max_age"`
}

// Audit writes one JSON line per auth decision: every refusal and a
// sample of the requests let through. A line never holds the credential.
type Audit struct {
	// File is where lines go: a path (appended to, created 0600) or
	// "stdout". Required.
	File string `yaml:"file" json:"file"`
	// SampleAllowed is the share of allowed requests written, 0 to 1.
	// Default 0: refusals only.
	SampleAllowed float64 `yaml:"sample_allowed" json:"sample_allowed"`
}

// Auth defaults and limits.
const (
	DefaultAPIKeyHeader = "X-API-Key"
	DefaultJWTLeeway    = 30 * time.Second
	MaxJWTLeeway        = 5 * time.Minute
	DefaultCORSMaxAge   = 10 * time.Minute
	MinJWTSecretBytes   = 32
	AuditStdout         = "stdout"
)

// JWTAlgorithms are the signature algorithms a jwt block may list.
var JWTAlgorithms = []string{"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// AuthFor is the auth that applies to a route: its own block, else the
// server's; nil when the route is public.
func (c *Config) AuthFor(r *Route) *Auth {
	a := r.Auth
	if a == nil {
		a = c.Server.Auth
	}
	if a == nil || a.Disabled {
		return nil
	}
	return a
}

func applyAuthDefaults(a *Auth) {
	if a == nil {
		return
	}
	if k := a.APIKeys; k != nil {
		setDefault(&k.Header, DefaultAPIKeyHeader)
	}
	if j := a.JWT; j != nil {
		setDefault(&j.Leeway, Duration(DefaultJWTLeeway))
		if len(j.Algorithms) == 0 {
			if j.Secret != "" {
				j.Algorithms = []string{"HS256"}
			} else {
				j.Algorithms = []string{"RS256", "ES256"}
			}
		}
	}
}

func applyCORSDefaults(c *CORS) {
	if c == nil {
		return
	}
	if len(c.Methods) == 0 {
		c.Methods = []string{"GET", "HEAD", "POST"}
	}
	for i, m := range c.Methods {
		c.Methods[i] = strings.ToUpper(m)
	}
	if c.ExposeHeaders == nil {
		c.ExposeHeaders = []string{"X-Request-Id", "X-Sluice-Variant"}
	}
	setDefault(&c.MaxAge, Duration(DefaultCORSMaxAge))
}

// validateAuth checks an auth block at path.
func validateAuth(ck *checker, a *Auth, path func(...any) []any) {
	if a.Disabled {
		if a.APIKeys != nil || a.JWT != nil {
			ck.add(path("disabled"), "a disabled auth takes no api_keys or jwt")
		}
		return
	}
	if a.APIKeys == nil && a.JWT == nil {
		ck.add(path(), "needs api_keys, jwt or both (or disabled: true for a public route)")
	}
	if k := a.APIKeys; k != nil {
		if k.KeysFile == "" {
			ck.add(path("api_keys", "keys_file"), "is required")
		}
		if !tokenRE.MatchString(k.Header) {
			ck.add(path("api_keys", "header"), "%q is not a header name", k.Header)
		} else if strings.EqualFold(k.Header, "Authorization") && a.JWT != nil {
			ck.add(path("api_keys", "header"), "Authorization carries the jwt bearer token; give API keys their own header")
		}
	}
	if j := a.JWT; j != nil {
		validateJWT(ck, j, func(rest ...any) []any { return path(append([]any{"jwt"}, rest...)...) })
	}
}

func validateJWT(ck *checker, j *JWT, path func(...any) []any) {
	sources := 0
	for _, s := range []string{j.JWKSFile, j.KeyFile, j.Secret} {
		if s != "" {
			sources++
		}
	}
	if sources != 1 {
		ck.add(path(), "needs exactly one of jwks_file, key_file and secret (has %d)", sources)
	}
	if j.Secret != "" && len(j.Secret) < MinJWTSecretBytes {
		ck.add(path("secret"), "must be at least %d bytes (RFC 7518 3.2), got %d", MinJWTSecretBytes, len(j.Secret))
	}
	for i, alg := range j.Algorithms {
		switch {
		case strings.EqualFold(alg, "none"):
			ck.add(path("algorithms", i), "unsigned tokens (none) are never accepted")
		case !contains(JWTAlgorithms, alg):
			ck.add(path("algorithms", i), "unknown algorithm %q (%s)", alg, strings.Join(JWTAlgorithms, ", "))
		case j.Secret != "" && !strings.HasPrefix(alg, "HS"):
			ck.add(path("algorithms", i), "%s needs a public key; a secret verifies HS256, HS384 and HS512 only", alg)
		case j.Secret == "" && strings.HasPrefix(alg, "HS"):
			ck.add(path("algorithms", i), "%s needs a shared secret; with public keys it would let anyone who has them sign (algorithm confusion)", alg)
		}
	}
	if d := j.Leeway.D(); d < 0 || d > MaxJWTLeeway {
		ck.add(path("leeway"), "must be 0 to %v, got %v", MaxJWTLeeway, d)
	}
	for _, claim := range sortedKeys(j.Require) {
		if claim == "" || j.Require[claim] == "" {
			ck.add(path("require", claim), "needs a claim name and the value it must hold")
		}
	}
}

func validateCORS(ck *checker, c *CORS, path func(...any) []any) {
	if len(c.Origins) == 0 {
		ck.add(path("origins"), "is required: the origins allowed, or \"*\"")
	}
	for i, o := range c.Origins {
		if o == "*" {
			if c.Credentials {
				ck.add(path("origins", i), "\"*\" cannot go with credentials: true (browsers refuse it); list the origins")
			}
			continue
		}
		if u, err := url.Parse(o); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
			(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil || strings.HasSuffix(o, "/") {
			ck.add(path("origins", i), "%q is not an origin: scheme://host[:port], no path", o)
		}
	}
	for i, m := range c.Methods {
		if !tokenRE.MatchString(m) {
			ck.add(path("methods", i), "%q is not an HTTP method", m)
		}
	}
	for _, list := range []struct {
		key   string
		names []string
	}{{"headers", c.Headers}, {"expose_headers", c.ExposeHeaders}} {
		for i, h := range list.names {
			if !tokenRE.MatchString(h) {
				ck.add(path(list.key, i), "%q is not a header name", h)
			}
		}
	}
	if d := c.MaxAge.D(); d < 0 || d > 24*time.Hour {
		ck.add(path("max_age"), "must be 0 to 24h, got %v", d)
	}
}

func validateAudit(ck *checker, a *Audit, path func(...any) []any) {
	if a.File == "" {
		ck.add(path("file"), "is required: a path, or stdout")
	}
	if !(a.SampleAllowed >= 0 && a.SampleAllowed <= 1) {
		ck.add(path("sample_allowed"), "must be 0 to 1, got %v", a.SampleAllowed)
	}
}

// validateIdentityKeys checks that a route's api_key and jwt:CLAIM key
// sources have the auth that gives them a value.
func validateIdentityKeys(ck *checker, c *Config, r *Route, path func(...any) []any) {
	a := c.AuthFor(r)
	check := func(p []any, s string) {
		src, err := ParseKeySource(s)
		if err != nil {
			return // reported where the field is validated
		}
		switch {
		case src.Kind == KeyAPIKey && (a == nil || a.APIKeys == nil):
			ck.add(p, "api_key names the caller's API key, so the route needs auth with api_keys")
		case src.Kind == KeyJWTClaim && (a == nil || a.JWT == nil):
			ck.add(p, "%s reads the caller's token, so the route needs auth with jwt", s)
		}
	}
	if sp := r.Split; sp != nil {
		check(path("split", "sticky"), sp.Sticky)
		check(path("split", "override"), sp.Override)
	}
	if cn := r.Canary; cn != nil {
		check(path("canary", "sticky"), cn.Sticky)
	}
	if ca := r.Cache; ca != nil {
		for i, v := range ca.Vary {
			check(path("cache", "vary", i), v)
			if src, err := ParseKeySource(v); err == nil && src.Kind == KeyHeader && a != nil && !a.PassCredentials && isCredentialHeader(a, src.Name) {
				ck.add(path("cache", "vary", i), "%s is a credential, removed before the cache is keyed; vary on api_key or jwt:sub", v)
			}
		}
	}
	for i, rl := range r.RateLimit {
		if rl != nil {
			check(path("rate_limit", i, "key"), rl.Key)
		}
	}
}

// isCredentialHeader reports whether a header carries a credential of a.
func isCredentialHeader(a *Auth, name string) bool {
	return (a.APIKeys != nil && strings.EqualFold(name, a.APIKeys.Header)) ||
		(a.JWT != nil && strings.EqualFold(name, "Authorization"))
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
