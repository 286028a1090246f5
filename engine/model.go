package engine

import (
	"slices"
	"strings"
	"time"
)

// GrantType names an authorization grant (RFC 6749 §4).
type GrantType string

// Grants keyhook implements.
const (
	GrantClientCredentials GrantType = "client_credentials"
	GrantPassword          GrantType = "password"
	GrantRefreshToken      GrantType = "refresh_token"
	GrantAuthorizationCode GrantType = "authorization_code"
)

// KnownGrant reports whether g is a grant keyhook implements.
func KnownGrant(g GrantType) bool {
	switch g {
	case GrantClientCredentials, GrantPassword, GrantRefreshToken, GrantAuthorizationCode, GrantDeviceCode, GrantJWTBearer, GrantTokenExchange:
		return true
	}
	return false
}

// AuthMethod is a client authentication method (RFC 7591 §2,
// token_endpoint_auth_method).
type AuthMethod string

// Client authentication methods.
const (
	AuthSecretBasic AuthMethod = "client_secret_basic"
	AuthSecretPost  AuthMethod = "client_secret_post"
	AuthSecretJWT   AuthMethod = "client_secret_jwt"
	AuthPrivateKey  AuthMethod = "private_key_jwt"
	AuthNone        AuthMethod = "none"
)

// KnownAuthMethod reports whether m is a method keyhook implements.
func KnownAuthMethod(m AuthMethod) bool {
	switch m {
	case AuthSecretBasic, AuthSecretPost, AuthSecretJWT, AuthPrivateKey, AuthNone:
		return true
	}
	return false
}

// UsesSecret reports whether the method authenticates with client_secret.
func (m AuthMethod) UsesSecret() bool {
	return m == AuthSecretBasic || m == AuthSecretPost || m == AuthSecretJWT
}

// Client is a registered OAuth client (RFC 7591 §2 names; docs/admin-api.md).
type Client struct {
	ID   string
	Name string
	// SecretHash verifies client_secret; SecretSealed holds the secret
	// encrypted, only for client_secret_jwt, which needs it as HMAC key.
	SecretHash     string
	SecretSealed   string
	AuthMethod     AuthMethod
	AuthSigningAlg string
	GrantTypes     []GrantType
	RedirectURIs   []string
	Scope          string
	JWKS           string
	JWKSURI        string

	AccessTokenAsJWT          bool
	RunIntrospectionBeforeJWT bool
	AccessTokenLifetime       int64
	RefreshTokenLifetime      int64
	IDTokenLifetime           int64
	// RefreshTokenReuseInterval is how many seconds a rotated refresh
	// token may be presented again and get the same successor answer
	// (docs/refresh.md); 0 is strict reuse detection (RFC 9700 §4.14.2).
	RefreshTokenReuseInterval int64
	IntrospectionScripts      []string
	UpdateTokenScripts        []string
	Attributes                map[string]string
	// AllowedCORSOrigins are the browser origins (RFC 6454) that get
	// CORS answers from the endpoints a browser app calls
	// (docs/browser-flow.md).
	AllowedCORSOrigins []string
	// AllowedResources are the resource indicators (RFC 8707) the client
	// may ask tokens for (docs/resource-indicators.md).
	AllowedResources []string
	// RequirePushedAuthorizationRequests makes the authorization
	// endpoint take only pushed requests of this client (RFC 9126 §6).
	RequirePushedAuthorizationRequests bool
	// TokenExchange is which tokens the client may exchange (RFC 8693,
	// docs/token-exchange.md); nil is the zero policy.
	TokenExchange *TokenExchangePolicy
	// DPoPBoundAccessTokens makes the token endpoint take only requests
	// of this client with a DPoP proof (RFC 9449 §5.2).
	DPoPBoundAccessTokens bool
	// Registration is set for clients registered dynamically (RFC 7591,
	// docs/registration.md); nil for those the admin API created.
	Registration         *ClientRegistration
	CreatedAt, UpdatedAt time.Time
}

