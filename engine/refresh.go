package engine

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"time"
)

// MaxRefreshTokenReuseInterval bounds a client's
// refresh_token_reuse_interval, in seconds: long enough for a client to
// retry an answer it lost, short enough that a stolen refresh token
// replayed later still ends its family (RFC 9700 §4.14.2).
const MaxRefreshTokenReuseInterval = 300

func checkReuseInterval(v int64) error {
	if v < 0 || v > MaxRefreshTokenReuseInterval {
		return fieldError("refresh_token_reuse_interval", "must be whole seconds from 0 to %d", MaxRefreshTokenReuseInterval)
	}
	return nil
}

// sealedSuccessor is what a Successor seals: the answer of one rotation,
// byte for byte, and the ids of the tokens it carries.
//
// Why a sealed copy rather than tokens derived again: opaque tokens are
// stored only as hashes and JWTs (access and ID tokens) carry a jti, a
// time and what scripts made of them, so neither can be made again to be
// the same strings; re-issuing different ones would leave two live pairs
// per rotation. The copy is sealed with the engine's AES-256-GCM key
// (the one that seals client secrets), bound to the row of the refresh
// token it answers, and kept only while the client's reuse interval
// lasts: PurgeTokens forgets it after that (docs/refresh.md).
type sealedSuccessor struct {
	// Old is the id of the rotated refresh token: a sealed answer copied
	// onto another row does not open there.
	Old             string         `json:"old"`
	Answer          *TokenResponse `json:"answer"`
	AccessID        string         `json:"access_id"`
	RefreshID       string         `json:"refresh_id,omitempty"`
	AccessExpiresAt int64          `json:"access_expires_at"`
	// Resources are the resources (RFC 8707) the answer's access token
	// is for: only a request for the same ones is a retry.
	Resources []string `json:"resources,omitempty"`
}

// successor seals the answer of a rotation when the client has a reuse
// interval; nil otherwise (then nothing is kept).
func (e *Engine) successor(g *grant, tokens []*Token, resp *TokenResponse, used time.Time) *Successor {
	interval := g.client.RefreshTokenReuseInterval
	if interval <= 0 || g.rotating == nil {
		return nil
	}
	s := sealedSuccessor{Old: g.rotating.ID, Answer: resp, Resources: g.audience}
	for _, t := range tokens {
		switch t.Kind {
		case KindAccess:
			s.AccessID, s.AccessExpiresAt = t.ID, t.ExpiresAt.Unix()
		case KindRefresh:
			s.RefreshID = t.ID
		}
	}
	raw, err := json.Marshal(s)
	if err != nil {
		return nil // a TokenResponse always marshals; without a copy, reuse is strict
	}
	return &Successor{Sealed: e.seal.seal(string(raw)), Until: used.Add(time.Duration(interval) * time.Second)}
}

// reuseRotation is the answer to give again when the refresh token t,
// already rotated, is presented again by its client c within the
// client's reuse interval; nil when there is none to give, and reuse
// detection applies (RFC 9700 §4.14.2). The answer is given again only
// while what it carries is untouched: once its refresh token was used
// (so the answer did reach the client), revoked or expired, or its access
// token revoked, the old token's reuse is reuse. So is a request whose
// resources (aud, what narrowResources made of its resource parameters;
// ok false when they were refused) differ from the answer's: that is no
// retry of a lost answer.
func (e *Engine) reuseRotation(ctx context.Context, c *Client, t *Token, now time.Time, aud []string, ok bool) (*TokenResponse, error) {
	if !ok {
		return nil, nil
	}
	interval := time.Duration(c.RefreshTokenReuseInterval) * time.Second
	if interval <= 0 || t.Successor == nil || t.Revoked ||
		!now.Before(t.Successor.Until) || !now.Before(t.UsedAt.Add(interval)) {
		return nil, nil
	}
	plain, err := e.seal.open(t.Successor.Sealed)
	if err != nil {
		e.log.Warn("the sealed answer of a rotated refresh token does not open", "client_id", c.ID, "err", err)
		return nil, nil
	}
	var s sealedSuccessor
	if err := json.Unmarshal([]byte(plain), &s); err != nil || s.Old != t.ID || s.Answer == nil || !sameSet(s.Resources, aud) {
		return nil, nil
	}
	for _, id := range []string{s.AccessID, s.RefreshID} {
		if id == "" {
			continue
		}
		next, err := e.st.Tokens.TokenByID(ctx, id)
		if errors.Is(err, ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, storeFailure(err)
		}
		if next.Revoked || next.Kind == KindRefresh && !next.Active(now) {
			return nil, nil
		}
	}
	if t.Username != "" {
		if _, err := e.activeUser(ctx, t.Username, CodeInvalidGrant); err != nil {
			return nil, err
		}
	}
	again := *s.Answer
	again.ExpiresIn = max(0, s.AccessExpiresAt-now.Unix())
	e.log.Info("rotated refresh token presented again within its reuse interval; same answer given",
		"client_id", c.ID, "family", t.FamilyID)
	return &again, nil
}

// reuseRacedRotation is the answer of the rotation that won a race with
// the one of g, when it may be given again; nil otherwise.
func (e *Engine) reuseRacedRotation(ctx context.Context, g *grant) (*TokenResponse, error) {
	if g.client.RefreshTokenReuseInterval <= 0 {
		return nil, nil
	}
	t, err := e.st.Tokens.TokenByID(ctx, g.rotating.ID)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, storeFailure(err)
	}
	if t.UsedAt.IsZero() {
		return nil, nil
	}
	return e.reuseRotation(ctx, g.client, t, e.now(), g.audience, true)
}

// sameSet reports whether a and b hold the same strings.
func sameSet(a, b []string) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	for _, x := range b {
		if !slices.Contains(a, x) {
			return false
		}
	}
	return true
}
