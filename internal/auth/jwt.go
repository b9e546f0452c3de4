package auth

// Bearer tokens (RFC 7519, JWS compact form) are checked in a fixed
// order, cheapest and least trusting first, and nothing from a token is
// believed before its signature is:
//
//  1. Size (8 KiB) and JWS syntax, with the alg header one of the
//     configured algorithms: go-jose refuses any other, "none" included.
//  2. The key. A kid header names a key of a JWKS; with none, the keys
//     made for the token's alg are tried, a few at most. A key is only
//     ever used with the algorithms made for its type and, when a JWK
//     declares one, its alg: an HS256 token is never checked against a
//     public key's bytes (algorithm confusion, RFC 8725 sections 2.1
//     and 3.1).
//  3. The signature (go-jose).
//  4. The claims, read from the verified payload in one pass: exp is
//     required; iss, and exp, nbf and iat with the leeway, are checked
//     by go-jose's ValidateWithLeeway; then aud.
//  5. The required claims. Only this step answers 403: the token is
//     genuine but does not grant enough (RFC 6750 section 3.1,
//     insufficient_scope); every other refusal is 401 invalid_token.
//
// Everything that does not depend on the token (keys, the algorithms
// each may verify, the refusal reasons) is worked out once in
// NewVerifier.

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/subtle"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/buger/jsonparser"
	"github.com/cespare/xxhash/v2"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/maypok86/otter/v2"

	"github.com/sluice-gw/sluice/internal/config"
)

// jwtMaxTokenBytes bounds a token before any parsing: a bearer token is a
// few hundred bytes, and a larger one only costs decoding time.
const jwtMaxTokenBytes = 8 << 10

// jwtMaxTries is how many keys a token may be checked against. Key
// rotation keeps the current and the next key, rarely more; each try is
// one signature check, so this bounds what a token without a kid costs.
const jwtMaxTries = 4

// jwtMaxRequire bounds the required claims (one bit each while scanning).
const jwtMaxRequire = 64

// jwtMinRSABits is the smallest RSA modulus accepted (RFC 7518 section
// 3.3: "A key of size 2048 bits or larger MUST be used").
const jwtMinRSABits = 2048

// Verifier checks bearer tokens against one jwt block. Immutable once
// built; safe for concurrent use.
type Verifier struct {
	algs []jose.SignatureAlgorithm // allowed, in config order
	keys []*jwtKey
	// named is set for a JWKS: a token's kid must name one of its keys.
	// A key file or a secret is one key, and a kid is not looked at.
	named bool
	byKid map[string][]*jwtKey
	// byAlg holds, for a token without a kid, the first jwtMaxTries keys
	// made for each algorithm.
	byAlg    map[jose.SignatureAlgorithm][]*jwtKey
	issuer   string
	audience string
	require  []jwtRequirement
	leeway   time.Duration
	// verified remembers tokens whose signature checked out, by their
	// hash, so that a client sending the same token for its lifetime pays
	// for the signature once (Envoy's jwt_cache_config). Claims are
	// checked again on every request, against the time then. A verifier
	// is rebuilt when its key file changes, so a removed key takes its
	// tokens with it.
	verified *otter.Cache[uint64, *jwtVerified]
}

// jwtVerified is a token whose signature was verified, and its identity.
type jwtVerified struct {
	token string
	who   *Identity
}

// Bounds of the verified-token cache: entries, and how long one is kept
// after it was verified.
const (
	jwtCacheSize = 10000
	jwtCacheTTL  = 5 * time.Minute
)

// jwtKey is one verification key and the algorithms it may check.
type jwtKey struct {
	kid  string
	key  any // *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey or []byte (a secret)
	algs []jose.SignatureAlgorithm
}

// jwtRequirement is one entry of Require, with its refusal reasons built
// once.
type jwtRequirement struct {
	claim, value      string
	missing, mismatch string
}

// TokenError is why a token was refused. Status is 401 (missing,
// malformed, bad signature, expired, not yet valid, wrong issuer or
// audience, algorithm not allowed, unknown key) or 403 (a valid token
// lacking a required claim). Reason is short and safe to log: it never
// holds the token. Code is the RFC 6750 error code: "invalid_token" for
// 401, "insufficient_scope" for 403.
type TokenError struct {
	Status int
	Code   string
	Reason string
}

