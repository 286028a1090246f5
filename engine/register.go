package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/keyhook/keyhook/hooks"
)

// Dynamic client registration (RFC 7591) and its management protocol
// (RFC 7592), docs/registration.md.

// PathRegister is the client registration endpoint (RFC 7591 §3); a
// registered client's configuration endpoint is PathRegister + "/" +
// client_id (RFC 7592 §2).
const PathRegister = "/oauth2/register"

// Error codes of RFC 7591 §3.2.2 (HTTP 400).
const (
	CodeInvalidRedirectURI          ErrorCode = "invalid_redirect_uri"
	CodeInvalidClientMetadata       ErrorCode = "invalid_client_metadata"
	CodeInvalidSoftwareStatement    ErrorCode = "invalid_software_statement"
	CodeUnapprovedSoftwareStatement ErrorCode = "unapproved_software_statement"
)

// Defaults and bounds of registration.
const (
	// DefaultOpenRegistrationsPerAddress is how many open registrations
	// one address may make before each further one waits longer
	// (Config.OpenRegistrationsPerAddress).
	DefaultOpenRegistrationsPerAddress = 10
	// DefaultRegistrationTokenLifetime is an initial access token's
	// lifetime when the admin gives none; MaxRegistrationTokenLifetime
	// bounds it.
	DefaultRegistrationTokenLifetime = 24 * time.Hour
	MaxRegistrationTokenLifetime     = 365 * 24 * time.Hour
	// MaxRegistrationTokenUses bounds an initial access token's max_uses.
	MaxRegistrationTokenUses = 1_000_000
)

// Fixed descriptions: the same words whatever the reason, so that a
// refusal tells a registrant nothing of the server's scripts or clients.
const (
	registrationPolicyRefusal       = "the client metadata is refused by the server's registration policy"
	registrationTokenInvalid        = "the registration access token is not valid"
	registrationInitialTokenInvalid = "the initial access token is not valid, has expired or is used up"
	registrationOperationCreate     = "create"
	registrationOperationUpdate     = "update"
)

// ClientRegistration is what a dynamically registered client keeps of its
// registration (nil for clients the admin API created, which RFC 7592
// cannot manage).
type ClientRegistration struct {
	// AccessTokenHash verifies the registration access token
	// (HashSecret; the token itself is never stored).
	AccessTokenHash string
	// AllowedScopes bounds the client's scope, now and on updates: the
	// initial access token's scope, or the open registration scope. Nil
	// allows any scope but the keyhook:* ones.
	AllowedScopes []string
	// Label is the initial access token's label; empty for open
	// registration.
	Label string
	// Open is set when the client registered without an initial access
	// token.
	Open bool
}

// RegistrationToken is an initial access token (RFC 7591 §3): issued by
// an administrator, presented as a bearer token to the registration
// endpoint. Only its hash is stored.
type RegistrationToken struct {
	// ID names the token in the admin API; it is not a credential.
	ID        string
	TokenHash string
	Label     string
	// AllowedScopes bounds the scope of the clients registered with it;
	// nil allows any scope but the keyhook:* ones.
	AllowedScopes []string
	MaxUses       int64
	Uses          int64
	ExpiresAt     time.Time
	CreatedAt     time.Time
	CreatedBy     string
}

// RegistrationTokenStore keeps initial access tokens.
type RegistrationTokenStore interface {
	CreateRegistrationToken(ctx context.Context, t *RegistrationToken) error
	// RegistrationTokens lists every token, newest first.
	RegistrationTokens(ctx context.Context) ([]*RegistrationToken, error)
	// RegistrationToken returns the token id or ErrNotFound.
	RegistrationToken(ctx context.Context, id string) (*RegistrationToken, error)
	// RegistrationTokenByHash returns the token with that TokenHash or
	// ErrNotFound.
	RegistrationTokenByHash(ctx context.Context, hash string) (*RegistrationToken, error)
	// UseRegistrationToken counts one use of the token id if it has not
	// expired at now and has uses left, and reports whether it did; of
	// concurrent calls for its last use at most one reports true.
	UseRegistrationToken(ctx context.Context, id string, now time.Time) (bool, error)
	// DeleteRegistrationToken deletes the token; ErrNotFound when absent.
	DeleteRegistrationToken(ctx context.Context, id string) error
	// PurgeRegistrationTokens deletes the tokens expired before t.
	PurgeRegistrationTokens(ctx context.Context, before time.Time) (int64, error)
}

