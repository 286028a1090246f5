package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/keyhook/keyhook/hooks"
)

// Admin error codes (docs/admin-api.md); web answers 404 and 409 for them.
const (
	CodeNotFound ErrorCode = "not_found"
	CodeConflict ErrorCode = "conflict"
)

// adminErr maps a store error about the kind record id: absent is 404,
// anything else a storage failure.
func adminErr(err error, kind, id string) error {
	if errors.Is(err, ErrNotFound) {
		return Errorf(CodeNotFound, "%s %q does not exist", kind, id)
	}
	return storeFailure(err)
}

func fieldError(field, format string, args ...any) *Error {
	return Errorf(CodeInvalidRequest, "%s: %s", field, fmt.Sprintf(format, args...))
}

// ClientDoc is a client as the admin API reads and writes it, with the
// RFC 7591 names (docs/admin-api.md).
type ClientDoc struct {
	ClientID                    string            `json:"client_id"`
	ClientSecret                string            `json:"client_secret,omitempty"`
	ClientName                  string            `json:"client_name"`
	TokenEndpointAuthMethod     string            `json:"token_endpoint_auth_method"`
	TokenEndpointAuthSigningAlg string            `json:"token_endpoint_auth_signing_alg,omitempty"`
	GrantTypes                  []string          `json:"grant_types"`
	RedirectURIs                []string          `json:"redirect_uris"`
	Scope                       string            `json:"scope"`
	JWKS                        json.RawMessage   `json:"jwks,omitempty"`
	JWKSURI                     string            `json:"jwks_uri,omitempty"`
	AccessTokenAsJWT            bool              `json:"access_token_as_jwt"`
	RunIntrospectionBeforeJWT   bool              `json:"run_introspection_script_before_jwt_creation"`
	AccessTokenLifetime         int64             `json:"access_token_lifetime,omitempty"`
	RefreshTokenLifetime        int64             `json:"refresh_token_lifetime,omitempty"`
	IDTokenLifetime             int64             `json:"id_token_lifetime,omitempty"`
	RefreshTokenReuseInterval   int64             `json:"refresh_token_reuse_interval"`
	IntrospectionScripts        []string          `json:"introspection_scripts"`
	UpdateTokenScripts          []string          `json:"update_token_scripts"`
	Attributes                  map[string]string `json:"attributes"`
	AllowedCORSOrigins          []string          `json:"allowed_cors_origins"`
	AllowedResources            []string          `json:"allowed_resources"`
	// RequirePushedAuthorizationRequests is RFC 9126 §6's client
	// metadata.
	RequirePushedAuthorizationRequests bool `json:"require_pushed_authorization_requests"`
	// TokenExchange is which tokens the client may exchange (RFC 8693;
	// docs/token-exchange.md); null is the default policy.
	TokenExchange *TokenExchangePolicy `json:"token_exchange,omitempty"`
	// DPoPBoundAccessTokens is RFC 9449 §5.2's client metadata.
	DPoPBoundAccessTokens bool `json:"dpop_bound_access_tokens"`
	// JanssenRunIntrospection is Janssen's name for
	// RunIntrospectionBeforeJWT, accepted on input.
	JanssenRunIntrospection *bool `json:"run_introspection_script_before_access_token_as_jwt_creation_and_include_claims,omitempty"`
}

// clientIDPattern: characters that need no escaping in a URL path
// segment (RFC 3986 §3.3: unreserved, "@", ":", "+"), so that every
// client is reachable at /admin/v1/clients/{client_id}; a "/", "?", "#"
// or "%" in an identifier would make it unreachable or ambiguous there.
var clientIDPattern = regexp.MustCompile(`^[A-Za-z0-9._~@:+-]{1,255}$`)

