package engine

import (
	"context"
	"sort"
)

// Metadata is the authorization server metadata of RFC 8414 §2, also
// served as OpenID Connect Discovery 1.0 §3 provider metadata.
func (e *Engine) Metadata(ctx context.Context) (map[string]any, error) {
	scopes := map[string]bool{"openid": true, "profile": true, "email": true, "phone": true, "address": true}
	clients, err := e.st.Clients.Clients(ctx)
	if err != nil {
		return nil, storeFailure(err)
	}
	for _, c := range clients {
		for _, s := range splitScope(c.Scope) {
			scopes[s] = true
		}
	}
	scopeList := make([]string, 0, len(scopes))
	for s := range scopes {
		scopeList = append(scopeList, s)
	}
	sort.Strings(scopeList)
	iss := e.cfg.Issuer
	authMethods := []string{"client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt"}
	assertionAlgs := []string{"HS256", "HS384", "HS512", "RS256", "PS256", "ES256", "EdDSA"}
	return map[string]any{
		"issuer":                                           iss,
		"authorization_endpoint":                           iss + PathAuthorize,
		"token_endpoint":                                   iss + PathToken,
		"introspection_endpoint":                           iss + PathIntrospect,
		"revocation_endpoint":                              iss + PathRevoke,
		"userinfo_endpoint":                                iss + PathUserinfo,
		"jwks_uri":                                         iss + PathJWKS,
		"grant_types_supported":                            []string{"authorization_code", "client_credentials", "password", "refresh_token"},
		"response_types_supported":                         []string{"code"},
		"response_modes_supported":                         []string{"query"},
		"subject_types_supported":                          []string{"public"},
		"scopes_supported":                                 scopeList,
		"claims_supported":                                 []string{"sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "name", "email", "email_verified"},
		"code_challenge_methods_supported":                 []string{"S256"},
		"token_endpoint_auth_methods_supported":            append(authMethods, "none"),
		"token_endpoint_auth_signing_alg_values_supported": assertionAlgs,
		"introspection_endpoint_auth_methods_supported":    authMethods,
		"introspection_endpoint_auth_signing_alg_values_supported": assertionAlgs,
		"revocation_endpoint_auth_methods_supported":               append(authMethods, "none"),
		"revocation_endpoint_auth_signing_alg_values_supported":    assertionAlgs,
		"introspection_signing_alg_values_supported":               SigningAlgs,
		"id_token_signing_alg_values_supported":                    SigningAlgs,
		"access_token_signing_alg_values_supported":                SigningAlgs,
	}, nil
}
