package storage

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/keyhook/keyhook/engine"
	"github.com/keyhook/keyhook/hooks"
)

// The row types mirror the tables of migrations. They stay unexported so
// that gorm's tags never leak into the engine's model.

type clientRow struct {
	ID                        string `gorm:"column:id;primaryKey"`
	Name                      string `gorm:"column:name"`
	SecretHash                string `gorm:"column:secret_hash"`
	SecretSealed              string `gorm:"column:secret_sealed"`
	AuthMethod                string `gorm:"column:auth_method"`
	AuthSigningAlg            string `gorm:"column:auth_signing_alg"`
	GrantTypes                string `gorm:"column:grant_types"`
	RedirectURIs              string `gorm:"column:redirect_uris"`
	Scope                     string `gorm:"column:scope"`
	JWKS                      string `gorm:"column:jwks"`
	JWKSURI                   string `gorm:"column:jwks_uri"`
	AccessTokenAsJWT          bool   `gorm:"column:access_token_as_jwt"`
	RunIntrospectionBeforeJWT bool   `gorm:"column:run_introspection_before_jwt"`
	AccessTokenLifetime       int64  `gorm:"column:access_token_lifetime"`
	RefreshTokenLifetime      int64  `gorm:"column:refresh_token_lifetime"`
	IDTokenLifetime           int64  `gorm:"column:id_token_lifetime"`
	RefreshTokenReuseInterval int64  `gorm:"column:refresh_token_reuse_interval"`
	IntrospectionScripts      string `gorm:"column:introspection_scripts"`
	UpdateTokenScripts        string `gorm:"column:update_token_scripts"`
	Attributes                string `gorm:"column:attributes"`
	AllowedCORSOrigins        string `gorm:"column:allowed_cors_origins"`
	AllowedResources          string `gorm:"column:allowed_resources"`
	RequirePAR                bool   `gorm:"column:require_pushed_authorization_requests"`
	// TokenExchange holds Client.TokenExchange as JSON ("" when none).
	TokenExchange         string `gorm:"column:token_exchange"`
	DPoPBoundAccessTokens bool   `gorm:"column:dpop_bound_access_tokens"`
	RegistrationTokenHash string `gorm:"column:registration_token_hash"`
	RegistrationScopes    string `gorm:"column:registration_allowed_scopes"`
	RegistrationLabel     string `gorm:"column:registration_label"`
	RegistrationOpen      bool   `gorm:"column:registration_open"`
	CreatedAt             int64  `gorm:"column:created_at;autoCreateTime:false"`
	UpdatedAt             int64  `gorm:"column:updated_at;autoUpdateTime:false"`
}

func (clientRow) TableName() string { return "clients" }

func clientToRow(c *engine.Client) (*clientRow, error) {
	r := &clientRow{
		ID:                        c.ID,
		Name:                      c.Name,
		SecretHash:                c.SecretHash,
		SecretSealed:              c.SecretSealed,
		AuthMethod:                string(c.AuthMethod),
		AuthSigningAlg:            c.AuthSigningAlg,
		Scope:                     c.Scope,
		JWKS:                      c.JWKS,
		JWKSURI:                   c.JWKSURI,
		AccessTokenAsJWT:          c.AccessTokenAsJWT,
		RunIntrospectionBeforeJWT: c.RunIntrospectionBeforeJWT,
		AccessTokenLifetime:       c.AccessTokenLifetime,
		RefreshTokenLifetime:      c.RefreshTokenLifetime,
		IDTokenLifetime:           c.IDTokenLifetime,
		RefreshTokenReuseInterval: c.RefreshTokenReuseInterval,
		RequirePAR:                c.RequirePushedAuthorizationRequests,
		DPoPBoundAccessTokens:     c.DPoPBoundAccessTokens,
		CreatedAt:                 toNanos(c.CreatedAt),
		UpdatedAt:                 toNanos(c.UpdatedAt),
	}
	var err error
	for _, f := range []struct {
		dst *string
		v   any
	}{
		{&r.GrantTypes, c.GrantTypes},
		{&r.RedirectURIs, c.RedirectURIs},
		{&r.IntrospectionScripts, c.IntrospectionScripts},
		{&r.UpdateTokenScripts, c.UpdateTokenScripts},
		{&r.Attributes, c.Attributes},
		{&r.AllowedCORSOrigins, c.AllowedCORSOrigins},
		{&r.AllowedResources, c.AllowedResources},
	} {
		if *f.dst, err = encodeJSON(f.v); err != nil {
			return nil, fmt.Errorf("storage: client %s: %w", c.ID, err)
		}
	}
	if c.TokenExchange != nil {
		if r.TokenExchange, err = encodeJSON(c.TokenExchange); err != nil {
			return nil, fmt.Errorf("storage: client %s: %w", c.ID, err)
		}
	}
	if reg := c.Registration; reg != nil {
		r.RegistrationTokenHash, r.RegistrationLabel, r.RegistrationOpen = reg.AccessTokenHash, reg.Label, reg.Open
		if r.RegistrationScopes, err = encodeJSON(reg.AllowedScopes); err != nil {
			return nil, fmt.Errorf("storage: client %s: %w", c.ID, err)
		}
	}
	return r, nil
}