func (e *TokenError) Error() string {
	return "bearer token refused (" + e.Code + "): " + e.Reason
}

// jwtInvalid is a 401 refusal.
func jwtInvalid(reason string) *TokenError {
	return &TokenError{Status: http.StatusUnauthorized, Code: "invalid_token", Reason: reason}
}

// jwtInsufficient is a 403 refusal.
func jwtInsufficient(reason string) *TokenError {
	return &TokenError{Status: http.StatusForbidden, Code: "insufficient_scope", Reason: reason}
}

// NewVerifier builds a verifier. keyData is the contents of cfg.JWKSFile
// or cfg.KeyFile (nil when cfg.Secret is used). Keys are parsed here once,
// never per request. An error says what is wrong with the key material;
// it never quotes a secret.
func NewVerifier(cfg *config.JWT, keyData []byte) (*Verifier, error) {
	algs, err := jwtAllowed(cfg.Algorithms)
	if err != nil {
		return nil, err
	}
	v := &Verifier{
		algs:     algs,
		issuer:   cfg.Issuer,
		audience: cfg.Audience,
		leeway:   cfg.Leeway.D(),
		byKid:    map[string][]*jwtKey{},
		byAlg:    map[jose.SignatureAlgorithm][]*jwtKey{},
		verified: otter.Must(&otter.Options[uint64, *jwtVerified]{
			MaximumSize:      jwtCacheSize,
			ExpiryCalculator: otter.ExpiryWriting[uint64, *jwtVerified](jwtCacheTTL),
			// Upkeep runs on the request that triggers it: the default
			// starts a goroutine each time, and waking a thread for it
			// cost more than the upkeep (BenchmarkProxyAuth).
			Executor: func(fn func()) { fn() },
		}),
	}
	switch {
	case cfg.Secret != "" && cfg.JWKSFile == "" && cfg.KeyFile == "":
		v.keys, err = jwtSecretKeys([]byte(cfg.Secret), algs)
	case cfg.JWKSFile != "" && cfg.KeyFile == "" && cfg.Secret == "":
		v.named = true
		v.keys, err = jwtSetKeys(keyData, algs)
	case cfg.KeyFile != "" && cfg.JWKSFile == "" && cfg.Secret == "":
		v.keys, err = jwtPEMKeys(keyData, algs)
	default:
		return nil, errors.New("needs exactly one of jwks_file, key_file and secret")
	}
	if err != nil {
		return nil, err
	}
	for _, k := range v.keys {
		if v.named && k.kid != "" {
			v.byKid[k.kid] = append(v.byKid[k.kid], k)
		}
		for _, alg := range k.algs {
			if len(v.byAlg[alg]) < jwtMaxTries {
				v.byAlg[alg] = append(v.byAlg[alg], k)
			}
		}
	}
	if v.require, err = jwtRequirements(cfg.Require); err != nil {
		return nil, err
	}
	return v, nil
}

// Keys is how many verification keys the verifier holds (for the admin
// API).
func (v *Verifier) Keys() int { return len(v.keys) }

// Verify checks a compact JWS token (the bytes after "Bearer ") at time
// now and returns the caller's identity: Kind KindJWT, Name the sub claim
// ("" when the token has none), Claims the verified payload. A refusal is
// a *TokenError.
func (v *Verifier) Verify(token []byte, now time.Time) (*Identity, error) {
	switch {
	case len(token) == 0:
		return nil, jwtInvalid("no token")
	case len(token) > jwtMaxTokenBytes:
		return nil, jwtInvalid("token is larger than 8 KiB")
	}
	sum := xxhash.Sum64(token)
	if hit, ok := v.verified.GetIfPresent(sum); ok && subtle.ConstantTimeCompare([]byte(hit.token), token) == 1 {
		if _, refusal := v.checkClaims(hit.who.Claims, now); refusal != nil {
			return nil, refusal
		}
		return hit.who, nil
	}
	tok, err := jwt.ParseSigned(string(token), v.algs)
	if err != nil {
		if _, ok := errors.AsType[*jose.ErrUnexpectedSignatureAlgorithm](err); ok {
			return nil, jwtInvalid("algorithm not allowed")
		}
		return nil, jwtInvalid("malformed token")
	}
	payload, refusal := v.signedPayload(tok)
	if refusal != nil {
		return nil, refusal
	}
	sub, refusal := v.checkClaims(payload, now)
	if refusal != nil {
		return nil, refusal
	}
	who := &Identity{Name: sub, Kind: KindJWT, Claims: payload}
	v.verified.Set(sum, &jwtVerified{token: string(token), who: who})
	return who, nil
}

