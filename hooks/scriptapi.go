package hooks

// The types below describe, field for field, what a script receives and
// returns (docs/scripts.md). The engine builds these values as maps, which
// is what the runtimes copy into a script; the types are their schema:
// the json tags are the names a script sees, and scripts/keyhook.d.ts is
// generated from them (go generate ./scripts). Tests check that the maps
// the engine builds have exactly these names.
//
// Tags read by the generator: omitempty makes a field optional; ts gives
// its TypeScript type where the Go type cannot say it (functions, unions);
// a field tagged json:"-" and ts:"index" stands for any other name.

// ScriptContext is context, the last argument of every hook function: a
// fresh read-only view per call (docs/scripts.md, "context").
type ScriptContext struct {
	// Why the script runs: "introspection", "jwt_creation", "token" or
	// "registration".
	Phase Phase `json:"phase" ts:"\"introspection\" | \"jwt_creation\" | \"token\" | \"registration\""`
	// The owning client: the client the token was issued to. For
	// validateRegistration, the client as stored (an update) or only the
	// client_id it is about to get (a registration).
	Client ClientInfo `json:"client"`
	// The registration validateRegistration decides.
	Registration *RegistrationInfo `json:"registration,omitempty"`
	// The client that called the introspection endpoint, when known.
	Caller *CallerInfo `json:"caller,omitempty"`
	// The token the call is about.
	Token *TokenInfo `json:"token,omitempty"`
	// The token's user, or null for tokens without one.
	User *UserInfo `json:"user"`
	// The HTTP request, without its credentials.
	Request HTTPRequestInfo `json:"request"`
	// The script's own config.
	Config map[string]string `json:"config"`
	// The script's own secrets (docs/scripts.md, "Secrets").
	Secrets map[string]string `json:"secrets"`
	// Writes a line to the server log, with the script's name and the
	// request id, and to the script's live log.
	Log func(args ...any) `json:"log" ts:"(...args: unknown[]) => void"`
	// Calls a host of the script's allowed_hosts over HTTPS and blocks
	// until the answer; throws an Error whose message starts with
	// "fetch:" when the call is refused or fails (docs/scripts.md,
	// "context.fetch").
	Fetch func(url string, options *FetchOptions) *FetchResponse `json:"fetch" ts:"(url: string, options?: FetchOptions) => FetchResponse"`
}

// ClientInfo is context.client.
type ClientInfo struct {
	ClientID   string `json:"client_id"`
	ClientName string `json:"client_name"`
	// Space-separated scopes the client may ask for.
	Scope      string   `json:"scope"`
	GrantTypes []string `json:"grant_types"`
	// The client's free-form attributes.
	Attributes map[string]any `json:"attributes"`
}

// CallerInfo is context.caller.
type CallerInfo struct {
	ClientID string `json:"client_id"`
}

// TokenInfo is context.token.
type TokenInfo struct {
	// "access_token" or "refresh_token".
	Type string `json:"type"`
	// "opaque" or "jwt".
	Format   string `json:"format"`
	ClientID string `json:"client_id"`
	Subject  string `json:"subject"`
	Username string `json:"username"`
	// Space-separated granted scopes.
	Scope     string `json:"scope"`
	GrantType string `json:"grant_type"`
	// The token's audience (aud): for an access token the resources it
	// is for, or the client's id when none; for a refresh token the
	// client's id.
	Audience []string `json:"audience"`
	// The resource indicators (RFC 8707) of the token: for an access
	// token those it was asked for, for a refresh token all that its
	// grant covers; empty when none were asked
	// (docs/resource-indicators.md).
	Resources []string `json:"resources"`
	// Seconds since the Unix epoch.
	IssuedAt int64 `json:"issued_at"`
	// Seconds since the Unix epoch; absent while the lifetime functions
	// decide it.
	ExpiresAt int64 `json:"expires_at,omitempty"`
	// The JWT ID, for tokens of format jwt.
	JTI string `json:"jti,omitempty"`
	// The DPoP key the token is bound to (RFC 9449 §6), for bound tokens
	// only; scripts cannot change it (docs/dpop.md).
	Cnf    *Confirmation  `json:"cnf,omitempty"`
	Claims map[string]any `json:"claims"`
}

// Confirmation is the cnf of a DPoP-bound token (RFC 7800 §3.1).
type Confirmation struct {
	// The RFC 7638 SHA-256 thumbprint of the DPoP public key, base64url.
	JKT string `json:"jkt"`
}

// UserInfo is context.user.
type UserInfo struct {
	Username string         `json:"username"`
	Claims   map[string]any `json:"claims"`
}

// HTTPRequestInfo is context.request: first values only, credentials removed.
type HTTPRequestInfo struct {
	Method string `json:"method"`
	// Lower-cased header names; no authorization, cookie or other
	// credential header.
	Headers map[string]string `json:"headers"`
	// The request's parameters, without client_secret, password, code,
	// tokens and other credentials.
	Params map[string]string `json:"params"`
}

// FetchOptions is the optional second argument of context.fetch.
type FetchOptions struct {
	// GET by default; HEAD, POST, PUT, PATCH or DELETE.
	Method string `json:"method,omitempty"`
	// Request headers; host, content-length, transfer-encoding,
	// connection and proxy-* are refused.
	Headers map[string]string `json:"headers,omitempty"`
	// The request body: JSON.stringify an object yourself.
	Body string `json:"body,omitempty"`
	// Default and maximum: what remains of the script's timeout_ms and
	// of the request's script budget.
	TimeoutMS float64 `json:"timeout_ms,omitempty"`
}

