package engine

import (
	"context"
	"errors"
	"strings"
	"time"
)

// RegistrationTokenDoc is an initial access token as the admin API reads
// and writes it (docs/admin-api.md, "Initial access tokens").
type RegistrationTokenDoc struct {
	// ID names the token (read-only).
	ID string `json:"id"`
	// Token is the initial access token itself, in the creation answer
	// only: it is never stored.
	Token string `json:"token,omitempty"`
	Label string `json:"label"`
	// Scope bounds the scope of the clients registered with the token
	// (space-separated); null or absent allows any scope but keyhook:*,
	// "" allows none.
	Scope *string `json:"scope"`
	// ExpiresIn is the lifetime in seconds on creation (default one day,
	// at most one year); ExpiresAt is when it ends (read-only).
	ExpiresIn int64 `json:"expires_in,omitempty"`
	ExpiresAt int64 `json:"expires_at"`
	// MaxUses is how many clients may register with it (default 1).
	MaxUses int64 `json:"max_uses"`
	// Uses counts the registrations made with it (read-only).
	Uses      int64  `json:"uses"`
	CreatedAt int64  `json:"created_at"`
	CreatedBy string `json:"created_by"`
}

func registrationTokenDocument(t *RegistrationToken) *RegistrationTokenDoc {
	d := &RegistrationTokenDoc{ID: t.ID, Label: t.Label, ExpiresAt: t.ExpiresAt.Unix(), MaxUses: t.MaxUses,
		Uses: t.Uses, CreatedAt: t.CreatedAt.Unix(), CreatedBy: t.CreatedBy}
	if t.AllowedScopes != nil {
		s := strings.Join(t.AllowedScopes, " ")
		d.Scope = &s
	}
	return d
}

func (e *Engine) registrationTokens() (RegistrationTokenStore, error) {
	if e.st.Registration == nil {
		return nil, Errorf(CodeInvalidRequest, "dynamic client registration is not available")
	}
	return e.st.Registration, nil
}

// CreateRegistrationToken issues an initial access token; the answer
// carries the token once. Its scope can hold no keyhook:* scope:
// registration never gives one, so a keyhook:clients.write token, which
// may create such clients itself, mints nothing beyond its own rights.
func (e *Engine) CreateRegistrationToken(ctx context.Context, doc *RegistrationTokenDoc) (*RegistrationTokenDoc, error) {
	st, err := e.registrationTokens()
	if err != nil {
		return nil, err
	}
	if doc.ID != "" || doc.Token != "" || doc.ExpiresAt != 0 || doc.Uses != 0 || doc.CreatedAt != 0 || doc.CreatedBy != "" {
		return nil, fieldError("id, token, expires_at, uses, created_at, created_by", "are set by the server")
	}
	if len(doc.Label) > 255 {
		return nil, fieldError("label", "must be at most 255 characters")
	}
	lifetime := DefaultRegistrationTokenLifetime
	if doc.ExpiresIn != 0 {
		if doc.ExpiresIn < 1 || doc.ExpiresIn > int64(MaxRegistrationTokenLifetime/time.Second) {
			return nil, fieldError("expires_in", "must be whole seconds from 1 to %d (one year)", int64(MaxRegistrationTokenLifetime/time.Second))
		}
		lifetime = time.Duration(doc.ExpiresIn) * time.Second
	}
	uses := doc.MaxUses
	if uses == 0 {
		uses = 1
	}
	if uses < 1 || uses > MaxRegistrationTokenUses {
		return nil, fieldError("max_uses", "must be from 1 to %d", MaxRegistrationTokenUses)
	}
	var allowed []string
	if doc.Scope != nil {
		allowed = []string{}
		for _, s := range splitScope(*doc.Scope) {
			if !validScopeToken(s) {
				return nil, fieldError("scope", "%q is not a valid scope", s)
			}
			if len(reservedScopes(s)) > 0 {
				return nil, fieldError("scope", "%q cannot be given by registration", s)
			}
			allowed = append(allowed, s)
		}
	}
	author, _ := ctx.Value(adminClientKey{}).(string)
	if author == "" {
		author = "server"
	}
	value := randomToken()
	now := e.now()
	t := &RegistrationToken{ID: randomID(), TokenHash: TokenHash(value), Label: doc.Label, AllowedScopes: allowed,
		MaxUses: uses, ExpiresAt: now.Add(lifetime), CreatedAt: now, CreatedBy: author}
	if err := st.CreateRegistrationToken(ctx, t); err != nil {
		return nil, storeFailure(err)
	}
	out := registrationTokenDocument(t)
	out.Token = value
	return out, nil
}

// RegistrationTokenDocs lists the initial access tokens (without the
// tokens themselves).
func (e *Engine) RegistrationTokenDocs(ctx context.Context) ([]*RegistrationTokenDoc, error) {
	st, err := e.registrationTokens()
	if err != nil {
		return nil, err
	}
	all, err := st.RegistrationTokens(ctx)
	if err != nil {
		return nil, storeFailure(err)
	}
	out := make([]*RegistrationTokenDoc, len(all))
	for i, t := range all {
		out[i] = registrationTokenDocument(t)
	}
	return out, nil
}

// RegistrationTokenDoc reads one initial access token.
func (e *Engine) RegistrationTokenDoc(ctx context.Context, id string) (*RegistrationTokenDoc, error) {
	st, err := e.registrationTokens()
	if err != nil {
		return nil, err
	}
	t, err := st.RegistrationToken(ctx, id)
	if err != nil {
		return nil, adminErr(err, "registration token", id)
	}
	return registrationTokenDocument(t), nil
}

// DeleteRegistrationToken revokes an initial access token; the clients
// registered with it stay.
func (e *Engine) DeleteRegistrationToken(ctx context.Context, id string) error {
	st, err := e.registrationTokens()
	if err != nil {
		return err
	}
	if err := st.DeleteRegistrationToken(ctx, id); err != nil {
		if errors.Is(err, ErrNotFound) {
			return adminErr(err, "registration token", id)
		}
		return storeFailure(err)
	}
	return nil
}