// RegistrationRequest is a request to the registration endpoint or to a
// client configuration endpoint.
type RegistrationRequest struct {
	// Token is the bearer token presented: the initial access token
	// (registration) or the registration access token (management).
	Token string
	// Metadata is the JSON object of the request body (RFC 7591 §2),
	// as decoded by encoding/json (numbers are float64).
	Metadata map[string]any
	Request  RequestInfo
}

// ClientInformation is the client information response (RFC 7591
// §3.2.1, RFC 7592 §3): the registered metadata, the client's
// credentials and where to manage it.
type ClientInformation struct {
	ClientID         string `json:"client_id"`
	ClientSecret     string `json:"client_secret,omitempty"`
	ClientIDIssuedAt int64  `json:"client_id_issued_at"`
	// ClientSecretExpiresAt is 0: secrets do not expire (RFC 7591
	// §3.2.1); sent whenever the client has a secret.
	ClientSecretExpiresAt   *int64 `json:"client_secret_expires_at,omitempty"`
	RegistrationAccessToken string `json:"registration_access_token"`
	RegistrationClientURI   string `json:"registration_client_uri"`
	RegisteredMetadata
}

// RegisteredMetadata is the client metadata (RFC 7591 §2) a registration
// may set, as keyhook keeps it.
type RegisteredMetadata struct {
	RedirectURIs                       []string        `json:"redirect_uris"`
	TokenEndpointAuthMethod            string          `json:"token_endpoint_auth_method"`
	TokenEndpointAuthSigningAlg        string          `json:"token_endpoint_auth_signing_alg,omitempty"`
	GrantTypes                         []string        `json:"grant_types"`
	ResponseTypes                      []string        `json:"response_types"`
	ClientName                         string          `json:"client_name,omitempty"`
	Scope                              string          `json:"scope,omitempty"`
	JWKS                               json.RawMessage `json:"jwks,omitempty"`
	JWKSURI                            string          `json:"jwks_uri,omitempty"`
	AllowedCORSOrigins                 []string        `json:"allowed_cors_origins,omitempty"`
	RequirePushedAuthorizationRequests bool            `json:"require_pushed_authorization_requests,omitempty"`
	// DPoPBoundAccessTokens is RFC 9449 §5.2's client metadata.
	DPoPBoundAccessTokens bool `json:"dpop_bound_access_tokens,omitempty"`
}

// privilegedMetadata are client members of the admin API that decide
// which code runs for a client, what its tokens look like and which
// audiences they reach: a registration that names one is refused
// (invalid_client_metadata) rather than silently trimmed, so that the
// registrant knows.
var privilegedMetadata = []string{
	"access_token_as_jwt", "run_introspection_script_before_jwt_creation",
	"run_introspection_script_before_access_token_as_jwt_creation_and_include_claims",
	"access_token_lifetime", "refresh_token_lifetime", "id_token_lifetime", "refresh_token_reuse_interval",
	"introspection_scripts", "update_token_scripts", "attributes", "allowed_resources", "token_exchange",
}

// registrableMetadata are the members of RegisteredMetadata: what a
// registration keeps. Any other member is ignored (RFC 7591 §2).
var registrableMetadata = []string{
	"redirect_uris", "token_endpoint_auth_method", "token_endpoint_auth_signing_alg", "grant_types",
	"response_types", "client_name", "scope", "jwks", "jwks_uri", "allowed_cors_origins",
	"require_pushed_authorization_requests", "dpop_bound_access_tokens",
}