// clientFromDoc validates doc and builds the client it describes; the
// secret handling is left to the caller.
func (e *Engine) clientFromDoc(ctx context.Context, doc *ClientDoc) (*Client, error) {
	c := &Client{
		ID: doc.ClientID, Name: doc.ClientName, AuthMethod: AuthMethod(doc.TokenEndpointAuthMethod),
		AuthSigningAlg: doc.TokenEndpointAuthSigningAlg, RedirectURIs: doc.RedirectURIs, JWKSURI: doc.JWKSURI,
		AccessTokenAsJWT: doc.AccessTokenAsJWT, RunIntrospectionBeforeJWT: doc.RunIntrospectionBeforeJWT,
		AccessTokenLifetime: doc.AccessTokenLifetime, RefreshTokenLifetime: doc.RefreshTokenLifetime,
		IDTokenLifetime: doc.IDTokenLifetime, IntrospectionScripts: doc.IntrospectionScripts,
		UpdateTokenScripts: doc.UpdateTokenScripts, Attributes: doc.Attributes,
		RefreshTokenReuseInterval: doc.RefreshTokenReuseInterval, AllowedCORSOrigins: doc.AllowedCORSOrigins,
		AllowedResources:                   doc.AllowedResources,
		RequirePushedAuthorizationRequests: doc.RequirePushedAuthorizationRequests,
		TokenExchange:                      doc.TokenExchange,
		DPoPBoundAccessTokens:              doc.DPoPBoundAccessTokens,
	}
	if doc.JanssenRunIntrospection != nil {
		c.RunIntrospectionBeforeJWT = c.RunIntrospectionBeforeJWT || *doc.JanssenRunIntrospection
	}
	if c.ID == "" {
		c.ID = randomID()
	}
	if !clientIDPattern.MatchString(c.ID) {
		return nil, fieldError("client_id", "must be 1 to 255 of A-Z a-z 0-9 . _ ~ @ : + -")
	}
	if len(c.Name) > 255 {
		return nil, fieldError("client_name", "must be at most 255 characters")
	}
	if c.AuthMethod == "" {
		c.AuthMethod = AuthSecretBasic
	}
	if !KnownAuthMethod(c.AuthMethod) {
		return nil, fieldError("token_endpoint_auth_method", "unknown method %q", c.AuthMethod)
	}
	if c.AuthSigningAlg != "" {
		okAlgs := privateKeyAlgs
		if c.AuthMethod == AuthSecretJWT {
			okAlgs = secretJWTAlgs
		}
		if !slices.Contains(okAlgs, c.AuthSigningAlg) {
			return nil, fieldError("token_endpoint_auth_signing_alg", "must be one of %s", strings.Join(okAlgs, ", "))
		}
	}
	if doc.GrantTypes == nil {
		doc.GrantTypes = []string{string(GrantClientCredentials)}
	}
	for _, g := range doc.GrantTypes {
		if !KnownGrant(GrantType(g)) {
			return nil, fieldError("grant_types", "unknown grant type %q", g)
		}
		if !slices.Contains(c.GrantTypes, GrantType(g)) {
			c.GrantTypes = append(c.GrantTypes, GrantType(g))
		}
	}
	for _, u := range c.RedirectURIs {
		if err := checkRedirectURI(u); err != nil {
			return nil, fieldError("redirect_uris", "%v", err)
		}
	}
	if err := checkOrigins(c.AllowedCORSOrigins); err != nil {
		return nil, fieldError("allowed_cors_origins", "%v", err)
	}
	if err := checkAllowedResources(c.AllowedResources); err != nil {
		return nil, fieldError("allowed_resources", "%v", err)
	}
	if err := checkTokenExchangePolicy(c.TokenExchange); err != nil {
		return nil, fieldError("token_exchange", "%v", err)
	}
	if p := c.TokenExchange; p != nil {
		p.SubjectClients, p.ActorClients, p.Audiences, p.SubjectIssuers = nonNil(p.SubjectClients), nonNil(p.ActorClients), nonNil(p.Audiences), nonNil(p.SubjectIssuers)
	}
	if c.HasGrant(GrantAuthorizationCode) && len(c.RedirectURIs) == 0 {
		return nil, fieldError("redirect_uris", "the authorization_code grant needs at least one redirect URI")
	}
	scopes := splitScope(doc.Scope)
	for _, s := range scopes {
		if !validScopeToken(s) {
			return nil, fieldError("scope", "%q is not a valid scope", s)
		}
	}
	c.Scope = strings.Join(scopes, " ")
	if len(doc.JWKS) > 0 && string(doc.JWKS) != "null" {
		jwks, err := publicKeySet(doc.JWKS, nil)
		if err != nil {
			return nil, err
		}
		c.JWKS = jwks
	}
	if c.JWKSURI != "" {
		if err := jwksURIAllowed(c.JWKSURI, e.cfg.JWKSURI.AllowPrivate); err != nil {
			return nil, fieldError("jwks_uri", "%v", err)
		}
	}
	if err := checkHMACSecret(c, doc.ClientSecret); err != nil {
		return nil, err
	}
	if c.AuthMethod == AuthPrivateKey && c.JWKS == "" && c.JWKSURI == "" {
		return nil, fieldError("jwks", "private_key_jwt needs jwks or jwks_uri")
	}
	for _, lt := range []struct {
		name string
		v    int64
	}{{"access_token_lifetime", c.AccessTokenLifetime}, {"refresh_token_lifetime", c.RefreshTokenLifetime}, {"id_token_lifetime", c.IDTokenLifetime}} {
		// 0 (absent) means the server's lifetime.
		if lt.v != 0 && !validLifetime(lt.v) {
			return nil, fieldError(lt.name, "must be whole seconds from 1 to %d (10 years)", hooks.MaxLifetimeSeconds)
		}
	}
	if err := checkReuseInterval(c.RefreshTokenReuseInterval); err != nil {
		return nil, err
	}
	if err := e.checkBindings(ctx, "introspection_scripts", c.IntrospectionScripts, hooks.KindIntrospection); err != nil {
		return nil, err
	}
	if err := e.checkBindings(ctx, "update_token_scripts", c.UpdateTokenScripts, hooks.KindUpdateToken); err != nil {
		return nil, err
	}
	return c, nil
}