// FetchResponse is what context.fetch returns; any status is an answer.
type FetchResponse struct {
	Status int `json:"status"`
	// Lower-cased names; repeated headers joined with ", ".
	Headers map[string]string `json:"headers"`
	// JSON.parse(r.body) for JSON.
	Body string `json:"body"`
}

// IntrospectionResponse is the response argument of modifyResponse: the
// RFC 7662 §2.2 answer of an active token, with the token's claims.
type IntrospectionResponse struct {
	// Set to false to make the answer exactly {"active": false}.
	Active    bool   `json:"active"`
	ClientID  string `json:"client_id"`
	Iss       string `json:"iss"`
	Exp       int64  `json:"exp"`
	Iat       int64  `json:"iat"`
	Nbf       int64  `json:"nbf"`
	TokenType string `json:"token_type"`
	Scope     string `json:"scope,omitempty"`
	Sub       string `json:"sub,omitempty"`
	Aud       any    `json:"aud,omitempty" ts:"string | string[]"`
	Jti       string `json:"jti,omitempty"`
	GrantType string `json:"grant_type,omitempty"`
	Username  string `json:"username,omitempty"`
	// The DPoP key a bound token is bound to (RFC 9449 §6.2); scripts
	// cannot change it, and token_type stays "DPoP" (docs/dpop.md).
	Cnf *Confirmation `json:"cnf,omitempty"`
	// Any other field: the token's claims, or what a script adds.
	Other map[string]any `json:"-" ts:"index"`
}

// TokenArg is the token argument of modifyAccessToken, modifyIdToken and
// modifyRefreshToken: the JWS header and the claims about to be issued.
type TokenArg struct {
	// The JWS header; alg, kid, typ and the like cannot be changed.
	// Absent for modifyRefreshToken: a refresh token has no header.
	Header map[string]any `json:"header,omitempty"`
	// The claims; iss, jti, iat, nbf, exp and client_id cannot be
	// changed.
	Claims map[string]any `json:"claims"`
}

// AssertionArg is the assertion argument of validateAssertion: the JWT
// of a JWT bearer grant (RFC 7523 §2.1), verified, and the subject the
// token will be for (docs/jwt-bearer.md).
type AssertionArg struct {
	// The JWS header, for reading: edits are ignored.
	Header map[string]any `json:"header"`
	// The JWT's claims (iss, sub, aud, exp, jti and the issuer's own),
	// for reading: edits are ignored.
	Claims map[string]any `json:"claims"`
	// The subject the token is for: the JWT's sub until a script sets
	// another (a string of 1 to 1024 characters).
	Subject string `json:"subject"`
	// The name of the trusted issuer that signed the JWT.
	TrustedIssuer string `json:"trusted_issuer"`
}

// TokenExchangeRequest is the request argument of modifyTokenExchange: a
// token exchange (RFC 8693 §2.1) the policy of the requesting client
// already allows (docs/token-exchange.md). Edit scope, audience and
// resource to narrow it; what is left is checked against the policy
// again, so nothing widens past it.
type TokenExchangeRequest struct {
	// The subject_token: whom the new token stands for.
	Subject ExchangeParty `json:"subject"`
	// The actor_token, for delegation; null for impersonation.
	Actor *ExchangeParty `json:"actor"`
	// The token type to issue: urn:ietf:params:oauth:token-type:access_token
	// or urn:ietf:params:oauth:token-type:jwt.
	RequestedTokenType string `json:"requested_token_type"`
	// The audience values asked for.
	Audience []string `json:"audience"`
	// The resource indicators (RFC 8707) asked for.
	Resource []string `json:"resource"`
	// Space-separated scopes the new token will have.
	Scope string `json:"scope"`
}

// ExchangeParty is a token presented for token exchange, as verified.
type ExchangeParty struct {
	Sub string `json:"sub"`
	// The client the token was issued to.
	ClientID string `json:"client_id"`
	// Space-separated scopes of the token.
	Scope string `json:"scope"`
	// Seconds since the Unix epoch.
	Exp int64 `json:"exp"`
	// The issuer of a foreign JWT; absent for this server's tokens.
	Iss string `json:"iss,omitempty"`
	// The token's user, if it has one.
	Username string `json:"username,omitempty"`
	// The token's own act claim: the actors it already names.
	Act map[string]any `json:"act,omitempty"`
}

// RegistrationInfo is context.registration, for validateRegistration
// (docs/registration.md).
type RegistrationInfo struct {
	// "create" (POST /oauth2/register) or "update" (PUT
	// /oauth2/register/{client_id}).
	Operation string `json:"operation" ts:"\"create\" | \"update\""`
	// The label of the initial access token the client registered with;
	// empty for open registration.
	InitialTokenLabel string `json:"initial_token_label"`
	// Whether the client registered without an initial access token
	// (--open-registration).
	Open bool `json:"open"`
}

// ClientMetadata is the metadata argument of validateRegistration: the
// client metadata of RFC 7591 §2 as the request gave it (members keyhook
// does not keep are there too). A script may change, add or delete
// members; the server checks the result as it checks a request.
type ClientMetadata struct {
	RedirectURIs            []string `json:"redirect_uris,omitempty"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method,omitempty"`
	GrantTypes              []string `json:"grant_types,omitempty"`
	ResponseTypes           []string `json:"response_types,omitempty"`
	ClientName              string   `json:"client_name,omitempty"`
	// Space-separated scopes.
	Scope   string         `json:"scope,omitempty"`
	JWKS    map[string]any `json:"jwks,omitempty"`
	JWKSURI string         `json:"jwks_uri,omitempty"`
	// Any other member of the request.
	Other map[string]any `json:"-" ts:"index"`
}