func (r *clientRow) toEngine() (*engine.Client, error) {
	c := &engine.Client{
		ID:                                 r.ID,
		Name:                               r.Name,
		SecretHash:                         r.SecretHash,
		SecretSealed:                       r.SecretSealed,
		AuthMethod:                         engine.AuthMethod(r.AuthMethod),
		AuthSigningAlg:                     r.AuthSigningAlg,
		Scope:                              r.Scope,
		JWKS:                               r.JWKS,
		JWKSURI:                            r.JWKSURI,
		AccessTokenAsJWT:                   r.AccessTokenAsJWT,
		RunIntrospectionBeforeJWT:          r.RunIntrospectionBeforeJWT,
		AccessTokenLifetime:                r.AccessTokenLifetime,
		RefreshTokenLifetime:               r.RefreshTokenLifetime,
		IDTokenLifetime:                    r.IDTokenLifetime,
		RefreshTokenReuseInterval:          r.RefreshTokenReuseInterval,
		CreatedAt:                          fromNanos(r.CreatedAt),
		RequirePushedAuthorizationRequests: r.RequirePAR,
		DPoPBoundAccessTokens:              r.DPoPBoundAccessTokens,
		UpdatedAt:                          fromNanos(r.UpdatedAt),
	}
	for _, f := range []struct {
		src string
		dst any
	}{
		{r.GrantTypes, &c.GrantTypes},
		{r.RedirectURIs, &c.RedirectURIs},
		{r.IntrospectionScripts, &c.IntrospectionScripts},
		{r.UpdateTokenScripts, &c.UpdateTokenScripts},
		{r.Attributes, &c.Attributes},
		{r.AllowedCORSOrigins, &c.AllowedCORSOrigins},
		{r.AllowedResources, &c.AllowedResources},
		{r.TokenExchange, &c.TokenExchange},
	} {
		if err := decodeJSON(f.src, f.dst); err != nil {
			return nil, fmt.Errorf("storage: client %s: %w", r.ID, err)
		}
	}
	if r.RegistrationTokenHash != "" {
		c.Registration = &engine.ClientRegistration{AccessTokenHash: r.RegistrationTokenHash,
			Label: r.RegistrationLabel, Open: r.RegistrationOpen}
		if err := decodeJSON(r.RegistrationScopes, &c.Registration.AllowedScopes); err != nil {
			return nil, fmt.Errorf("storage: client %s: %w", r.ID, err)
		}
	}
	return c, nil
}

type tokenRow struct {
	ID        string `gorm:"column:id;primaryKey"`
	Kind      string `gorm:"column:kind"`
	Format    string `gorm:"column:format"`
	ClientID  string `gorm:"column:client_id"`
	Subject   string `gorm:"column:subject"`
	Username  string `gorm:"column:username"`
	Scope     string `gorm:"column:scope"`
	GrantType string `gorm:"column:grant_type"`
	FamilyID  string `gorm:"column:family_id"`
	Audience  string `gorm:"column:audience"`
	KeyID     string `gorm:"column:key_id"`
	Claims    string `gorm:"column:claims"`
	IssuedAt  int64  `gorm:"column:issued_at"`
	ExpiresAt int64  `gorm:"column:expires_at"`
	AuthTime  int64  `gorm:"column:auth_time"`
	Revoked   bool   `gorm:"column:revoked"`
	UsedAt    int64  `gorm:"column:used_at"`
	// Successor and SuccessorUntil hold Token.Successor ("" and 0: none).
	Successor      string `gorm:"column:successor"`
	SuccessorUntil int64  `gorm:"column:successor_until"`
	// Resources holds Token.Resources, a JSON list ("" when none).
	Resources string `gorm:"column:resources"`
	// Act holds Token.Actor, a JSON object ("" when none).
	Act string `gorm:"column:act"`
	// JKT holds Token.JKT, the DPoP key's thumbprint ("" when unbound).
	JKT string `gorm:"column:jkt"`
}