// Public reports whether the client has no credentials of its own.
func (c *Client) Public() bool { return c.AuthMethod == AuthNone }

// HasGrant reports whether the client may use grant g.
func (c *Client) HasGrant(g GrantType) bool { return slices.Contains(c.GrantTypes, g) }

// TokenKind tells access from refresh tokens.
type TokenKind string

// Token kinds; the values are the RFC 7662 token_type_hint names.
const (
	KindAccess  TokenKind = "access_token"
	KindRefresh TokenKind = "refresh_token"
)

// TokenFormat is how a token travels.
type TokenFormat string

// Token formats.
const (
	FormatOpaque TokenFormat = "opaque"
	FormatJWT    TokenFormat = "jwt"
)

// Token is the stored record of an issued access or refresh token. Opaque
// tokens are found by the SHA-256 of their value, JWTs by their jti.
type Token struct {
	ID        string
	Kind      TokenKind
	Format    TokenFormat
	ClientID  string
	Subject   string
	Username  string
	Scope     string
	GrantType GrantType
	// FamilyID groups the tokens of one grant: a refresh token and all
	// that were issued from it and its successors.
	FamilyID string
	Audience []string
	// Resources are the resource indicators (RFC 8707) of the token: for
	// an access token those it was issued for, for a refresh token all
	// that its grant covers, which a refresh may ask for again.
	Resources []string
	// KeyID is the kid of the key that signed a JWT.
	KeyID string
	// Actor is the act claim of a token issued by token exchange
	// (RFC 8693 §4.1): who acts for the subject; nil for others.
	Actor map[string]any
	// JKT is the RFC 7638 thumbprint of the DPoP key the token is bound
	// to (cnf.jkt, RFC 9449 §6), "" for a bearer token.
	JKT string
	// Claims are the claims beyond the standard ones, as scripts left them.
	Claims    map[string]any
	IssuedAt  time.Time
	ExpiresAt time.Time
	AuthTime  time.Time
	Revoked   bool
	// UsedAt is set when a refresh token was exchanged (rotation).
	UsedAt time.Time
	// Successor is the sealed answer of the rotation that used this
	// refresh token, kept only while its client's reuse interval lasts.
	Successor *Successor
}

// Successor is the answer a refresh token's rotation gave, sealed with
// the server's key, and until when it may be answered again
// (docs/refresh.md).
type Successor struct {
	Sealed string
	Until  time.Time
}

// Active reports whether the token may be used at now.
func (t *Token) Active(now time.Time) bool {
	return !t.Revoked && t.UsedAt.IsZero() && now.Before(t.ExpiresAt)
}

// User is a resource owner for the password and code grants.
type User struct {
	Username     string
	PasswordHash string
	Claims       map[string]any
	Disabled     bool
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// SigningKey is one of the server's private keys, stored as a JWK.
type SigningKey struct {
	ID         string
	Alg        string
	PrivateJWK string
	CreatedAt  time.Time
	// RetiredAt is set when another key became current.
	RetiredAt time.Time
}

// AuthCode is an authorization code (RFC 6749 §4.1), stored by hash.
type AuthCode struct {
	ID                  string
	ClientID            string
	Username            string
	RedirectURI         string
	Scope               string
	CodeChallenge       string
	CodeChallengeMethod string
	Nonce               string
	// Resources are the resource indicators (RFC 8707) of the
	// authorization request: what the grant covers.
	Resources []string
	// DPoPJKT is the thumbprint of the DPoP key the code is bound to
	// (dpop_jkt, RFC 9449 §10), "" when none.
	DPoPJKT   string
	FamilyID  string
	AuthTime  time.Time
	ExpiresAt time.Time
	UsedAt    time.Time
}

// splitScope splits a space-separated scope string (RFC 6749 §3.3).
func splitScope(s string) []string { return strings.Fields(s) }