// signedPayload picks the keys for the token and returns the payload
// the first of them verifies.
func (v *Verifier) signedPayload(tok *jwt.JSONWebToken) ([]byte, *TokenError) {
	h := tok.Headers[0]
	alg := jose.SignatureAlgorithm(h.Algorithm)
	keys := v.byAlg[alg]
	if v.named && h.KeyID != "" {
		if keys = v.byKid[h.KeyID]; keys == nil {
			return nil, jwtInvalid("unknown key")
		}
	}
	tried := 0
	for _, k := range keys {
		if !slices.Contains(k.algs, alg) {
			continue // the kid's key is not made for this alg
		}
		if tried == jwtMaxTries {
			break
		}
		tried++
		var payload jwtPayload
		err := tok.Claims(k.key, &payload)
		if err == nil {
			return payload, nil
		}
		if !errors.Is(err, jose.ErrCryptoFailure) {
			// The signature was not what failed: the payload is not JSON,
			// or a crit header is not understood. Another key won't help.
			return nil, jwtInvalid("malformed token")
		}
	}
	if tried == 0 {
		return nil, jwtInvalid("no key for the token's algorithm")
	}
	return nil, jwtInvalid("bad signature")
}

// jwtPayload receives the verified payload from go-jose, which has checked
// that it is one JSON value.
type jwtPayload []byte

func (p *jwtPayload) UnmarshalJSON(b []byte) error {
	*p = append((*p)[:0], b...)
	return nil
}

// checkClaims checks a verified payload's claims and returns its sub.
func (v *Verifier) checkClaims(payload []byte, now time.Time) (string, *TokenError) {
	s := &jwtScan{v: v}
	err := jsonparser.ObjectEach(payload, func(key, value []byte, typ jsonparser.ValueType, _ int) error {
		return s.claim(key, value, typ)
	})
	if refusal, ok := err.(*TokenError); ok {
		return "", refusal // from claim, unwrapped: ObjectEach returns it as is
	}
	if err != nil {
		return "", jwtInvalid("claims are not a JSON object")
	}
	if s.std.Expiry == nil {
		return "", jwtInvalid("token has no expiry")
	}
	switch err := s.std.ValidateWithLeeway(jwt.Expected{Issuer: v.issuer, Time: now}, v.leeway); {
	case err == nil:
	case errors.Is(err, jwt.ErrExpired):
		return "", jwtInvalid("token has expired")
	case errors.Is(err, jwt.ErrNotValidYet):
		return "", jwtInvalid("token is not valid yet")
	case errors.Is(err, jwt.ErrIssuedInTheFuture):
		return "", jwtInvalid("token is issued in the future")
	case errors.Is(err, jwt.ErrInvalidIssuer):
		return "", jwtInvalid("wrong issuer")
	default:
		return "", jwtInvalid("invalid claims")
	}
	if v.audience != "" && !s.audienceMet {
		return "", jwtInvalid("wrong audience")
	}
	for i, r := range v.require {
		switch {
		case s.present&(1<<i) == 0:
			return "", jwtInsufficient(r.missing)
		case s.held&(1<<i) == 0:
			return "", jwtInsufficient(r.mismatch)
		}
	}
	return s.std.Subject, nil
}

// jwtScan is what one pass over a verified payload found. A claim the
// verifier reads may appear once only: JSON decoders disagree on which of
// two copies wins, and the backend must see the claims that were checked.
type jwtScan struct {
	v             *Verifier
	std           jwt.Claims
	exp, nbf, iat jwt.NumericDate // std's pointers point here
	seen          uint8           // jwtSeen* bits
	audienceMet   bool
	present, held uint64 // bit i: v.require[i]
}

const (
	jwtSeenIss = 1 << iota
	jwtSeenSub
	jwtSeenAud
	jwtSeenExp
	jwtSeenNbf
	jwtSeenIat
)