func (tokenRow) TableName() string { return "tokens" }

func tokenToRow(t *engine.Token) (*tokenRow, error) {
	aud, err := encodeJSON(t.Audience)
	if err != nil {
		return nil, fmt.Errorf("storage: token audience: %w", err)
	}
	claims, err := encodeJSON(t.Claims)
	if err != nil {
		return nil, fmt.Errorf("storage: token claims: %w", err)
	}
	r := &tokenRow{
		Resources: listJSON(t.Resources),
		JKT:       t.JKT,
		ID:        t.ID,
		Kind:      string(t.Kind),
		Format:    string(t.Format),
		ClientID:  t.ClientID,
		Subject:   t.Subject,
		Username:  t.Username,
		Scope:     t.Scope,
		GrantType: string(t.GrantType),
		FamilyID:  t.FamilyID,
		Audience:  aud,
		KeyID:     t.KeyID,
		Claims:    claims,
		IssuedAt:  toNanos(t.IssuedAt),
		ExpiresAt: toNanos(t.ExpiresAt),
		AuthTime:  toNanos(t.AuthTime),
		Revoked:   t.Revoked,
		UsedAt:    toNanos(t.UsedAt),
	}
	if t.Successor != nil {
		r.Successor, r.SuccessorUntil = t.Successor.Sealed, toNanos(t.Successor.Until)
	}
	if t.Actor != nil {
		if r.Act, err = encodeJSON(t.Actor); err != nil {
			return nil, fmt.Errorf("storage: token act: %w", err)
		}
	}
	return r, nil
}

func (r *tokenRow) toEngine() (*engine.Token, error) {
	t := &engine.Token{
		ID:        r.ID,
		Kind:      engine.TokenKind(r.Kind),
		Format:    engine.TokenFormat(r.Format),
		ClientID:  r.ClientID,
		Subject:   r.Subject,
		Username:  r.Username,
		Scope:     r.Scope,
		GrantType: engine.GrantType(r.GrantType),
		FamilyID:  r.FamilyID,
		KeyID:     r.KeyID,
		JKT:       r.JKT,
		IssuedAt:  fromNanos(r.IssuedAt),
		ExpiresAt: fromNanos(r.ExpiresAt),
		AuthTime:  fromNanos(r.AuthTime),
		Revoked:   r.Revoked,
		UsedAt:    fromNanos(r.UsedAt),
	}
	if r.Successor != "" {
		t.Successor = &engine.Successor{Sealed: r.Successor, Until: fromNanos(r.SuccessorUntil)}
	}
	if err := decodeJSON(r.Audience, &t.Audience); err != nil {
		return nil, fmt.Errorf("storage: token audience: %w", err)
	}
	if err := decodeJSON(r.Resources, &t.Resources); err != nil {
		return nil, fmt.Errorf("storage: token resources: %w", err)
	}
	claims, err := decodeObject(r.Claims)
	if err != nil {
		return nil, fmt.Errorf("storage: token claims: %w", err)
	}
	t.Claims = claims
	if t.Actor, err = decodeObject(r.Act); err != nil {
		return nil, fmt.Errorf("storage: token act: %w", err)
	}
	return t, nil
}

type signingKeyRow struct {
	ID         string `gorm:"column:id;primaryKey"`
	Alg        string `gorm:"column:alg"`
	PrivateJWK string `gorm:"column:private_jwk"`
	CreatedAt  int64  `gorm:"column:created_at;autoCreateTime:false"`
	RetiredAt  int64  `gorm:"column:retired_at"`
}

func (signingKeyRow) TableName() string { return "signing_keys" }

func signingKeyToRow(k *engine.SigningKey) *signingKeyRow {
	return &signingKeyRow{
		ID:         k.ID,
		Alg:        k.Alg,
		PrivateJWK: k.PrivateJWK,
		CreatedAt:  toNanos(k.CreatedAt),
		RetiredAt:  toNanos(k.RetiredAt),
	}
}