// serverIssuedMetadata are members of the client information response;
// a client may send them back on an update (RFC 7592 §2.2) and they are
// ignored.
var serverIssuedMetadata = []string{
	"client_id_issued_at", "client_secret_expires_at", "registration_access_token", "registration_client_uri",
}

// registrableGrants are the grants a registration may ask for. The
// password grant is left to administrators: a self-registered client
// should never see users' passwords (RFC 9700 §2.4).
var registrableGrants = []GrantType{GrantAuthorizationCode, GrantRefreshToken, GrantClientCredentials, GrantDeviceCode}

// RegistrationEnabled reports whether the registration endpoint serves
// requests (it needs a registration token store).
func (e *Engine) RegistrationEnabled() bool { return e.st.Registration != nil }

// registrationClientURI is the client configuration endpoint of id.
func (e *Engine) registrationClientURI(id string) string {
	return e.cfg.Issuer + PathRegister + "/" + id
}

// Register serves POST /oauth2/register (RFC 7591 §3.1).
func (e *Engine) Register(ctx context.Context, req *RegistrationRequest) (*ClientInformation, error) {
	if !e.RegistrationEnabled() {
		return nil, Errorf(CodeInvalidRequest, "dynamic client registration is not available")
	}
	reg := &ClientRegistration{}
	var tok *RegistrationToken
	var release func()
	switch {
	case req.Token != "":
		t, err := e.st.Registration.RegistrationTokenByHash(ctx, TokenHash(req.Token))
		if errors.Is(err, ErrNotFound) {
			return nil, Errorf(CodeInvalidToken, registrationInitialTokenInvalid)
		} else if err != nil {
			return nil, storeFailure(err)
		}
		if !e.now().Before(t.ExpiresAt) || t.Uses >= t.MaxUses {
			return nil, Errorf(CodeInvalidToken, registrationInitialTokenInvalid)
		}
		tok = t
		reg.AllowedScopes, reg.Label = t.AllowedScopes, t.Label
	case e.cfg.OpenRegistration:
		r, wait := e.openRegistrations.admit(addressKey(clientAddress(ctx)))
		if wait > 0 {
			refusal := tooManyAttempts(wait)
			refusal.Description = fmt.Sprintf("too many registrations from this address; retry after %d seconds", int64(refusal.RetryAfter.Seconds()))
			return nil, refusal
		}
		release = r
		reg.Open, reg.AllowedScopes = true, nonNil(splitScope(e.cfg.OpenRegistrationScope))
	default:
		return nil, Errorf(CodeInvalidToken, "an initial access token is required (RFC 7591 §3)")
	}
	finished := false
	defer func() {
		if release != nil && !finished {
			release() // a refused registration does not count
		}
	}()
	if _, ok := req.Metadata["client_id"]; ok {
		return nil, Errorf(CodeInvalidClientMetadata, "client_id: is issued by the server")
	}
	if _, ok := req.Metadata["client_secret"]; ok {
		return nil, Errorf(CodeInvalidClientMetadata, "client_secret: is issued by the server")
	}
	id := randomID()
	doc, err := e.registeredDoc(ctx, req, reg, &Client{ID: id}, registrationOperationCreate)
	if err != nil {
		return nil, err
	}
	doc.ClientID = id
	c, err := e.registeredClient(ctx, doc)
	if err != nil {
		return nil, err
	}
	if tok != nil {
		ok, err := e.st.Registration.UseRegistrationToken(ctx, tok.ID, e.now())
		if err != nil {
			return nil, storeFailure(err)
		}
		if !ok {
			return nil, Errorf(CodeInvalidToken, registrationInitialTokenInvalid)
		}
	}
	secret := e.setSecret(c, "")
	access := randomToken()
	reg.AccessTokenHash = HashSecret(access)
	c.Registration = reg
	c.CreatedAt, c.UpdatedAt = e.now(), e.now()
	if err := e.st.Clients.CreateClient(ctx, c); err != nil {
		return nil, storeFailure(err)
	}
	finished = true
	e.forgetClient(c.ID)
	e.log.Info("client registered", "client_id", c.ID, "open", reg.Open, "initial_token", reg.Label)
	return e.clientInformation(c, secret, access), nil
}

