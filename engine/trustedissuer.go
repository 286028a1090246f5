package engine

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"

	jose "github.com/go-jose/go-jose/v4"
)

// Trusted issuers (docs/jwt-bearer.md): the other parties whose signed
// JWTs keyhook accepts as proof of a subject, first as authorization
// grants (RFC 7523 §2.1). Each names the exact iss of its JWTs, its
// public keys (inline or at a jwks_uri fetched as clients' are,
// engine/jwksuri.go), the subjects it may assert, the scopes its
// assertions may yield and the clients that may present them.
//
// Only keyhook:admin may write them: a trusted issuer whose keys one
// holds mints tokens for any subject it allows, so a delegated admin
// that could write one could reach any user (engine/admin_delegation.go).

// TrustedIssuer is an issuer of JWTs keyhook trusts, as stored.
type TrustedIssuer struct {
	// Name identifies it in the admin API.
	Name string
	// Issuer is the exact iss of its JWTs (RFC 7519 §4.1.1).
	Issuer string
	// JWKS is its public JWK Set as JSON, or "" when JWKSURI is used.
	JWKS    string
	JWKSURI string
	// AllowedSubjects are the sub values its JWTs may carry; "*" is any.
	// Empty allows none.
	AllowedSubjects []string
	// AllowedScopes are the scopes its JWTs may yield. Empty yields none.
	AllowedScopes []string
	// AllowedClients are the client ids that may present its JWTs.
	// Empty allows none.
	AllowedClients []string
	// MaxLifetime bounds exp - iat (exp - now without iat), in seconds.
	MaxLifetime int64
	Enabled     bool
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// AllowsSubject reports whether sub may be asserted by t.
func (t *TrustedIssuer) AllowsSubject(sub string) bool {
	return sub != "" && (slices.Contains(t.AllowedSubjects, "*") || slices.Contains(t.AllowedSubjects, sub))
}

// AllowsClient reports whether the client id may present t's JWTs.
func (t *TrustedIssuer) AllowsClient(id string) bool { return slices.Contains(t.AllowedClients, id) }

// TrustedIssuerStore keeps trusted issuers.
type TrustedIssuerStore interface {
	TrustedIssuers(ctx context.Context) ([]*TrustedIssuer, error)
	// TrustedIssuerByName returns ErrNotFound when there is none.
	TrustedIssuerByName(ctx context.Context, name string) (*TrustedIssuer, error)
	// TrustedIssuerByIssuer finds the one whose Issuer is iss; ErrNotFound
	// when there is none.
	TrustedIssuerByIssuer(ctx context.Context, iss string) (*TrustedIssuer, error)
	// CreateTrustedIssuer returns ErrConflict when the name or the issuer
	// is taken.
	CreateTrustedIssuer(ctx context.Context, t *TrustedIssuer) error
	// UpdateTrustedIssuer returns ErrNotFound when the name does not
	// exist, ErrConflict when the issuer is another one's.
	UpdateTrustedIssuer(ctx context.Context, t *TrustedIssuer) error
	DeleteTrustedIssuer(ctx context.Context, name string) error
}

// Bounds of a trusted issuer's fields (docs/admin-api.md).
const (
	// DefaultMaxAssertionLifetime is max_assertion_lifetime when absent:
	// as for client assertions, a short-lived JWT (RFC 7523 §3).
	DefaultMaxAssertionLifetime = int64(maxAssertionLifetime / time.Second)
	// maxMaxAssertionLifetime caps max_assertion_lifetime: a day.
	maxMaxAssertionLifetime = 86400
	maxIssuerLength         = 1024
	maxSubjectLength        = 1024
	maxIssuerListLength     = 1000
)

var trustedIssuerNamePattern = regexp.MustCompile(`^[A-Za-z0-9._~-]{1,128}$`)

// TrustedIssuerDoc is a trusted issuer as the admin API reads and writes it.
type TrustedIssuerDoc struct {
	Name                 string          `json:"name"`
	Issuer               string          `json:"issuer"`
	JWKS                 json.RawMessage `json:"jwks,omitempty"`
	JWKSURI              string          `json:"jwks_uri,omitempty"`
	AllowedSubjects      []string        `json:"allowed_subjects"`
	AllowedScopes        []string        `json:"allowed_scopes"`
	AllowedClients       []string        `json:"allowed_clients"`
	MaxAssertionLifetime int64           `json:"max_assertion_lifetime"`
	// Enabled defaults to true when absent.
	Enabled *bool `json:"enabled,omitempty"`
}

// TrustedIssuerDocument is the admin view of t.
func TrustedIssuerDocument(t *TrustedIssuer) *TrustedIssuerDoc {
	enabled := t.Enabled
	d := &TrustedIssuerDoc{
		Name: t.Name, Issuer: t.Issuer, JWKSURI: t.JWKSURI, AllowedSubjects: nonNil(t.AllowedSubjects),
		AllowedScopes: nonNil(t.AllowedScopes), AllowedClients: nonNil(t.AllowedClients),
		MaxAssertionLifetime: t.MaxLifetime, Enabled: &enabled,
	}
	if t.JWKS != "" {
		d.JWKS = json.RawMessage(t.JWKS)
	}
	return d
}

// onlyAdmin refuses a write by a delegated admin (see the top of this file).
func onlyAdmin(ctx context.Context) error {
	if delegated(ctx) {
		return Errorf(CodeInsufficientScope, "only %s may write trusted issuers", AdminScope)
	}
	return nil
}

func (e *Engine) trustedIssuerStore() (TrustedIssuerStore, error) {
	if e.st.TrustedIssuers == nil {
		return nil, Errorf(CodeServerError, "trusted issuers are not configured")
	}
	return e.st.TrustedIssuers, nil
}

// trustedIssuerFromDoc validates doc (400 naming the field) and builds
// the trusted issuer it describes.
func (e *Engine) trustedIssuerFromDoc(doc *TrustedIssuerDoc) (*TrustedIssuer, error) {
	t := &TrustedIssuer{
		Name: doc.Name, Issuer: doc.Issuer, JWKSURI: doc.JWKSURI, AllowedSubjects: doc.AllowedSubjects,
		AllowedClients: doc.AllowedClients, MaxLifetime: doc.MaxAssertionLifetime, Enabled: doc.Enabled == nil || *doc.Enabled,
	}
	if !trustedIssuerNamePattern.MatchString(t.Name) {
		return nil, fieldError("name", "must be 1 to 128 of A-Z a-z 0-9 . _ ~ -")
	}
	if t.Issuer == "" || len(t.Issuer) > maxIssuerLength || strings.IndexFunc(t.Issuer, notPrintable) >= 0 {
		return nil, fieldError("issuer", "must be the exact iss of the issuer's JWTs, 1 to %d printable characters", maxIssuerLength)
	}
	if t.Issuer == e.cfg.Issuer {
		return nil, fieldError("issuer", "is this server's own issuer")
	}
	hasJWKS := len(doc.JWKS) > 0 && string(doc.JWKS) != "null"
	if hasJWKS == (t.JWKSURI != "") {
		return nil, fieldError("jwks", "give either jwks or jwks_uri")
	}
	if hasJWKS {
		jwks, err := publicKeySet(doc.JWKS, func(k *jose.JSONWebKey) error {
			if _, sym := k.Key.([]byte); sym {
				return fieldError("jwks", "key %q is a shared secret; a trusted issuer needs public keys", k.KeyID)
			}
			if k.Algorithm != "" && !slices.Contains(privateKeyAlgs, k.Algorithm) {
				return fieldError("jwks", "key %q has alg %s; use one of %s", k.KeyID, k.Algorithm, strings.Join(privateKeyAlgs, ", "))
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		t.JWKS = jwks
	}
	if t.JWKSURI != "" {
		if err := jwksURIAllowed(t.JWKSURI, e.cfg.JWKSURI.AllowPrivate); err != nil {
			return nil, fieldError("jwks_uri", "%v", err)
		}
	}
	if len(t.AllowedSubjects) > maxIssuerListLength {
		return nil, fieldError("allowed_subjects", "at most %d", maxIssuerListLength)
	}
	for _, s := range t.AllowedSubjects {
		if s == "" || len(s) > maxSubjectLength {
			return nil, fieldError("allowed_subjects", "each must be a subject of 1 to %d characters, or *", maxSubjectLength)
		}
	}
	if len(doc.AllowedScopes) > maxIssuerListLength {
		return nil, fieldError("allowed_scopes", "at most %d", maxIssuerListLength)
	}
	for _, s := range doc.AllowedScopes {
		if !validScopeToken(s) {
			return nil, fieldError("allowed_scopes", "%q is not a valid scope", s)
		}
		if strings.HasPrefix(s, "keyhook:") {
			// The admin API's scopes are never granted on a foreign
			// issuer's word.
			return nil, fieldError("allowed_scopes", "%s: keyhook:* scopes cannot be granted from a trusted issuer's JWT", s)
		}
		if !slices.Contains(t.AllowedScopes, s) {
			t.AllowedScopes = append(t.AllowedScopes, s)
		}
	}
	if len(t.AllowedClients) > maxIssuerListLength {
		return nil, fieldError("allowed_clients", "at most %d", maxIssuerListLength)
	}
	for _, id := range t.AllowedClients {
		if !clientIDPattern.MatchString(id) {
			return nil, fieldError("allowed_clients", "%q is not a client_id", id)
		}
	}
	switch {
	case t.MaxLifetime == 0:
		t.MaxLifetime = DefaultMaxAssertionLifetime
	case t.MaxLifetime < 1 || t.MaxLifetime > maxMaxAssertionLifetime:
		return nil, fieldError("max_assertion_lifetime", "must be whole seconds from 1 to %d", maxMaxAssertionLifetime)
	}
	return t, nil
}

func notPrintable(r rune) bool { return !unicode.IsPrint(r) || unicode.IsSpace(r) }

// trustedIssuerConflict explains a conflict on create or update: the
// name, or else the issuer, is another trusted issuer's.
func (e *Engine) trustedIssuerConflict(ctx context.Context, st TrustedIssuerStore, t *TrustedIssuer, creating bool) error {
	if creating {
		if _, err := st.TrustedIssuerByName(ctx, t.Name); err == nil {
			return Errorf(CodeConflict, "name: trusted issuer %q exists", t.Name)
		}
	}
	return Errorf(CodeConflict, "issuer: another trusted issuer has iss %q", t.Issuer)
}

// CreateTrustedIssuer stores a new trusted issuer (keyhook:admin only).
func (e *Engine) CreateTrustedIssuer(ctx context.Context, doc *TrustedIssuerDoc) (*TrustedIssuerDoc, error) {
	if err := onlyAdmin(ctx); err != nil {
		return nil, err
	}
	st, err := e.trustedIssuerStore()
	if err != nil {
		return nil, err
	}
	t, err := e.trustedIssuerFromDoc(doc)
	if err != nil {
		return nil, err
	}
	t.CreatedAt = e.now()
	t.UpdatedAt = t.CreatedAt
	if err := st.CreateTrustedIssuer(ctx, t); err != nil {
		if errors.Is(err, ErrConflict) {
			return nil, e.trustedIssuerConflict(ctx, st, t, true)
		}
		return nil, storeFailure(err)
	}
	return TrustedIssuerDocument(t), nil
}

// ReplaceTrustedIssuer replaces the trusted issuer called name (PUT).
func (e *Engine) ReplaceTrustedIssuer(ctx context.Context, name string, doc *TrustedIssuerDoc) (*TrustedIssuerDoc, error) {
	if err := onlyAdmin(ctx); err != nil {
		return nil, err
	}
	st, err := e.trustedIssuerStore()
	if err != nil {
		return nil, err
	}
	if doc.Name != "" && doc.Name != name {
		return nil, fieldError("name", "cannot be changed")
	}
	doc.Name = name
	old, err := st.TrustedIssuerByName(ctx, name)
	if err != nil {
		return nil, adminErr(err, "trusted issuer", name)
	}
	t, err := e.trustedIssuerFromDoc(doc)
	if err != nil {
		return nil, err
	}
	t.CreatedAt, t.UpdatedAt = old.CreatedAt, e.now()
	if err := st.UpdateTrustedIssuer(ctx, t); err != nil {
		if errors.Is(err, ErrConflict) {
			return nil, e.trustedIssuerConflict(ctx, st, t, false)
		}
		return nil, adminErr(err, "trusted issuer", name)
	}
	return TrustedIssuerDocument(t), nil
}

// TrustedIssuerDoc reads one trusted issuer.
func (e *Engine) TrustedIssuerDoc(ctx context.Context, name string) (*TrustedIssuerDoc, error) {
	st, err := e.trustedIssuerStore()
	if err != nil {
		return nil, err
	}
	t, err := st.TrustedIssuerByName(ctx, name)
	if err != nil {
		return nil, adminErr(err, "trusted issuer", name)
	}
	return TrustedIssuerDocument(t), nil
}

// TrustedIssuerDocs lists the trusted issuers by name.
func (e *Engine) TrustedIssuerDocs(ctx context.Context) ([]*TrustedIssuerDoc, error) {
	st, err := e.trustedIssuerStore()
	if err != nil {
		return nil, err
	}
	all, err := st.TrustedIssuers(ctx)
	if err != nil {
		return nil, storeFailure(err)
	}
	out := make([]*TrustedIssuerDoc, 0, len(all))
	for _, t := range all {
		out = append(out, TrustedIssuerDocument(t))
	}
	return out, nil
}

// DeleteTrustedIssuer deletes one (keyhook:admin only). Tokens issued on
// its JWTs stay valid until they expire or are revoked.
func (e *Engine) DeleteTrustedIssuer(ctx context.Context, name string) error {
	if err := onlyAdmin(ctx); err != nil {
		return err
	}
	st, err := e.trustedIssuerStore()
	if err != nil {
		return err
	}
	if err := st.DeleteTrustedIssuer(ctx, name); err != nil {
		return adminErr(err, "trusted issuer", name)
	}
	return nil
}