func (r *signingKeyRow) toEngine() *engine.SigningKey {
	return &engine.SigningKey{
		ID:         r.ID,
		Alg:        r.Alg,
		PrivateJWK: r.PrivateJWK,
		CreatedAt:  fromNanos(r.CreatedAt),
		RetiredAt:  fromNanos(r.RetiredAt),
	}
}

type propertyRow struct {
	Name  string `gorm:"column:name;primaryKey"`
	Value string `gorm:"column:value"`
}

func (propertyRow) TableName() string { return "properties" }

type usedJTIRow struct {
	ClientID  string `gorm:"column:client_id;primaryKey"`
	JTI       string `gorm:"column:jti;primaryKey"`
	ExpiresAt int64  `gorm:"column:expires_at"`
}

func (usedJTIRow) TableName() string { return "used_jtis" }

type scriptRow struct {
	Name      string `gorm:"column:name;primaryKey"`
	Kind      string `gorm:"column:kind"`
	Source    string `gorm:"column:source"`
	Enabled   bool   `gorm:"column:enabled"`
	Level     int    `gorm:"column:level"`
	Config    string `gorm:"column:config"`
	TimeoutMS int64  `gorm:"column:timeout_ms"`
	OnError   string `gorm:"column:on_error"`
	MemoryMB  int64  `gorm:"column:memory_mb"`
	Isolation string `gorm:"column:isolation"`
	Hosts     string `gorm:"column:allowed_hosts"`
	Version   string `gorm:"column:version"`
	UpdatedAt int64  `gorm:"column:updated_at;autoUpdateTime:false"`
	// VersionNumber and Candidate: docs/scripts.md, "Versions, rollback
	// and rollout".
	VersionNumber int64  `gorm:"column:version_number"`
	Candidate     string `gorm:"column:candidate"`
	// Secrets are as the engine gives them: sealed when it has a
	// key-encryption key (engine/scriptsecrets.go).
	Secrets string `gorm:"column:secrets"`
	// RecordInputs: docs/scripts.md, "Replay".
	RecordInputs int64 `gorm:"column:record_inputs"`
}

func (scriptRow) TableName() string { return "scripts" }

func scriptToRow(s *hooks.Script) (*scriptRow, error) {
	cfg, err := encodeJSON(s.Config)
	if err != nil {
		return nil, fmt.Errorf("storage: script %s config: %w", s.Name, err)
	}
	cand := ""
	if s.Candidate != nil {
		b, err := json.Marshal(candidateRow{Source: s.Candidate.Source, Rollout: string(s.Candidate.Rollout), Percent: s.Candidate.Percent})
		if err != nil {
			return nil, fmt.Errorf("storage: script %s candidate: %w", s.Name, err)
		}
		cand = string(b)
	}
	hosts := ""
	if len(s.AllowedHosts) > 0 {
		if hosts, err = encodeJSON(s.AllowedHosts); err != nil {
			return nil, fmt.Errorf("storage: script %s allowed_hosts: %w", s.Name, err)
		}
	}
	secrets := ""
	if len(s.Secrets) > 0 {
		if secrets, err = encodeJSON(s.Secrets); err != nil {
			return nil, fmt.Errorf("storage: script %s secrets: %w", s.Name, err)
		}
	}
	return &scriptRow{
		Secrets:   secrets,
		Name:      s.Name,
		Kind:      string(s.Kind),
		Source:    s.Source,
		Enabled:   s.Enabled,
		Level:     s.Level,
		Config:    cfg,
		TimeoutMS: s.Timeout.Milliseconds(),
		OnError:   string(s.OnError),
		MemoryMB:  int64(s.MemoryMB),
		Isolation: string(s.Isolation),
		Hosts:     hosts,
		Version:   s.Version,

		VersionNumber: int64(s.Number),
		Candidate:     cand,
		RecordInputs:  int64(s.RecordInputs),
	}, nil
}