// claim reads one top-level claim (key already unescaped by jsonparser).
// A *TokenError ends the scan.
func (s *jwtScan) claim(key, value []byte, typ jsonparser.ValueType) error {
	var bit uint8
	switch string(key) {
	case "iss":
		bit = jwtSeenIss
		if typ != jsonparser.String {
			return jwtInvalid("iss is not a string")
		}
		iss, err := jsonparser.ParseString(value)
		if err != nil {
			return jwtInvalid("iss is not a string")
		}
		s.std.Issuer = iss
	case "sub":
		bit = jwtSeenSub
		if typ != jsonparser.String {
			return jwtInvalid("sub is not a string")
		}
		sub, err := jsonparser.ParseString(value)
		if err != nil {
			return jwtInvalid("sub is not a string")
		}
		s.std.Subject = sub
	case "aud":
		bit = jwtSeenAud
		met, ok := jwtAudienceHas(value, typ, s.v.audience)
		if !ok {
			return jwtInvalid("aud is not a string or an array of strings")
		}
		s.audienceMet = met
	case "exp":
		bit = jwtSeenExp
		if !jwtNumericDate(&s.exp, value, typ) {
			return jwtInvalid("exp is not a number")
		}
		s.std.Expiry = &s.exp
	case "nbf":
		bit = jwtSeenNbf
		if !jwtNumericDate(&s.nbf, value, typ) {
			return jwtInvalid("nbf is not a number")
		}
		s.std.NotBefore = &s.nbf
	case "iat":
		bit = jwtSeenIat
		if !jwtNumericDate(&s.iat, value, typ) {
			return jwtInvalid("iat is not a number")
		}
		s.std.IssuedAt = &s.iat
	}
	if s.seen&bit != 0 {
		return jwtInvalid("a claim appears twice")
	}
	s.seen |= bit
	for i := range s.v.require {
		r := &s.v.require[i]
		if r.claim != string(key) {
			continue
		}
		if s.present&(1<<i) != 0 {
			return jwtInvalid("a claim appears twice")
		}
		s.present |= 1 << i
		if jwtClaimHolds(value, typ, r.value) {
			s.held |= 1 << i
		}
	}
	return nil
}

// jwtNumericDate reads a NumericDate (RFC 7519 section 2) with go-jose's
// rules: a number, fractions dropped, absurd values refused.
func jwtNumericDate(d *jwt.NumericDate, value []byte, typ jsonparser.ValueType) bool {
	return typ == jsonparser.Number && d.UnmarshalJSON(value) == nil
}

// jwtAudienceHas reports whether an aud claim (a string or an array of
// strings, RFC 7519 section 4.1.3) holds want; ok is false when the claim
// is neither.
func jwtAudienceHas(value []byte, typ jsonparser.ValueType, want string) (met, ok bool) {
	switch typ {
	case jsonparser.String:
		var buf [128]byte
		s, err := jsonparser.Unescape(value, buf[:])
		return err == nil && string(s) == want, err == nil
	case jsonparser.Array:
		ok = true
		_, err := jsonparser.ArrayEach(value, func(elem []byte, t jsonparser.ValueType, _ int, _ error) {
			var buf [128]byte
			s, err := jsonparser.Unescape(elem, buf[:])
			if t != jsonparser.String || err != nil {
				ok = false
				return
			}
			met = met || string(s) == want
		})
		return met && ok, ok && err == nil
	}
	return false, false
}

// jwtClaimHolds reports whether a claim holds a required value: a string
// equal to it or with it among its space-separated words (OAuth's scope,
// RFC 6749 section 3.3), or an array with it as an element. Numbers,
// booleans and objects never hold a value.
func jwtClaimHolds(value []byte, typ jsonparser.ValueType, want string) bool {
	var buf [256]byte
	switch typ {
	case jsonparser.String:
		s, err := jsonparser.Unescape(value, buf[:])
		if err != nil {
			return false
		}
		for len(s) > 0 {
			var word []byte
			word, s, _ = bytes.Cut(s, []byte{' '})
			if string(word) == want {
				return true
			}
		}
	case jsonparser.Array:
		held := false
		jsonparser.ArrayEach(value, func(elem []byte, t jsonparser.ValueType, _ int, _ error) {
			if t != jsonparser.String || held {
				return
			}
			if s, err := jsonparser.Unescape(elem, buf[:]); err == nil && string(s) == want {
				held = true
			}
		})
		return held
	}
	return false
}

