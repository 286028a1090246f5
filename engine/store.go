package engine

import (
	"context"
	"time"

	"github.com/keyhook/keyhook/hooks"
)

// Stores are the persistence interfaces the engine needs; package storage
// implements them on SQLite and PostgreSQL. All methods are safe for
// concurrent use and return ErrNotFound / ErrConflict where documented.
type Stores struct {
	Clients    ClientStore
	Tokens     TokenStore
	Keys       KeyStore
	Properties PropertyStore
	JTIs       JTIStore
	Scripts    ScriptStore
	Users      UserStore
	Codes      CodeStore
	Secrets    SecretStore
	Sessions   SessionStore
	// Pushed keeps pushed authorization requests (RFC 9126); nil
	// disables the endpoint.
	Pushed PushedRequestStore
	// Devices keeps device authorizations (RFC 8628); nil turns the
	// device flow off.
	Devices DeviceStore
	// Registration keeps initial access tokens (RFC 7591 §3); nil turns
	// dynamic client registration off.
	Registration RegistrationTokenStore
	// ScriptVersions keeps the scripts' histories; nil keeps none.
	ScriptVersions ScriptVersionStore
	// TrustedIssuers keeps the issuers of JWT bearer grants (RFC 7523);
	// nil turns the grant off.
	TrustedIssuers TrustedIssuerStore
}

// ClientStore keeps registered clients.
type ClientStore interface {
	ClientByID(ctx context.Context, id string) (*Client, error)
	Clients(ctx context.Context) ([]*Client, error)
	// CreateClient returns ErrConflict when the id exists.
	CreateClient(ctx context.Context, c *Client) error
	// UpdateClient returns ErrNotFound when the id does not exist.
	UpdateClient(ctx context.Context, c *Client) error
	// DeleteClient deletes the client and its tokens; ErrNotFound when absent.
	DeleteClient(ctx context.Context, id string) error
}

// TokenStore keeps issued tokens.
type TokenStore interface {
	// CreateTokens stores the tokens of one issuance atomically.
	CreateTokens(ctx context.Context, tokens ...*Token) error
	TokenByID(ctx context.Context, id string) (*Token, error)
	// LookupToken is TokenByID for the hot reads (introspection,
	// userinfo): it may answer from a cache, but never with a token that
	// a change made through any store on the same database has changed
	// since (docs/performance.md). The token is shared and must not be
	// modified.
	LookupToken(ctx context.Context, id string) (*Token, error)
	// RotateRefreshToken marks the refresh token oldID used at now, keeps
	// successor (when not nil) on it and stores next, atomically, if and
	// only if oldID is active (unused, unrevoked, unexpired at now). It
	// reports whether it did; of two concurrent calls for one oldID at
	// most one reports true.
	RotateRefreshToken(ctx context.Context, oldID string, now time.Time, successor *Successor, next ...*Token) (bool, error)
	// RevokeToken revokes one token.
	RevokeToken(ctx context.Context, id string) error
	// RevokeFamily revokes every token of a grant family.
	RevokeFamily(ctx context.Context, familyID string) error
	// PurgeTokens deletes tokens that expired before t and forgets the
	// successors whose Until is before t.
	PurgeTokens(ctx context.Context, before time.Time) (int64, error)
	// LatestExpiry is the latest expiry of tokens signed with key kid
	// (zero when there are none).
	LatestExpiry(ctx context.Context, kid string) (time.Time, error)
}

// KeyStore keeps the server's signing keys.
type KeyStore interface {
	SigningKeys(ctx context.Context) ([]*SigningKey, error)
	// AddSigningKey stores k and retires every other current key at
	// k.CreatedAt, atomically.
	AddSigningKey(ctx context.Context, k *SigningKey) error
	DeleteSigningKey(ctx context.Context, kid string) error
	// ResealSigningKey replaces kid's PrivateJWK with next if it is
	// still old (engine/kek.go).
	ResealSigningKey(ctx context.Context, kid, old, next string) error
}