// registrationClient finds the client id for its registration access
// token. Every failure is the same 401 (RFC 7592 §3): whether the
// client exists is not given away.
func (e *Engine) registrationClient(ctx context.Context, id, token string) (*Client, error) {
	if !e.RegistrationEnabled() {
		return nil, Errorf(CodeInvalidRequest, "dynamic client registration is not available")
	}
	if token == "" {
		return nil, Errorf(CodeInvalidToken, "a registration access token is required")
	}
	c, err := e.st.Clients.ClientByID(ctx, id)
	switch {
	case errors.Is(err, ErrNotFound):
		VerifySecret(dummySecretHash, token) // as long as a real check
		return nil, Errorf(CodeInvalidToken, registrationTokenInvalid)
	case err != nil:
		return nil, storeFailure(err)
	case c.Registration == nil || c.Registration.AccessTokenHash == "":
		VerifySecret(dummySecretHash, token)
		return nil, Errorf(CodeInvalidToken, registrationTokenInvalid)
	case !VerifySecret(c.Registration.AccessTokenHash, token):
		return nil, Errorf(CodeInvalidToken, registrationTokenInvalid)
	}
	return c, nil
}

// RegisteredClientInformation serves GET /oauth2/register/{client_id}
// (RFC 7592 §2.1). The secret is not shown again (only its hash is
// kept); the registration access token is the one presented.
func (e *Engine) RegisteredClientInformation(ctx context.Context, id, token string) (*ClientInformation, error) {
	c, err := e.registrationClient(ctx, id, token)
	if err != nil {
		return nil, err
	}
	return e.clientInformation(c, "", token), nil
}

// UpdateRegistration serves PUT /oauth2/register/{client_id} (RFC 7592
// §2.2): the body replaces every registered member (one it leaves out
// takes its default). The secret and the registration access token are
// kept; a secret is issued (and answered once) only when the new
// token_endpoint_auth_method needs one the client does not have.
func (e *Engine) UpdateRegistration(ctx context.Context, id string, req *RegistrationRequest) (*ClientInformation, error) {
	old, err := e.registrationClient(ctx, id, req.Token)
	if err != nil {
		return nil, err
	}
	if got, _ := req.Metadata["client_id"].(string); got != id {
		return nil, Errorf(CodeInvalidClientMetadata, "client_id: must be the client's own client_id")
	}
	if v, ok := req.Metadata["client_secret"]; ok {
		s, _ := v.(string)
		if old.SecretHash == "" || !VerifySecret(old.SecretHash, s) {
			return nil, Errorf(CodeInvalidClientMetadata, "client_secret: does not match the client's secret")
		}
	}
	md := make(map[string]any, len(req.Metadata))
	for k, v := range req.Metadata {
		if k != "client_id" && k != "client_secret" {
			md[k] = v
		}
	}
	r := *req
	r.Metadata = md
	doc, err := e.registeredDoc(ctx, &r, old.Registration, old, registrationOperationUpdate)
	if err != nil {
		return nil, err
	}
	doc.ClientID = id
	c, err := e.registeredClient(ctx, doc)
	if err != nil {
		return nil, err
	}
	secret, err := e.keepSecret(c, old, "")
	if err != nil {
		var oe *Error
		if errors.As(err, &oe) && oe.Code == CodeInvalidRequest {
			return nil, Errorf(CodeInvalidClientMetadata, "%s", oe.Description)
		}
		return nil, err
	}
	c.Registration = old.Registration
	c.CreatedAt, c.UpdatedAt = old.CreatedAt, e.now()
	if err := e.st.Clients.UpdateClient(ctx, c); errors.Is(err, ErrNotFound) {
		return nil, Errorf(CodeInvalidToken, registrationTokenInvalid) // deleted meanwhile
	} else if err != nil {
		return nil, storeFailure(err)
	}
	e.forgetClient(id)
	return e.clientInformation(c, secret, req.Token), nil
}

