package engine

import (
	"context"
)

// UserInfo answers the claims of the user an access token was granted
// for, as its scopes release them (OIDC Core §5.3).
// The token comes as Authorization: Bearer or DPoP (ResourceToken).
func (e *Engine) UserInfo(ctx context.Context, ra *ResourceAccess) (map[string]any, error) {
	t, err := e.ResourceToken(ctx, ra)
	if err != nil {
		return nil, err
	}
	if t.Username == "" || !hasScope(t.Scope, "openid") {
		return nil, Errorf(CodeInsufficientScope, "the access token was not granted openid for a user")
	}
	u, err := e.activeUser(ctx, t.Username, CodeInvalidToken)
	if err != nil {
		return nil, err
	}
	claims := UserClaims(u, t.Scope)
	claims["sub"] = u.Username
	return claims, nil
}