func (r *scriptRow) toEngine() (*hooks.Script, error) {
	s := &hooks.Script{
		Name:      r.Name,
		Kind:      hooks.Kind(r.Kind),
		Source:    r.Source,
		Enabled:   r.Enabled,
		Level:     r.Level,
		Timeout:   time.Duration(r.TimeoutMS) * time.Millisecond,
		OnError:   hooks.OnError(r.OnError),
		MemoryMB:  int(r.MemoryMB),
		Isolation: hooks.Isolation(r.Isolation),
		Version:   r.Version,
		Number:    int(r.VersionNumber),

		RecordInputs: int(r.RecordInputs),
	}
	if err := decodeJSON(r.Config, &s.Config); err != nil {
		return nil, fmt.Errorf("storage: script %s config: %w", r.Name, err)
	}
	if r.Candidate != "" {
		var c candidateRow
		if err := json.Unmarshal([]byte(r.Candidate), &c); err != nil {
			return nil, fmt.Errorf("storage: script %s candidate: %w", r.Name, err)
		}
		s.Candidate = &hooks.Candidate{Source: c.Source, Rollout: hooks.Rollout(c.Rollout), Percent: c.Percent}
	}
	if err := decodeJSON(r.Hosts, &s.AllowedHosts); err != nil {
		return nil, fmt.Errorf("storage: script %s allowed_hosts: %w", r.Name, err)
	}
	if err := decodeJSON(r.Secrets, &s.Secrets); err != nil {
		return nil, fmt.Errorf("storage: script %s secrets: %w", r.Name, err)
	}
	return s, nil
}

// candidateRow is the JSON of scripts.candidate.
type candidateRow struct {
	Source  string `json:"source"`
	Rollout string `json:"rollout"`
	Percent int    `json:"percent"`
}

// scriptVersionRow is one immutable version of a script.
type scriptVersionRow struct {
	Script    string `gorm:"column:script;primaryKey"`
	Number    int64  `gorm:"column:number;primaryKey;autoIncrement:false"`
	Author    string `gorm:"column:author"`
	CreatedAt int64  `gorm:"column:created_at;autoCreateTime:false"`
	SHA256    string `gorm:"column:sha256"`
	Snapshot  string `gorm:"column:snapshot"`
}

func (scriptVersionRow) TableName() string { return "script_versions" }

type userRow struct {
	Username     string `gorm:"column:username;primaryKey"`
	PasswordHash string `gorm:"column:password_hash"`
	Claims       string `gorm:"column:claims"`
	Disabled     bool   `gorm:"column:disabled"`
	CreatedAt    int64  `gorm:"column:created_at;autoCreateTime:false"`
	UpdatedAt    int64  `gorm:"column:updated_at;autoUpdateTime:false"`
}

func (userRow) TableName() string { return "users" }

func userToRow(u *engine.User) (*userRow, error) {
	claims, err := encodeJSON(u.Claims)
	if err != nil {
		return nil, fmt.Errorf("storage: user %s claims: %w", u.Username, err)
	}
	return &userRow{
		Username:     u.Username,
		PasswordHash: u.PasswordHash,
		Claims:       claims,
		Disabled:     u.Disabled,
		CreatedAt:    toNanos(u.CreatedAt),
		UpdatedAt:    toNanos(u.UpdatedAt),
	}, nil
}

func (r *userRow) toEngine() (*engine.User, error) {
	claims, err := decodeObject(r.Claims)
	if err != nil {
		return nil, fmt.Errorf("storage: user %s claims: %w", r.Username, err)
	}
	return &engine.User{
		Username:     r.Username,
		PasswordHash: r.PasswordHash,
		Claims:       claims,
		Disabled:     r.Disabled,
		CreatedAt:    fromNanos(r.CreatedAt),
		UpdatedAt:    fromNanos(r.UpdatedAt),
	}, nil
}

type authCodeRow struct {
	ID                  string `gorm:"column:id;primaryKey"`
	ClientID            string `gorm:"column:client_id"`
	Username            string `gorm:"column:username"`
	RedirectURI         string `gorm:"column:redirect_uri"`
	Scope               string `gorm:"column:scope"`
	CodeChallenge       string `gorm:"column:code_challenge"`
	CodeChallengeMethod string `gorm:"column:code_challenge_method"`
	Nonce               string `gorm:"column:nonce"`
	FamilyID            string `gorm:"column:family_id"`
	AuthTime            int64  `gorm:"column:auth_time"`
	ExpiresAt           int64  `gorm:"column:expires_at"`
	UsedAt              int64  `gorm:"column:used_at"`
	// Resources holds AuthCode.Resources, a JSON list ("" when none).
	Resources string `gorm:"column:resources"`
	DPoPJKT   string `gorm:"column:dpop_jkt"`
}