func (e *Engine) checkBindings(ctx context.Context, field string, names []string, kind hooks.Kind) error {
	for _, name := range names {
		s, err := e.st.Scripts.ScriptByName(ctx, name)
		if errors.Is(err, ErrNotFound) {
			return fieldError(field, "script %q does not exist", name)
		}
		if err != nil {
			return storeFailure(err)
		}
		if s.Kind != kind {
			return fieldError(field, "script %q is of type %s", name, s.Kind)
		}
	}
	return nil
}

// checkHMACSecret refuses a client_secret_jwt secret shorter than the
// hash output of the client's token_endpoint_auth_signing_alg (HS256 when
// none is registered): RFC 7518 §3.2 requires at least that, and such a
// secret could never verify an assertion.
func checkHMACSecret(c *Client, secret string) error {
	if c.AuthMethod != AuthSecretJWT || secret == "" {
		return nil
	}
	alg := c.AuthSigningAlg
	if alg == "" {
		alg = string(jose.HS256)
	}
	if n := hmacKeyBytes(alg); len(secret) < n {
		return fieldError("client_secret", "must be at least %d bytes for %s (client_secret_jwt)", n, alg)
	}
	return nil
}

// ClientDocument is the admin view of c (no secret).
func ClientDocument(c *Client) *ClientDoc {
	d := &ClientDoc{
		ClientID: c.ID, ClientName: c.Name, TokenEndpointAuthMethod: string(c.AuthMethod),
		TokenEndpointAuthSigningAlg: c.AuthSigningAlg, RedirectURIs: nonNil(c.RedirectURIs), Scope: c.Scope,
		JWKSURI: c.JWKSURI, AccessTokenAsJWT: c.AccessTokenAsJWT, RunIntrospectionBeforeJWT: c.RunIntrospectionBeforeJWT,
		AccessTokenLifetime: c.AccessTokenLifetime, RefreshTokenLifetime: c.RefreshTokenLifetime,
		IDTokenLifetime: c.IDTokenLifetime, IntrospectionScripts: nonNil(c.IntrospectionScripts),
		UpdateTokenScripts: nonNil(c.UpdateTokenScripts), Attributes: c.Attributes,
		RefreshTokenReuseInterval: c.RefreshTokenReuseInterval, AllowedCORSOrigins: nonNil(c.AllowedCORSOrigins),
		AllowedResources:                   nonNil(c.AllowedResources),
		RequirePushedAuthorizationRequests: c.RequirePushedAuthorizationRequests,
		TokenExchange:                      c.TokenExchange,
		DPoPBoundAccessTokens:              c.DPoPBoundAccessTokens,
	}
	if d.Attributes == nil {
		d.Attributes = map[string]string{}
	}
	for _, g := range c.GrantTypes {
		d.GrantTypes = append(d.GrantTypes, string(g))
	}
	if c.JWKS != "" {
		d.JWKS = json.RawMessage(c.JWKS)
	}
	return d
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// setSecret gives c the secret (generating one when empty) if its method
// uses one, and returns the secret to show once.
func (e *Engine) setSecret(c *Client, secret string) string {
	if !c.AuthMethod.UsesSecret() {
		c.SecretHash, c.SecretSealed = "", ""
		return ""
	}
	if secret == "" {
		secret = randomToken()
		if c.AuthMethod == AuthSecretJWT {
			secret = newHMACSecret()
		}
	}
	c.SecretHash = HashSecret(secret)
	c.SecretSealed = ""
	if c.AuthMethod == AuthSecretJWT {
		c.SecretSealed = e.seal.seal(secret)
	}
	return secret
}

// CreateClient registers a client; the answer carries the secret once.
func (e *Engine) CreateClient(ctx context.Context, doc *ClientDoc) (*ClientDoc, error) {
	c, err := e.clientFromDoc(ctx, doc)
	if err != nil {
		return nil, err
	}
	if err := checkDelegatedClient(ctx, nil, c); err != nil {
		return nil, err
	}
	secret := e.setSecret(c, doc.ClientSecret)
	c.CreatedAt, c.UpdatedAt = e.now(), e.now()
	if err := e.st.Clients.CreateClient(ctx, c); errors.Is(err, ErrConflict) {
		return nil, Errorf(CodeConflict, "client_id: %q exists already", c.ID)
	} else if err != nil {
		return nil, storeFailure(err)
	}
	e.forgetClient(c.ID)
	out := ClientDocument(c)
	out.ClientSecret = secret
	return out, nil
}

// ReplaceClient replaces the client id with doc. The secret is kept
// unless doc gives one or the new method needs a secret the old one did
// not keep. Only a secret the server generated is in the answer (once):
// one the caller chose is never echoed (RFC 7591 §3.2.1 answers a secret
// when it is issued; docs/security.md).
func (e *Engine) ReplaceClient(ctx context.Context, id string, doc *ClientDoc) (*ClientDoc, error) {
	old, err := e.st.Clients.ClientByID(ctx, id)
	if err != nil {
		return nil, adminErr(err, "client", id)
	}
	if doc.ClientID != "" && doc.ClientID != id {
		return nil, fieldError("client_id", "cannot be changed")
	}
	doc.ClientID = id
	c, err := e.clientFromDoc(ctx, doc)
	if err != nil {
		return nil, err
	}
	if err := checkDelegatedClient(ctx, old, c); err != nil {
		return nil, err
	}
	secret, err := e.keepSecret(c, old, doc.ClientSecret)
	if err != nil {
		return nil, err
	}
	// A registered client stays manageable by its registration access
	// token (RFC 7592) whatever the admin API changes.
	c.Registration = old.Registration
	c.CreatedAt, c.UpdatedAt = old.CreatedAt, e.now()
	if err := e.st.Clients.UpdateClient(ctx, c); err != nil {
		return nil, adminErr(err, "client", c.ID) // deleted meanwhile: 404
	}
	e.forgetClient(id)
	out := ClientDocument(c)
	out.ClientSecret = secret
	return out, nil
}

// keepSecret gives c, which replaces old, the secret given, else old's
// secret if c's method can use it, else a new one; it returns the secret
// to show once (a generated one only).
func (e *Engine) keepSecret(c, old *Client, given string) (string, error) {
	switch {
	case given != "":
		e.setSecret(c, given)
	case c.AuthMethod.UsesSecret() && old.SecretHash != "" && (c.AuthMethod != AuthSecretJWT || old.SecretSealed != ""):
		if kept, err := e.seal.open(old.SecretSealed); err == nil {
			if err := checkHMACSecret(c, kept); err != nil {
				return "", err
			}
		}
		c.SecretHash, c.SecretSealed = old.SecretHash, old.SecretSealed
	default:
		return e.setSecret(c, ""), nil
	}
	return "", nil
}

// ClientDoc reads one client.
func (e *Engine) ClientDoc(ctx context.Context, id string) (*ClientDoc, error) {
	c, err := e.st.Clients.ClientByID(ctx, id)
	if err != nil {
		return nil, adminErr(err, "client", id)
	}
	return ClientDocument(c), nil
}

// ClientDocs lists every client.
func (e *Engine) ClientDocs(ctx context.Context) ([]*ClientDoc, error) {
	all, err := e.st.Clients.Clients(ctx)
	if err != nil {
		return nil, storeFailure(err)
	}
	out := make([]*ClientDoc, len(all))
	for i, c := range all {
		out[i] = ClientDocument(c)
	}
	return out, nil
}

// DeleteClient deletes a client and its tokens.
func (e *Engine) DeleteClient(ctx context.Context, id string) error {
	if delegated(ctx) {
		old, err := e.st.Clients.ClientByID(ctx, id)
		if err != nil {
			return adminErr(err, "client", id)
		}
		if err := checkDelegatedClient(ctx, old, nil); err != nil {
			return err
		}
	}
	err := e.st.Clients.DeleteClient(ctx, id)
	e.forgetClient(id)
	if err != nil {
		return adminErr(err, "client", id)
	}
	return nil
}

// RotateClientSecret gives the client a new secret, returned once.
func (e *Engine) RotateClientSecret(ctx context.Context, id string) (*ClientDoc, error) {
	c, err := e.st.Clients.ClientByID(ctx, id)
	if err != nil {
		return nil, adminErr(err, "client", id)
	}
	if err := checkDelegatedClient(ctx, c, nil); err != nil {
		return nil, err
	}
	if !c.AuthMethod.UsesSecret() {
		return nil, Errorf(CodeInvalidRequest, "token_endpoint_auth_method: %s clients have no secret", c.AuthMethod)
	}
	secret := e.setSecret(c, "")
	c.UpdatedAt = e.now()
	if err := e.st.Clients.UpdateClient(ctx, c); err != nil {
		return nil, adminErr(err, "client", c.ID) // deleted meanwhile: 404
	}
	e.forgetClient(id)
	out := ClientDocument(c)
	out.ClientSecret = secret
	return out, nil
}

// UpdateProperties sets the named properties and keeps the rest
// (PUT /admin/v1/config); the new snapshot applies at once here and
// within RefreshInterval on other instances.
func (e *Engine) UpdateProperties(ctx context.Context, patch map[string]json.RawMessage) (*Properties, error) {
	if err := ValidateProperties(patch); err != nil {
		return nil, err
	}
	values := make(map[string]string, len(patch))
	for k, v := range patch {
		values[k] = string(v)
	}
	if err := e.st.Properties.SetProperties(ctx, values); err != nil {
		return nil, storeFailure(err)
	}
	e.propsGuard.wrote(nil)
	if err := e.reloadProperties(ctx); err != nil {
		return nil, storeFailure(err)
	}
	return e.Properties(), nil
}

// BearerToken finds the active access token a request presents as
// Authorization: Bearer; a DPoP-bound token is refused (ResourceToken).
func (e *Engine) BearerToken(ctx context.Context, value string) (*Token, error) {
	return e.ResourceToken(ctx, &ResourceAccess{Scheme: "Bearer", Token: value})
}

// forThisServer reports whether keyhook's own bearer endpoints take t: a
// token asked for no resource, or for one that names this server (its
// issuer, or a URL under it; docs/resource-indicators.md).
func (e *Engine) forThisServer(t *Token) bool {
	if len(t.Resources) == 0 {
		return true
	}
	base := strings.TrimSuffix(e.cfg.Issuer, "/") + "/"
	for _, r := range t.Resources {
		if r == e.cfg.Issuer || strings.HasPrefix(r, base) {
			return true
		}
	}
	return false
}

// publicKeySet reads raw, the jwks member of a client or trusted issuer: a
// JWK Set of at least one valid key, each passing check when there is
// one. It answers the set as JSON with only the keys' public halves, so a
// private key sent by mistake is never kept.
func publicKeySet(raw json.RawMessage, check func(k *jose.JSONWebKey) error) (string, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil || len(set.Keys) == 0 {
		return "", fieldError("jwks", "must be a JWK Set with at least one key")
	}
	pub := jose.JSONWebKeySet{}
	for i := range set.Keys {
		k := &set.Keys[i]
		if !k.Valid() {
			return "", fieldError("jwks", "key %q is not valid", k.KeyID)
		}
		if check != nil {
			if err := check(k); err != nil {
				return "", err
			}
		}
		pub.Keys = append(pub.Keys, k.Public())
	}
	out, err := json.Marshal(pub)
	return string(out), err
}