// jwtAllowed checks the configured algorithms (validated already; a
// verifier must be safe on its own all the same).
func jwtAllowed(names []string) ([]jose.SignatureAlgorithm, error) {
	if len(names) == 0 {
		return nil, errors.New("no algorithms allowed")
	}
	var algs []jose.SignatureAlgorithm
	for _, name := range names {
		switch {
		case strings.EqualFold(name, "none"):
			return nil, errors.New("unsigned tokens (none) are never accepted")
		case !slices.Contains(config.JWTAlgorithms, name):
			return nil, fmt.Errorf("unknown algorithm %q", name)
		}
		if alg := jose.SignatureAlgorithm(name); !slices.Contains(algs, alg) {
			algs = append(algs, alg)
		}
	}
	return algs, nil
}

// jwtAlgsFor lists the algorithms a key's type can verify.
func jwtAlgsFor(key any) []jose.SignatureAlgorithm {
	switch k := key.(type) {
	case *rsa.PublicKey:
		return []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512}
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return []jose.SignatureAlgorithm{jose.ES256}
		case elliptic.P384():
			return []jose.SignatureAlgorithm{jose.ES384}
		case elliptic.P521():
			return []jose.SignatureAlgorithm{jose.ES512}
		}
	case ed25519.PublicKey:
		return []jose.SignatureAlgorithm{jose.EdDSA}
	case []byte:
		// RFC 7518 section 3.2: a key at least as long as the hash.
		var algs []jose.SignatureAlgorithm
		for _, hs := range []struct {
			alg   jose.SignatureAlgorithm
			bytes int
		}{{jose.HS256, 32}, {jose.HS384, 48}, {jose.HS512, 64}} {
			if len(k) >= hs.bytes {
				algs = append(algs, hs.alg)
			}
		}
		return algs
	}
	return nil
}

// jwtNewKey pairs a key with the allowed algorithms its type can verify,
// narrowed to declared when a JWK names its alg. It is nil when none is
// left.
func jwtNewKey(kid string, key any, allowed []jose.SignatureAlgorithm, declared string) *jwtKey {
	k := &jwtKey{kid: kid, key: key}
	for _, alg := range jwtAlgsFor(key) {
		if slices.Contains(allowed, alg) && (declared == "" || declared == string(alg)) {
			k.algs = append(k.algs, alg)
		}
	}
	if len(k.algs) == 0 {
		return nil
	}
	return k
}

// jwtSecretKeys is the one key of a shared secret. Every allowed
// algorithm must be an HMAC one the secret is long enough for.
func jwtSecretKeys(secret []byte, allowed []jose.SignatureAlgorithm) ([]*jwtKey, error) {
	k := jwtNewKey("", secret, allowed, "")
	for _, alg := range allowed {
		switch {
		case !strings.HasPrefix(string(alg), "HS"):
			return nil, fmt.Errorf("%s needs a public key; a secret verifies HS256, HS384 and HS512 only", alg)
		case k == nil || !slices.Contains(k.algs, alg):
			return nil, fmt.Errorf("the secret is %d bytes, too short for %s (RFC 7518 section 3.2)", len(secret), alg)
		}
	}
	return []*jwtKey{k}, nil
}

// jwtPublicOnly refuses HMAC algorithms with public keys: they would be
// verified with key bytes anyone may hold.
func jwtPublicOnly(allowed []jose.SignatureAlgorithm) error {
	for _, alg := range allowed {
		if strings.HasPrefix(string(alg), "HS") {
			return fmt.Errorf("%s needs a shared secret; with public keys anyone who has them could sign (algorithm confusion)", alg)
		}
	}
	return nil
}