func (authCodeRow) TableName() string { return "auth_codes" }

func authCodeToRow(c *engine.AuthCode) *authCodeRow {
	return &authCodeRow{
		ID:                  c.ID,
		ClientID:            c.ClientID,
		Username:            c.Username,
		RedirectURI:         c.RedirectURI,
		Scope:               c.Scope,
		CodeChallenge:       c.CodeChallenge,
		CodeChallengeMethod: c.CodeChallengeMethod,
		Nonce:               c.Nonce,
		FamilyID:            c.FamilyID,
		AuthTime:            toNanos(c.AuthTime),
		ExpiresAt:           toNanos(c.ExpiresAt),
		UsedAt:              toNanos(c.UsedAt),
		Resources:           listJSON(c.Resources),
		DPoPJKT:             c.DPoPJKT,
	}
}

func (r *authCodeRow) toEngine() *engine.AuthCode {
	var res []string
	if decodeJSON(r.Resources, &res) != nil {
		// Not JSON: nothing this code wrote. A code without its
		// resources gives tokens for none, never for more.
		res = nil
	}
	return &engine.AuthCode{
		Resources:           res,
		DPoPJKT:             r.DPoPJKT,
		ID:                  r.ID,
		ClientID:            r.ClientID,
		Username:            r.Username,
		RedirectURI:         r.RedirectURI,
		Scope:               r.Scope,
		CodeChallenge:       r.CodeChallenge,
		CodeChallengeMethod: r.CodeChallengeMethod,
		Nonce:               r.Nonce,
		FamilyID:            r.FamilyID,
		AuthTime:            fromNanos(r.AuthTime),
		ExpiresAt:           fromNanos(r.ExpiresAt),
		UsedAt:              fromNanos(r.UsedAt),
	}
}

type sessionRow struct {
	ID            string `gorm:"column:id;primaryKey"`
	Username      string `gorm:"column:username"`
	AuthTime      int64  `gorm:"column:auth_time"`
	UserUpdatedAt int64  `gorm:"column:user_updated_at"`
	ExpiresAt     int64  `gorm:"column:expires_at"`
}

func (sessionRow) TableName() string { return "login_sessions" }

func sessionToRow(s *engine.Session) *sessionRow {
	return &sessionRow{ID: s.ID, Username: s.Username, AuthTime: toNanos(s.AuthTime),
		UserUpdatedAt: toNanos(s.UserUpdatedAt), ExpiresAt: toNanos(s.ExpiresAt)}
}

func (r *sessionRow) toEngine() *engine.Session {
	return &engine.Session{ID: r.ID, Username: r.Username, AuthTime: fromNanos(r.AuthTime),
		UserUpdatedAt: fromNanos(r.UserUpdatedAt), ExpiresAt: fromNanos(r.ExpiresAt)}
}

type pushedRequestRow struct {
	ID        string `gorm:"column:id;primaryKey"`
	ClientID  string `gorm:"column:client_id"`
	Request   string `gorm:"column:request"`
	Started   bool   `gorm:"column:started"`
	ExpiresAt int64  `gorm:"column:expires_at"`
}

func (pushedRequestRow) TableName() string { return "pushed_requests" }

func pushedToRow(p *engine.PushedRequest) (*pushedRequestRow, error) {
	req, err := encodeJSON(&p.Request)
	if err != nil {
		return nil, err
	}
	return &pushedRequestRow{ID: p.ID, ClientID: p.ClientID, Request: req, Started: p.Started,
		ExpiresAt: toNanos(p.ExpiresAt)}, nil
}

func (r *pushedRequestRow) toEngine() (*engine.PushedRequest, error) {
	p := &engine.PushedRequest{ID: r.ID, ClientID: r.ClientID, Started: r.Started, ExpiresAt: fromNanos(r.ExpiresAt)}
	if err := decodeJSON(r.Request, &p.Request); err != nil {
		return nil, fmt.Errorf("storage: pushed request: %w", err)
	}
	return p, nil
}

type secretRow struct {
	Name      string `gorm:"column:name;primaryKey"`
	Value     string `gorm:"column:value"`
	CreatedAt int64  `gorm:"column:created_at;autoCreateTime:false"`
}

func (secretRow) TableName() string { return "server_secrets" }

