package engine

import (
	"context"
	"errors"
)

// UserInfo answers the claims of the user an access token was granted
// for, as its scopes release them (OIDC Core §5.3).
func (e *Engine) UserInfo(ctx context.Context, accessToken string) (map[string]any, error) {
	t, err := e.BearerToken(ctx, accessToken)
	if err != nil {
		return nil, err
	}
	if t.Username == "" || !hasScope(t.Scope, "openid") {
		return nil, Errorf(CodeInsufficientScope, "the access token was not granted openid for a user")
	}
	u, err := e.st.Users.UserByName(ctx, t.Username)
	if errors.Is(err, ErrNotFound) || (err == nil && u.Disabled) {
		return nil, Errorf(CodeInvalidToken, "the user no longer exists")
	}
	if err != nil {
		return nil, storeFailure(err)
	}
	claims := UserClaims(u, t.Scope)
	claims["sub"] = u.Username
	return claims, nil
}
