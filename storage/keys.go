package storage

import (
	"context"
	"encoding/base64"
	"fmt"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/keyhook/keyhook/engine"
)

// SigningKeys returns every signing key, oldest first.
func (s *Store) SigningKeys(ctx context.Context) ([]*engine.SigningKey, error) {
	var rows []signingKeyRow
	if err := s.conn(ctx).Order("created_at, id").Find(&rows).Error; err != nil {
		return nil, err
	}
	out := make([]*engine.SigningKey, 0, len(rows))
	for i := range rows {
		out = append(out, rows[i].toEngine())
	}
	return out, nil
}

// AddSigningKey retires every current key at k.CreatedAt and stores k, in
// one transaction, so that there is always exactly one current key.
// engine.ErrConflict when k.ID exists.
func (s *Store) AddSigningKey(ctx context.Context, k *engine.SigningKey) error {
	r := signingKeyToRow(k)
	retired := r.CreatedAt
	if retired == 0 {
		retired = time.Now().UnixNano()
	}
	return translate(s.conn(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Model(&signingKeyRow{}).Where("retired_at = 0").
			Update("retired_at", retired).Error; err != nil {
			return err
		}
		return tx.Create(r).Error
	}))
}

// ResealSigningKey replaces key kid's stored private JWK with next when
// it is still old, so that instances resealing at once write it once.
func (s *Store) ResealSigningKey(ctx context.Context, kid, old, next string) error {
	return s.conn(ctx).Model(&signingKeyRow{}).Where("id = ? AND private_jwk = ?", kid, old).
		Update("private_jwk", next).Error
}

// DeleteSigningKey deletes the key kid; deleting an unknown key is no error.
func (s *Store) DeleteSigningKey(ctx context.Context, kid string) error {
	return s.conn(ctx).Where("id = ?", kid).Delete(&signingKeyRow{}).Error
}

// Properties returns every stored property as name → JSON value.
func (s *Store) Properties(ctx context.Context) (map[string]string, error) {
	var rows []propertyRow
	if err := s.conn(ctx).Find(&rows).Error; err != nil {
		return nil, err
	}
	out := make(map[string]string, len(rows))
	for _, r := range rows {
		out[r.Name] = r.Value
	}
	return out, nil
}

// SetProperties inserts or replaces each of values, in one transaction.
func (s *Store) SetProperties(ctx context.Context, values map[string]string) error {
	if len(values) == 0 {
		return nil
	}
	rows := make([]propertyRow, 0, len(values))
	for name, v := range values {
		rows = append(rows, propertyRow{Name: name, Value: v})
	}
	return s.conn(ctx).Transaction(func(tx *gorm.DB) error {
		return tx.Clauses(clause.OnConflict{
			Columns:   []clause.Column{{Name: "name"}},
			DoUpdates: clause.AssignmentColumns([]string{"value"}),
		}).Create(&rows).Error
	})
}

// UseJTI records the assertion id jti of clientID until expires;
// engine.ErrConflict when it was recorded already (a replay).
func (s *Store) UseJTI(ctx context.Context, clientID, jti string, expires time.Time) error {
	r := usedJTIRow{ClientID: clientID, JTI: jti, ExpiresAt: toNanos(expires)}
	return translate(s.conn(ctx).Create(&r).Error)
}

// PurgeJTIs forgets assertion ids that expired before t; an expired
// assertion is refused anyway, so it cannot be replayed.
func (s *Store) PurgeJTIs(ctx context.Context, before time.Time) (int64, error) {
	res := s.conn(ctx).Where("expires_at < ?", toNanos(before)).Delete(&usedJTIRow{})
	return res.RowsAffected, res.Error
}

// Secret returns the secret called name. The first caller's fresh wins:
// the insert does nothing when the name exists, and every caller returns
// what is stored, so concurrent instances agree on one value.
func (s *Store) Secret(ctx context.Context, name string, fresh []byte) ([]byte, error) {
	db := s.conn(ctx)
	r := secretRow{Name: name, Value: base64.StdEncoding.EncodeToString(fresh), CreatedAt: time.Now().UnixNano()}
	if err := db.Clauses(clause.OnConflict{DoNothing: true}).Create(&r).Error; err != nil {
		return nil, err
	}
	var got secretRow
	if err := db.Where("name = ?", name).Take(&got).Error; err != nil {
		return nil, translate(err)
	}
	v, err := base64.StdEncoding.DecodeString(got.Value)
	if err != nil {
		return nil, fmt.Errorf("storage: secret %s: %w", name, err)
	}
	return v, nil
}

// ResealSecret replaces the stored value of secret name with next when it
// is still old (concurrent instances write it once).
func (s *Store) ResealSecret(ctx context.Context, name string, old, next []byte) error {
	return s.conn(ctx).Model(&secretRow{}).
		Where("name = ? AND value = ?", name, base64.StdEncoding.EncodeToString(old)).
		Update("value", base64.StdEncoding.EncodeToString(next)).Error
}
