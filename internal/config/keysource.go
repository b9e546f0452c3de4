package config

import (
	"fmt"
	"strings"
)

// KeySource names a piece of a request that a policy keys on.
type KeySource struct {
	Kind KeyKind
	// Name is the header, cookie or query parameter name.
	Name string
	// Path is the JSON field path for KeyJSON and the claim's path for
	// KeyJWTClaim, split at dots.
	Path []string
}

// KeyKind is where a key is read from.
type KeyKind int

// The key sources of SPEC section 2.
const (
	KeyHeader   KeyKind = iota + 1 // header:NAME
	KeyCookie                      // cookie:NAME
	KeyQuery                       // query:NAME
	KeyJSON                        // json:dotted.path, a field of the JSON body
	KeyClientIP                    // client_ip, as X-Real-IP would say
	KeyPath                        // path, the normalised request path
	KeyAPIKey                      // api_key, the name of the caller's API key
	KeyJWTClaim                    // jwt:CLAIM, a claim of the caller's verified token
)

// ParseKeySource reads "header:X-User-Id", "json:user.id", "client_ip"...
func ParseKeySource(s string) (KeySource, error) {
	kind, arg, hasArg := strings.Cut(s, ":")
	switch kind {
	case "client_ip", "path", "api_key":
		if hasArg {
			return KeySource{}, fmt.Errorf("key source %q takes no argument", kind)
		}
		switch kind {
		case "path":
			return KeySource{Kind: KeyPath}, nil
		case "api_key":
			return KeySource{Kind: KeyAPIKey}, nil
		}
		return KeySource{Kind: KeyClientIP}, nil
	case "header", "cookie", "query", "json", "jwt":
		if arg == "" {
			return KeySource{}, fmt.Errorf("key source %q needs a name: %s:NAME", s, kind)
		}
	default:
		return KeySource{}, fmt.Errorf("unknown key source %q (header:NAME, cookie:NAME, query:NAME, json:dotted.path, client_ip, path, api_key or jwt:CLAIM)", s)
	}
	switch kind {
	case "header":
		if !tokenRE.MatchString(arg) {
			return KeySource{}, fmt.Errorf("key source %q: %q is not a header name", s, arg)
		}
		return KeySource{Kind: KeyHeader, Name: arg}, nil
	case "cookie":
		return KeySource{Kind: KeyCookie, Name: arg}, nil
	case "query":
		return KeySource{Kind: KeyQuery, Name: arg}, nil
	}
	path := strings.Split(arg, ".")
	for _, p := range path {
		if p == "" {
			return KeySource{}, fmt.Errorf("key source %q: empty field name in the path", s)
		}
	}
	if kind == "jwt" {
		return KeySource{Kind: KeyJWTClaim, Path: path}, nil
	}
	return KeySource{Kind: KeyJSON, Path: path}, nil
}
