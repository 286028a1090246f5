package engine

import (
	"context"
	"slices"
	"strings"

	"github.com/keyhook/keyhook/hooks"
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
//     changed, nor whether its introspection scripts run when its JWT
//     access tokens are created (run_introspection_script_before_jwt_creation
//     with access_token_as_jwt): both decide which code runs for the
//     client's tokens;
//   - trusted issuers (engine/trustedissuer.go) cannot be written at
//     all: an issuer whose keys one holds mints tokens for any subject it
//     allows;
//   - a script cannot be written with isolation inline: inline scripts
//     run in the server's own process, which only keyhook:admin may
//     trust code with (docs/sandbox.md); a delegated token may rewrite
//     an inline script only to run in a worker process.
//
// What is left to a delegated token, and why it reaches no further
// (docs/admin-security.md):
//
//   - grant_types and token_endpoint_auth_method are free for clients
//     without keyhook:* scopes. Whatever the grant, a token's scope is
//     within its client's scope (RFC 6749 §3.3), which holds no keyhook:*
//     scope; scripts cannot add one (withoutAddedReservedScopes); public
//     clients get neither client_credentials nor password tokens. A
//     clients.write token already controls every such client (it may
//     rotate its secret), so a method or grant gives it nothing new.
//   - keyhook:* in a user's claims or a script's config is only data: the
//     admin API reads the scope of the access token, which comes from the
//     client's scope, never from claims or config.
//   - keyhook:config.write sets every server property, backward
//     compatibility included (every enabled introspection script runs
//     for every token): that is the config area's own choice of which
//     introspection scripts run, not a way into another area. It cannot
//     write scripts, bind them, or give any client a scope.
//   - keyhook:scripts.write writes code that runs where keyhook:admin
//     bound it (or everywhere in backward compatibility); such code
//     cannot add keyhook:* scopes nor see credentials (docs/security.md),
//     so it cannot reach the admin API.
//   - record_inputs and replay (docs/scripts.md, "Replay") show a
//     keyhook:scripts.write token what a script's calls received, which
//     a script it writes could already copy into a token or a log line;
//     keyhook:scripts.read never sees recorded inputs.
//
// Internal callers (bootstrap, seed, import) carry no admin scope and
// are not limited.

type adminScopeKey struct{}

// WithAdminScope returns ctx carrying the scope of the admin API token
// the request was made with.
func WithAdminScope(ctx context.Context, scope string) context.Context {
	return context.WithValue(ctx, adminScopeKey{}, scope)
}

type adminClientKey struct{}

// WithAdminClient returns ctx carrying the client_id of the admin API
// token the request was made with: the author of the script versions it
// writes (docs/scripts.md, "Versions, rollback and rollout").
func WithAdminClient(ctx context.Context, clientID string) context.Context {
	return context.WithValue(ctx, adminClientKey{}, clientID)
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
	if old.runsScriptsAtJWTCreation() != next.runsScriptsAtJWTCreation() {
		return Errorf(CodeInsufficientScope, "run_introspection_script_before_jwt_creation, access_token_as_jwt: only %s may change whether introspection scripts run when a client's JWTs are created", AdminScope)
	}
	return nil
}

// runsScriptsAtJWTCreation reports whether c's introspection scripts run
// when its access tokens are created (false for nil).
func (c *Client) runsScriptsAtJWTCreation() bool {
	return c != nil && c.AccessTokenAsJWT && c.RunIntrospectionBeforeJWT
}

// checkDelegatedScript applies the rules above to a script written as s
// (old is what it replaces, nil for a new one). allowed_hosts opens a way
// out for the data scripts see (context.fetch), so only the admin may
// change it.
func checkDelegatedScript(ctx context.Context, old, s *hooks.Script) error {
	if !delegated(ctx) {
		return nil
	}
	if s.Isolation == hooks.IsolationInline {
		return Errorf(CodeInsufficientScope, "isolation: only %s may run a script inline, in the server's process", AdminScope)
	}
	var oldHosts []string
	if old != nil {
		oldHosts = old.AllowedHosts
	}
	if !slices.Equal(nonEmpty(oldHosts), nonEmpty(s.AllowedHosts)) {
		return Errorf(CodeInsufficientScope, "allowed_hosts: only %s may change which hosts a script may fetch from", AdminScope)
	}
	return nil
}

func nonEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}