// jwtPEMKeys reads a key file: the first PEM block, a public key (PKIX or
// PKCS #1) or a certificate whose key is used.
func jwtPEMKeys(data []byte, allowed []jose.SignatureAlgorithm) ([]*jwtKey, error) {
	if err := jwtPublicOnly(allowed); err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("key file holds no PEM block")
	}
	var key any
	var err error
	switch block.Type {
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			key = cert.PublicKey
		}
	default:
		if strings.Contains(block.Type, "PRIVATE KEY") {
			return nil, errors.New("key file holds a private key; give the public key alone (openssl pkey -pubout)")
		}
		return nil, fmt.Errorf("key file's PEM block is %q, not PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	if err := jwtCheckPublic(key); err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	k := jwtNewKey("", key, allowed, "")
	if k == nil {
		return nil, fmt.Errorf("key file holds %s, which verifies none of the algorithms allowed (%s)", jwtDescribe(key), jwtJoin(allowed))
	}
	return []*jwtKey{k}, nil
}

// jwtSetKeys reads a JWKS (RFC 7517 section 5). Keys not for signing
// (use other than "sig"), of types go-jose does not know, or made for no
// allowed algorithm are left out, as section 5 asks; a key that is
// malformed, weak or private refuses the whole set.
func jwtSetKeys(data []byte, allowed []jose.SignatureAlgorithm) ([]*jwtKey, error) {
	if err := jwtPublicOnly(allowed); err != nil {
		return nil, err
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("jwks file is not a JSON Web Key Set: %w", err)
	}
	var keys []*jwtKey
	for i, raw := range set.Keys {
		var jwk jose.JSONWebKey
		if err := jwk.UnmarshalJSON(raw); err != nil {
			if errors.Is(err, jose.ErrUnsupportedKeyType) {
				continue
			}
			return nil, fmt.Errorf("jwks file key %d: %w", i, err)
		}
		if jwk.Use != "" && jwk.Use != "sig" {
			continue
		}
		switch jwk.Key.(type) {
		case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
			return nil, fmt.Errorf("jwks file key %d (kid %q) holds a private key; publish the public part alone", i, jwk.KeyID)
		}
		if err := jwtCheckPublic(jwk.Key); err != nil {
			return nil, fmt.Errorf("jwks file key %d (kid %q): %w", i, jwk.KeyID, err)
		}
		if k := jwtNewKey(jwk.KeyID, jwk.Key, allowed, jwk.Algorithm); k != nil {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("jwks file has no signing key for the algorithms allowed (%s) among its %d keys", jwtJoin(allowed), len(set.Keys))
	}
	return keys, nil
}

// jwtCheckPublic refuses keys too weak to trust. Other key types pass:
// they fit no algorithm and are left out later.
func jwtCheckPublic(key any) error {
	if k, ok := key.(*rsa.PublicKey); ok && k.N.BitLen() < jwtMinRSABits {
		return fmt.Errorf("RSA key is %d bits; at least %d are needed (RFC 7518 section 3.3)", k.N.BitLen(), jwtMinRSABits)
	}
	return nil
}

// jwtDescribe names a key's type for an error message.
func jwtDescribe(key any) string {
	switch k := key.(type) {
	case *rsa.PublicKey:
		return "an RSA key"
	case *ecdsa.PublicKey:
		return "an ECDSA " + k.Curve.Params().Name + " key"
	case ed25519.PublicKey:
		return "an Ed25519 key"
	}
	return fmt.Sprintf("a key of type %T", key)
}

func jwtJoin(algs []jose.SignatureAlgorithm) string {
	names := make([]string, len(algs))
	for i, alg := range algs {
		names[i] = string(alg)
	}
	return strings.Join(names, ", ")
}

// jwtRequirements orders Require by claim name, so that the first unmet
// one, which a refusal names, does not depend on map order.
func jwtRequirements(require map[string]string) ([]jwtRequirement, error) {
	if len(require) > jwtMaxRequire {
		return nil, fmt.Errorf("at most %d required claims, got %d", jwtMaxRequire, len(require))
	}
	claims := make([]string, 0, len(require))
	for claim := range require {
		claims = append(claims, claim)
	}
	sort.Strings(claims)
	reqs := make([]jwtRequirement, 0, len(claims))
	for _, claim := range claims {
		value := require[claim]
		if claim == "" || value == "" {
			return nil, errors.New("a required claim needs a name and the value it must hold")
		}
		reqs = append(reqs, jwtRequirement{
			claim:    claim,
			value:    value,
			missing:  fmt.Sprintf("token has no %s claim", claim),
			mismatch: fmt.Sprintf("%s claim does not hold %q", claim, value),
		})
	}
	return reqs, nil
}
