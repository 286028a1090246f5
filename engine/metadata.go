package engine

import (
	"context"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// standardScopes are the scopes discovery always lists: OpenID Connect's
// (OIDC Core §5.4, §11), whatever the clients.
var standardScopes = []string{"openid", "profile", "email", "phone", "address", "offline_access"}

// PublicScopesAttribute is the client attribute that lists, space
// separated, which of the client's scopes discovery may show in
// scopes_supported (RFC 8414 §2: a server may leave scopes out).
const PublicScopesAttribute = "public_scopes"

// PublicResourcesAttribute is the client attribute that lists, space
// separated, which of the client's allowed_resources discovery may show
// in protected_resources (RFC 9728 §4; docs/resource-indicators.md).
const PublicResourcesAttribute = "public_resources"

// metadataCache holds what is derived from all the clients, the
// discovery document and the CORS origins, between changes.
type metadataCache struct {
	mu    sync.Mutex // serialises rebuilds
	view  atomic.Pointer[clientView]
	stale atomic.Bool
}

// clientView is what the engine derives from all the clients at once.
// It is shared: callers must not modify it.
type clientView struct {
	doc     map[string]any
	origins map[string]struct{}
}

// invalidateMetadata makes the next Metadata or CORSOriginAllowed call
// rebuild the document and the origins.
func (e *Engine) invalidateMetadata() { e.meta.stale.Store(true) }

// Metadata is the authorization server metadata of RFC 8414 §2, also
// served as OpenID Connect Discovery 1.0 §3 provider metadata. It is
// built once and rebuilt after a local change to clients, or after a
// Refresh (so at most once per RefreshInterval for changes on other
// instances), never per request. When a rebuild fails the last document
// is served. The map is shared: callers must not modify it.
func (e *Engine) Metadata(ctx context.Context) (map[string]any, error) {
	v, err := e.clientView(ctx)
	if err != nil {
		return nil, err
	}
	return v.doc, nil
}

// clientView returns the current view, rebuilding it when stale.
func (e *Engine) clientView(ctx context.Context) (*clientView, error) {
	if v := e.meta.view.Load(); v != nil && !e.meta.stale.Load() {
		return v, nil
	}
	e.meta.mu.Lock()
	defer e.meta.mu.Unlock()
	old := e.meta.view.Load()
	if old != nil && !e.meta.stale.Load() {
		return old, nil
	}
	// Cleared before reading: a change during the read marks it again.
	e.meta.stale.Store(false)
	v, err := e.buildView(ctx)
	if err != nil {
		e.meta.stale.Store(true)
		if old != nil {
			e.log.Warn("rebuilding the discovery document and CORS origins failed; serving the last ones", "err", err)
			return old, nil
		}
		return nil, err
	}
	e.meta.view.Store(v)
	return v, nil
}

// serviceDocumentation is the metadata's service_documentation (RFC 8414
// §2): the repository's documentation, the same for every deployment.
const serviceDocumentation = "https://github.com/keyhook/keyhook/tree/main/docs"

// PromptValues are the prompt values the authorization endpoint
// implements (OIDC Core §3.1.2.1; docs/browser-flow.md).
var PromptValues = []string{"none", "login", "consent", "select_account"}

// buildView reads the clients once for the document and the origins.
func (e *Engine) buildView(ctx context.Context) (*clientView, error) {
	clients, err := e.st.Clients.Clients(ctx)
	if err != nil {
		return nil, storeFailure(err)
	}
	v := &clientView{doc: e.buildMetadata(clients), origins: map[string]struct{}{}}
	for _, c := range clients {
		for _, o := range c.AllowedCORSOrigins {
			v.origins[o] = struct{}{}
		}
	}
	return v, nil
}

// buildMetadata makes the document from the clients.
// scopes_supported lists the standard scopes and the scopes clients mark
// public (PublicScopesAttribute, and only scopes the client holds), never
// a keyhook:* scope nor any other scope of a client: a list of every
// client's scopes would tell anyone what each API accepts.
func (e *Engine) buildMetadata(clients []*Client) map[string]any {
	scopes := map[string]bool{}
	for _, s := range standardScopes {
		scopes[s] = true
	}
	for _, c := range clients {
		for _, s := range splitScope(c.Attributes[PublicScopesAttribute]) {
			if !strings.HasPrefix(s, reservedScopePrefix) && hasScope(c.Scope, s) {
				scopes[s] = true
			}
		}
	}
	scopeList := make([]string, 0, len(scopes))
	for s := range scopes {
		scopeList = append(scopeList, s)
	}
	sort.Strings(scopeList)
	// protected_resources (RFC 9728 §4), like scopes_supported, lists
	// only what clients mark public, and only resources they may ask for:
	// the list of every client's resources would map the private APIs.
	resources := map[string]bool{}
	for _, c := range clients {
		for _, r := range strings.Fields(c.Attributes[PublicResourcesAttribute]) {
			if slices.Contains(c.AllowedResources, r) {
				resources[r] = true
			}
		}
	}
	iss := e.cfg.Issuer
	authMethods := []string{"client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt"}
	assertionAlgs := append(slices.Clone(secretJWTAlgs), privateKeyAlgs...)
	doc := map[string]any{
		"issuer":                                                   iss,
		"authorization_endpoint":                                   iss + PathAuthorize,
		"token_endpoint":                                           iss + PathToken,
		"introspection_endpoint":                                   iss + PathIntrospect,
		"revocation_endpoint":                                      iss + PathRevoke,
		"userinfo_endpoint":                                        iss + PathUserinfo,
		"pushed_authorization_request_endpoint":                    iss + PathPAR,
		"require_pushed_authorization_requests":                    e.cfg.RequirePushedAuthorizationRequests,
		"jwks_uri":                                                 iss + PathJWKS,
		"device_authorization_endpoint":                            iss + PathDeviceAuthorization,
		"grant_types_supported":                                    []string{"authorization_code", "client_credentials", "password", "refresh_token", string(GrantDeviceCode), string(GrantJWTBearer), string(GrantTokenExchange)},
		"response_types_supported":                                 []string{"code"},
		"response_modes_supported":                                 []string{"query"},
		"subject_types_supported":                                  []string{"public"},
		"scopes_supported":                                         scopeList,
		"claims_supported":                                         []string{"sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "name", "email", "email_verified"},
		"code_challenge_methods_supported":                         []string{"S256"},
		"token_endpoint_auth_methods_supported":                    append(authMethods, "none"),
		"token_endpoint_auth_signing_alg_values_supported":         assertionAlgs,
		"introspection_endpoint_auth_methods_supported":            authMethods,
		"introspection_endpoint_auth_signing_alg_values_supported": assertionAlgs,
		"revocation_endpoint_auth_methods_supported":               append(authMethods, "none"),
		"revocation_endpoint_auth_signing_alg_values_supported":    assertionAlgs,
		"introspection_signing_alg_values_supported":               SigningAlgs,
		"id_token_signing_alg_values_supported":                    SigningAlgs,
		"access_token_signing_alg_values_supported":                SigningAlgs,
		"authorization_response_iss_parameter_supported":           true,
		"prompt_values_supported":                                  PromptValues,
		"request_parameter_supported":                              false,
		"request_uri_parameter_supported":                          false,
		"claims_parameter_supported":                               false,
		"service_documentation":                                    serviceDocumentation,
		"dpop_signing_alg_values_supported":                        DPoPSigningAlgs,
	}
	if len(resources) > 0 {
		list := make([]string, 0, len(resources))
		for r := range resources {
			list = append(list, r)
		}
		sort.Strings(list)
		doc["protected_resources"] = list
	}
	if e.RegistrationEnabled() {
		// RFC 8414 §2; RFC 7591 §3.
		doc["registration_endpoint"] = iss + PathRegister
	}
	return doc
}