// DeleteRegistration serves DELETE /oauth2/register/{client_id} (RFC 7592
// §2.3): the client goes, with its tokens and codes.
func (e *Engine) DeleteRegistration(ctx context.Context, id, token string) error {
	if _, err := e.registrationClient(ctx, id, token); err != nil {
		return err
	}
	err := e.st.Clients.DeleteClient(ctx, id)
	e.forgetClient(id)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return storeFailure(err)
	}
	e.log.Info("client deregistered", "client_id", id)
	return nil
}

// registeredDoc turns the request's metadata into a client document:
// privileged members refused, the registration scripts run, the result
// checked again (a script cannot give what a request may not ask for),
// unknown members dropped (RFC 7591 §2: "MUST ignore"), RFC 7591's
// defaults applied, and the scope held within reg.AllowedScopes.
func (e *Engine) registeredDoc(ctx context.Context, req *RegistrationRequest, reg *ClientRegistration, current *Client, op string) (*ClientDoc, error) {
	md := req.Metadata
	if md == nil {
		md = map[string]any{}
	}
	if raw, ok := md["software_statement"]; ok {
		claims, err := e.softwareStatementClaims(raw)
		if err != nil {
			return nil, err
		}
		// RFC 7591 §2.3: the statement's values take precedence over
		// the request's.
		merged := make(map[string]any, len(md)+len(claims))
		for k, v := range md {
			if k != "software_statement" {
				merged[k] = v
			}
		}
		for k, v := range claims {
			merged[k] = v
		}
		md = merged
	}
	if err := checkRegistrable(md); err != nil {
		return nil, err
	}
	if scripts := e.registrationScripts(); len(scripts) > 0 {
		sc := &scriptCall{e: e, client: current, req: &RequestInfo{Method: req.Request.Method, Header: req.Request.Header},
			ctx: ctx, registration: registrationMap(op, reg)}
		hctx := sc.context(hooks.PhaseRegistration, nil)
		out, err := e.hooks.Run(ctx, scripts, hooks.FnValidateRegistration, md, hctx, hooks.StopOnFalse)
		if err != nil {
			var d *hooks.DeniedError
			if errors.As(err, &d) {
				return nil, Wrap(CodeServerError, err, "the registration was refused because a registration script failed")
			}
			return nil, Wrap(CodeServerError, err, "a registration script failed")
		}
		if out.FalseBy != "" {
			e.log.Info("registration refused by script", "script", out.FalseBy, "operation", op)
			return nil, Errorf(CodeInvalidClientMetadata, registrationPolicyRefusal)
		}
		md = out.Value
		if err := checkRegistrable(md); err != nil {
			e.log.Warn("a registration script set a member registration may not", "err", err)
			return nil, err
		}
	}
	known := map[string]any{}
	for _, name := range registrableMetadata {
		if v, ok := md[name]; ok && v != nil {
			known[name] = v
		}
	}
	raw, err := json.Marshal(known)
	if err != nil {
		return nil, Errorf(CodeInvalidClientMetadata, "the metadata is not valid JSON")
	}
	var m RegisteredMetadata
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&m); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, Errorf(CodeInvalidClientMetadata, "%s: has the wrong type", te.Field)
		}
		return nil, Errorf(CodeInvalidClientMetadata, "the metadata is not valid")
	}
	if _, ok := known["grant_types"]; !ok {
		m.GrantTypes = []string{string(GrantAuthorizationCode)} // RFC 7591 §2
	}
	for _, g := range m.GrantTypes {
		if reg.Open && GrantType(g) == GrantClientCredentials {
			// Anyone may register openly: a machine identity that gets
			// tokens with no user behind them is left to clients an
			// administrator let in with an initial access token.
			return nil, Errorf(CodeInvalidClientMetadata, "grant_types: client_credentials cannot be registered without an initial access token")
		}
		if !slices.Contains(registrableGrants, GrantType(g)) {
			return nil, Errorf(CodeInvalidClientMetadata, "grant_types: %q cannot be registered; use %s", g, "authorization_code, refresh_token, client_credentials or "+string(GrantDeviceCode))
		}
	}
	wantResponse := []string{}
	if slices.Contains(m.GrantTypes, string(GrantAuthorizationCode)) {
		wantResponse = []string{"code"}
	}
	if _, ok := known["response_types"]; ok && !slices.Equal(dedupe(m.ResponseTypes), wantResponse) {
		return nil, Errorf(CodeInvalidClientMetadata, `response_types: must be ["code"] with the authorization_code grant and [] without it`)
	}
	for _, u := range m.RedirectURIs {
		if err := checkRedirectURI(u); err != nil {
			return nil, Errorf(CodeInvalidRedirectURI, "redirect_uris: %v", err)
		}
	}
	if len(wantResponse) > 0 && len(m.RedirectURIs) == 0 {
		return nil, Errorf(CodeInvalidRedirectURI, "redirect_uris: the authorization_code grant needs at least one redirect URI")
	}
	for _, s := range splitScope(m.Scope) {
		switch {
		case strings.HasPrefix(s, "keyhook:"):
			return nil, Errorf(CodeInvalidClientMetadata, "scope: %q cannot be registered", s)
		case reg.AllowedScopes != nil && !slices.Contains(reg.AllowedScopes, s):
			hint := "the initial access token"
			if reg.Open {
				hint = "open registration"
			}
			return nil, Errorf(CodeInvalidClientMetadata, "scope: %q is not allowed by %s", s, hint)
		}
	}
	return &ClientDoc{
		ClientName: m.ClientName, TokenEndpointAuthMethod: m.TokenEndpointAuthMethod,
		TokenEndpointAuthSigningAlg: m.TokenEndpointAuthSigningAlg, GrantTypes: nonNil(m.GrantTypes),
		RedirectURIs: m.RedirectURIs, Scope: m.Scope, JWKS: m.JWKS, JWKSURI: m.JWKSURI,
		AllowedCORSOrigins: m.AllowedCORSOrigins, RequirePushedAuthorizationRequests: m.RequirePushedAuthorizationRequests,
		DPoPBoundAccessTokens: m.DPoPBoundAccessTokens,
	}, nil
}