// PropertyStore keeps server properties as JSON values by name.
type PropertyStore interface {
	Properties(ctx context.Context) (map[string]string, error)
	SetProperties(ctx context.Context, values map[string]string) error
}

// JTIStore remembers client assertion ids to refuse replays (RFC 7523 §3).
type JTIStore interface {
	// UseJTI records (clientID, jti) until expires; ErrConflict when it
	// was recorded already.
	UseJTI(ctx context.Context, clientID, jti string, expires time.Time) error
	PurgeJTIs(ctx context.Context, before time.Time) (int64, error)
}

// ScriptStore keeps hook scripts.
type ScriptStore interface {
	Scripts(ctx context.Context) ([]*hooks.Script, error)
	ScriptByName(ctx context.Context, name string) (*hooks.Script, error)
	CreateScript(ctx context.Context, s *hooks.Script) error
	UpdateScript(ctx context.Context, s *hooks.Script) error
	DeleteScript(ctx context.Context, name string) error
	// ScriptsVersion changes whenever any script changes; instances poll it.
	ScriptsVersion(ctx context.Context) (string, error)
}

// ScriptVersion is one immutable version of a script (docs/scripts.md,
// "Versions, rollback and rollout").
type ScriptVersion struct {
	Script string
	// Number counts the versions of the script from 1.
	Number int
	// Author is the admin API client that wrote it, or "import", "seed"
	// or "bootstrap" for the server's own writes.
	Author    string
	CreatedAt time.Time
	// SHA256 is the hex SHA-256 of the source.
	SHA256 string
	// Snapshot is the script's admin document as JSON, without its
	// read-only and write-only members.
	Snapshot []byte
}

// ScriptVersionStore keeps the versions of scripts. DeleteScript deletes
// a script's versions with it.
type ScriptVersionStore interface {
	// ScriptVersions lists the versions of a script, newest first.
	ScriptVersions(ctx context.Context, name string) ([]*ScriptVersion, error)
	// ScriptVersion returns one version or ErrNotFound.
	ScriptVersion(ctx context.Context, name string, number int) (*ScriptVersion, error)
	// LatestScriptVersion returns the newest version or ErrNotFound.
	LatestScriptVersion(ctx context.Context, name string) (*ScriptVersion, error)
	// AddScriptVersion stores v; ErrConflict when its number is taken.
	AddScriptVersion(ctx context.Context, v *ScriptVersion) error
	// ReplaceScriptVersions makes all the versions of the script called
	// name (import).
	ReplaceScriptVersions(ctx context.Context, name string, all []*ScriptVersion) error
}

// UserStore keeps resource owners.
type UserStore interface {
	UserByName(ctx context.Context, username string) (*User, error)
	Users(ctx context.Context) ([]*User, error)
	CreateUser(ctx context.Context, u *User) error
	UpdateUser(ctx context.Context, u *User) error
	DeleteUser(ctx context.Context, username string) error
}

// CodeStore keeps authorization codes.
type CodeStore interface {
	CreateCode(ctx context.Context, c *AuthCode) error
	// CodeByID returns the code, used or not; ErrNotFound when absent.
	CodeByID(ctx context.Context, id string) (*AuthCode, error)
	// RedeemCode marks the code id used at now and stores tokens,
	// atomically, if and only if the code was unused. It reports whether
	// it did; of concurrent calls for one code at most one reports true,
	// and once a call has seen the code used, the winner's tokens are
	// stored (so revoking the family then reaches them).
	RedeemCode(ctx context.Context, id string, now time.Time, tokens ...*Token) (bool, error)
	PurgeCodes(ctx context.Context, before time.Time) (int64, error)
}

// SecretStore keeps the server's own random secrets (e.g. the key that
// seals client secrets), creating each on first use.
type SecretStore interface {
	// Secret returns the secret called name, storing fresh when none exists
	// (concurrent instances agree on one value).
	Secret(ctx context.Context, name string, fresh []byte) ([]byte, error)
	// ResealSecret replaces the value of name with next if it is still
	// old (engine/kek.go).
	ResealSecret(ctx context.Context, name string, old, next []byte) error
}