type scriptGenerationRow struct {
	ID         int   `gorm:"column:id;primaryKey;autoIncrement:false"`
	Generation int64 `gorm:"column:generation"`
}

func (scriptGenerationRow) TableName() string { return "script_generation" }

// Times are stored as Unix nanoseconds, the zero time as 0. Times outside
// what int64 nanoseconds can hold (before 1678, after 2262) are clamped.
var (
	minNanoTime = time.Unix(0, math.MinInt64+1)
	maxNanoTime = time.Unix(0, math.MaxInt64)
)

func toNanos(t time.Time) int64 {
	switch {
	case t.IsZero():
		return 0
	case t.Before(minNanoTime):
		return math.MinInt64 + 1
	case t.After(maxNanoTime):
		return math.MaxInt64
	}
	return t.UnixNano()
}

// nowNanos is toNanos for a moment something happens, which must not be
// recorded as 0 ("never"): a zero now means the current time.
func nowNanos(t time.Time) int64 {
	if t.IsZero() {
		t = time.Now()
	}
	return toNanos(t)
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// encodeJSON stores v as JSON text; nil slices and maps become "null" so
// that they come back nil.
func encodeJSON(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// listJSON is a list as a JSON array, or "" when it is empty.
func listJSON(l []string) string {
	if len(l) == 0 {
		return ""
	}
	b, _ := json.Marshal(l) // a []string always marshals
	return string(b)
}

// decodeJSON reads what encodeJSON wrote; "" leaves dst at its zero value.
func decodeJSON(s string, dst any) error {
	if s == "" {
		return nil
	}
	return json.Unmarshal([]byte(s), dst)
}

// decodeObject reads a JSON object of claims. Numbers come back as int64
// when integral and float64 otherwise, never as json.Number, so callers
// (and scripts) see the types they stored.
func decodeObject(s string) (map[string]any, error) {
	if s == "" {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	for k, v := range m {
		m[k] = normalizeNumbers(v)
	}
	return m, nil
}

func normalizeNumbers(v any) any {
	switch v := v.(type) {
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return i
		}
		f, err := v.Float64()
		if err != nil {
			// Out of float64 range: keep the digits rather than lose them.
			return v.String()
		}
		return f
	case map[string]any:
		for k, e := range v {
			v[k] = normalizeNumbers(e)
		}
		return v
	case []any:
		for i, e := range v {
			v[i] = normalizeNumbers(e)
		}
		return v
	}
	return v
}

type registrationTokenRow struct {
	ID            string `gorm:"column:id;primaryKey"`
	TokenHash     string `gorm:"column:token_hash"`
	Label         string `gorm:"column:label"`
	AllowedScopes string `gorm:"column:allowed_scopes"`
	MaxUses       int64  `gorm:"column:max_uses"`
	Uses          int64  `gorm:"column:uses"`
	ExpiresAt     int64  `gorm:"column:expires_at"`
	CreatedAt     int64  `gorm:"column:created_at;autoCreateTime:false"`
	CreatedBy     string `gorm:"column:created_by"`
}

func (registrationTokenRow) TableName() string { return "registration_tokens" }

func registrationTokenToRow(t *engine.RegistrationToken) (*registrationTokenRow, error) {
	scopes, err := encodeJSON(t.AllowedScopes)
	if err != nil {
		return nil, err
	}
	return &registrationTokenRow{ID: t.ID, TokenHash: t.TokenHash, Label: t.Label, AllowedScopes: scopes,
		MaxUses: t.MaxUses, Uses: t.Uses, ExpiresAt: toNanos(t.ExpiresAt), CreatedAt: toNanos(t.CreatedAt),
		CreatedBy: t.CreatedBy}, nil
}

func (r *registrationTokenRow) toEngine() (*engine.RegistrationToken, error) {
	t := &engine.RegistrationToken{ID: r.ID, TokenHash: r.TokenHash, Label: r.Label, MaxUses: r.MaxUses,
		Uses: r.Uses, ExpiresAt: fromNanos(r.ExpiresAt), CreatedAt: fromNanos(r.CreatedAt), CreatedBy: r.CreatedBy}
	if err := decodeJSON(r.AllowedScopes, &t.AllowedScopes); err != nil {
		return nil, fmt.Errorf("storage: registration token %s: %w", r.ID, err)
	}
	return t, nil
}
