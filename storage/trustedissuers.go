package storage

import (
	"context"
	"fmt"

	"github.com/keyhook/keyhook/engine"
)

// Trusted issuers of JWT bearer grants (RFC 7523, docs/jwt-bearer.md).

var _ engine.TrustedIssuerStore = (*Store)(nil)

type trustedIssuerRow struct {
	Name            string `gorm:"column:name;primaryKey"`
	Issuer          string `gorm:"column:issuer"`
	JWKS            string `gorm:"column:jwks"`
	JWKSURI         string `gorm:"column:jwks_uri"`
	AllowedSubjects string `gorm:"column:allowed_subjects"`
	AllowedScopes   string `gorm:"column:allowed_scopes"`
	AllowedClients  string `gorm:"column:allowed_clients"`
	MaxLifetime     int64  `gorm:"column:max_lifetime"`
	Enabled         bool   `gorm:"column:enabled"`
	CreatedAt       int64  `gorm:"column:created_at;autoCreateTime:false"`
	UpdatedAt       int64  `gorm:"column:updated_at;autoUpdateTime:false"`
}

func (trustedIssuerRow) TableName() string { return "trusted_issuers" }

func trustedIssuerToRow(t *engine.TrustedIssuer) *trustedIssuerRow {
	return &trustedIssuerRow{
		Name: t.Name, Issuer: t.Issuer, JWKS: t.JWKS, JWKSURI: t.JWKSURI,
		AllowedSubjects: listJSON(t.AllowedSubjects), AllowedScopes: listJSON(t.AllowedScopes),
		AllowedClients: listJSON(t.AllowedClients), MaxLifetime: t.MaxLifetime, Enabled: t.Enabled,
		CreatedAt: toNanos(t.CreatedAt), UpdatedAt: toNanos(t.UpdatedAt),
	}
}

func (r *trustedIssuerRow) toEngine() (*engine.TrustedIssuer, error) {
	t := &engine.TrustedIssuer{
		Name: r.Name, Issuer: r.Issuer, JWKS: r.JWKS, JWKSURI: r.JWKSURI, MaxLifetime: r.MaxLifetime,
		Enabled: r.Enabled, CreatedAt: fromNanos(r.CreatedAt), UpdatedAt: fromNanos(r.UpdatedAt),
	}
	for _, l := range []struct {
		s   string
		dst *[]string
	}{{r.AllowedSubjects, &t.AllowedSubjects}, {r.AllowedScopes, &t.AllowedScopes}, {r.AllowedClients, &t.AllowedClients}} {
		if err := decodeJSON(l.s, l.dst); err != nil {
			return nil, fmt.Errorf("storage: trusted issuer %s: %w", r.Name, err)
		}
	}
	return t, nil
}

// TrustedIssuers returns every trusted issuer, ordered by name.
func (s *Store) TrustedIssuers(ctx context.Context) ([]*engine.TrustedIssuer, error) {
	var rows []trustedIssuerRow
	if err := s.conn(ctx).Order("name").Find(&rows).Error; err != nil {
		return nil, err
	}
	return convertAll(rows, (*trustedIssuerRow).toEngine)
}

// TrustedIssuerByName returns the trusted issuer called name or
// engine.ErrNotFound.
func (s *Store) TrustedIssuerByName(ctx context.Context, name string) (*engine.TrustedIssuer, error) {
	var r trustedIssuerRow
	if err := s.conn(ctx).Where("name = ?", name).Take(&r).Error; err != nil {
		return nil, translate(err)
	}
	return r.toEngine()
}

// TrustedIssuerByIssuer returns the trusted issuer whose iss is iss or
// engine.ErrNotFound.
func (s *Store) TrustedIssuerByIssuer(ctx context.Context, iss string) (*engine.TrustedIssuer, error) {
	var r trustedIssuerRow
	if err := s.conn(ctx).Where("issuer = ?", iss).Take(&r).Error; err != nil {
		return nil, translate(err)
	}
	return r.toEngine()
}

// CreateTrustedIssuer stores t; engine.ErrConflict when its name or
// issuer is taken.
func (s *Store) CreateTrustedIssuer(ctx context.Context, t *engine.TrustedIssuer) error {
	return s.create(ctx, trustedIssuerToRow(t))
}

// UpdateTrustedIssuer replaces every field of the trusted issuer t.Name;
// engine.ErrNotFound when there is none, engine.ErrConflict when its
// issuer is another one's.
func (s *Store) UpdateTrustedIssuer(ctx context.Context, t *engine.TrustedIssuer) error {
	res := s.conn(ctx).Model(&trustedIssuerRow{}).Where("name = ?", t.Name).
		Select("*").Omit("name").Updates(trustedIssuerToRow(t))
	return changedOne(res)
}

// DeleteTrustedIssuer deletes the trusted issuer called name;
// engine.ErrNotFound when there is none.
func (s *Store) DeleteTrustedIssuer(ctx context.Context, name string) error {
	return changedOne(s.conn(ctx).Where("name = ?", name).Delete(&trustedIssuerRow{}))
}
