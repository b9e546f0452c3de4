package auth

// Identity is who a request authenticated as.
type Identity struct {
	// Name is the API key's name, or the token's sub claim.
	Name string
	// Kind is "api_key" or "jwt".
	Kind string
	// Claims is the verified token's payload as JSON; nil for an API key.
	Claims []byte
}

// Identity kinds.
const (
	KindAPIKey = "api_key"
	KindJWT    = "jwt"
)