// registeredClient validates doc as the admin API does (clientFromDoc),
// answering its refusals as invalid_client_metadata.
func (e *Engine) registeredClient(ctx context.Context, doc *ClientDoc) (*Client, error) {
	c, err := e.clientFromDoc(ctx, doc)
	var oe *Error
	if errors.As(err, &oe) && oe.Code == CodeInvalidRequest {
		return nil, Errorf(CodeInvalidClientMetadata, "%s", oe.Description)
	}
	return c, err
}

// checkRegistrable refuses the members a registration may not set.
func checkRegistrable(md map[string]any) error {
	if _, ok := md["software_statement"]; ok {
		// A statement is read before (registeredDoc); one inside a
		// statement, or added by a script, is not.
		return Errorf(CodeInvalidSoftwareStatement, "software_statement: one statement, at the top level of the request")
	}
	for _, name := range privilegedMetadata {
		if _, ok := md[name]; ok {
			return Errorf(CodeInvalidClientMetadata, "%s: is set by the server's administrators, not by registration", name)
		}
	}
	for _, name := range serverIssuedMetadata {
		delete(md, name)
	}
	return nil
}

// registrationMap is context.registration (hooks.RegistrationInfo).
func registrationMap(op string, reg *ClientRegistration) map[string]any {
	return map[string]any{"operation": op, "initial_token_label": reg.Label, "open": reg.Open}
}

