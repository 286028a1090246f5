package engine

import (
	"context"
	"slices"
	"strings"
)

// Delegated admins. A token with keyhook:admin may do anything; one with
// only keyhook:<area>.read or .write reaches its area, and must not reach
// more through it. The web layer says who calls (WithAdminScope); the
// rules on clients live here, where clients are written:
//
//   - no keyhook:* scope may be given to a client (it could then mint a
//     token for any area, keyhook:admin included);
//   - a client that holds a keyhook:* scope (keyhook-admin first of all)
//     cannot be replaced, have its secret rotated or be deleted: with its
//     secret one holds its scopes;
//   - the scripts bound to a client (which run for its tokens) cannot be
//     changed.
//
// Internal callers (bootstrap, seed, import) carry no admin scope and
// are not limited.

type adminScopeKey struct{}

// WithAdminScope returns ctx carrying the scope of the admin API token
// the request was made with.
func WithAdminScope(ctx context.Context, scope string) context.Context {
	return context.WithValue(ctx, adminScopeKey{}, scope)
}

// delegated reports whether ctx is an admin API request of a token
// without keyhook:admin.
func delegated(ctx context.Context) bool {
	scope, ok := ctx.Value(adminScopeKey{}).(string)
	return ok && !hasScope(scope, AdminScope)
}

// reservedScopes are the keyhook:* values of a scope string.
func reservedScopes(scope string) []string {
	var out []string
	for _, s := range splitScope(scope) {
		if strings.HasPrefix(s, "keyhook:") {
			out = append(out, s)
		}
	}
	return out
}

// checkDelegatedClient applies the rules above to a change from old (nil
// when created, next nil when deleted or only its secret changes) to next.
func checkDelegatedClient(ctx context.Context, old, next *Client) error {
	if !delegated(ctx) {
		return nil
	}
	if old != nil {
		if r := reservedScopes(old.Scope); len(r) > 0 {
			return Errorf(CodeInsufficientScope, "client %q holds %s: only %s may change it", old.ID, strings.Join(r, " "), AdminScope)
		}
	}
	if next == nil {
		return nil
	}
	if r := reservedScopes(next.Scope); len(r) > 0 {
		return Errorf(CodeInsufficientScope, "scope: only %s may give a client %s", AdminScope, strings.Join(r, " "))
	}
	var oldIntro, oldUpdate []string
	if old != nil {
		oldIntro, oldUpdate = old.IntrospectionScripts, old.UpdateTokenScripts
	}
	if !slices.Equal(nonEmpty(oldIntro), nonEmpty(next.IntrospectionScripts)) ||
		!slices.Equal(nonEmpty(oldUpdate), nonEmpty(next.UpdateTokenScripts)) {
		return Errorf(CodeInsufficientScope, "introspection_scripts, update_token_scripts: only %s may change which scripts run for a client", AdminScope)
	}
	return nil
}

func nonEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}