// registrationScripts are the enabled registration scripts, in run
// order.
func (e *Engine) registrationScripts() []*hooks.Script {
	if e.hooks == nil {
		return nil
	}
	return e.hooks.Enabled(hooks.KindRegistration)
}

// clientInformation is the answer about c; secret and access are shown
// when given.
func (e *Engine) clientInformation(c *Client, secret, access string) *ClientInformation {
	d := ClientDocument(c)
	resp := []string{}
	if c.HasGrant(GrantAuthorizationCode) {
		resp = []string{"code"}
	}
	info := &ClientInformation{
		ClientID: c.ID, ClientSecret: secret, ClientIDIssuedAt: c.CreatedAt.Unix(),
		RegistrationAccessToken: access, RegistrationClientURI: e.registrationClientURI(c.ID),
		RegisteredMetadata: RegisteredMetadata{
			RedirectURIs: d.RedirectURIs, TokenEndpointAuthMethod: d.TokenEndpointAuthMethod,
			TokenEndpointAuthSigningAlg: d.TokenEndpointAuthSigningAlg, GrantTypes: d.GrantTypes,
			ResponseTypes: resp, ClientName: d.ClientName, Scope: d.Scope, JWKS: d.JWKS, JWKSURI: d.JWKSURI,
			AllowedCORSOrigins: c.AllowedCORSOrigins, RequirePushedAuthorizationRequests: c.RequirePushedAuthorizationRequests,
			DPoPBoundAccessTokens: c.DPoPBoundAccessTokens,
		},
	}
	if c.AuthMethod.UsesSecret() {
		zero := int64(0)
		info.ClientSecretExpiresAt = &zero
	}
	return info
}

func dedupe(l []string) []string {
	out := []string{}
	for _, s := range l {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// admissionLimit admits n actions per key (an address), then one more
// each time a back-off that doubles from 1 s up to max allows
// (engine/authlimits.go's backoff); a key is forgotten after
// throttleForget without actions. Unlike a failure throttle, it counts
// an action when it is admitted, so a concurrent burst is bounded too;
// an action that does not happen after all is released. Memory is
// bounded by an LRU of fixed-size keys. It is safe for concurrent use,
// and a nil *admissionLimit admits everything.
type admissionLimit struct {
	n    int
	max  time.Duration
	now  func() time.Time
	mu   sync.Mutex
	keys *simplelru.LRU[[32]byte, *admissions]
}

type admissions struct {
	count int
	last  time.Time
}

func newAdmissionLimit(n int, max time.Duration, size int, now func() time.Time) *admissionLimit {
	keys, _ := simplelru.NewLRU[[32]byte, *admissions](size, nil)
	return &admissionLimit{n: n, max: max, now: now, keys: keys}
}

// until is when the key's next action may be admitted.
func (l *admissionLimit) until(a *admissions) time.Time {
	if a.count < l.n {
		return time.Time{}
	}
	return a.last.Add(backoff(a.count-l.n+1, l.max))
}

// admit counts an action of key and returns the func that releases it,
// or how long to wait.
func (l *admissionLimit) admit(key string) (func(), time.Duration) {
	if l == nil {
		return func() {}, 0
	}
	k := sha256.Sum256([]byte(key))
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	a, ok := l.keys.Get(k)
	if ok && now.Sub(a.last) > max(throttleForget, 2*l.max) && !now.Before(l.until(a)) {
		a.count = 0
	}
	if !ok {
		a = &admissions{}
		l.keys.Add(k, a)
	}
	if until := l.until(a); now.Before(until) {
		return nil, until.Sub(now)
	}
	a.count++
	a.last = now
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if a.count > 0 {
			a.count--
		}
	}, 0
}
