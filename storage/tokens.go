package storage

import (
	"context"
	"errors"
	"time"

	"gorm.io/gorm"

	"github.com/keyhook/keyhook/engine"
)

// CreateTokens stores the tokens of one issuance in one transaction.
func (s *Store) CreateTokens(ctx context.Context, tokens ...*engine.Token) error {
	rows, err := tokenRows(tokens)
	if err != nil || len(rows) == 0 {
		return err
	}
	return translate(s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		return tx.Create(rows).Error
	}))
}

func tokenRows(tokens []*engine.Token) ([]*tokenRow, error) {
	rows := make([]*tokenRow, 0, len(tokens))
	for _, t := range tokens {
		r, err := tokenToRow(t)
		if err != nil {
			return nil, err
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// TokenByID returns the token with id or engine.ErrNotFound.
func (s *Store) TokenByID(ctx context.Context, id string) (*engine.Token, error) {
	var r tokenRow
	if err := s.db.WithContext(ctx).Where("id = ?", id).Take(&r).Error; err != nil {
		return nil, translate(err)
	}
	return r.toEngine()
}

// errNotRotated rolls back a rotation that lost its race.
var errNotRotated = errors.New("refresh token not active")

// RotateRefreshToken marks oldID used and stores next in one transaction,
// only if oldID is an active refresh token at now. The conditional UPDATE
// is the arbiter: on PostgreSQL a concurrent rotation waits for the row lock
// and then re-checks used_at, on SQLite BEGIN IMMEDIATE serializes the
// transactions, so exactly one caller changes the row and reports true.
func (s *Store) RotateRefreshToken(ctx context.Context, oldID string, now time.Time, successor *engine.Successor, next ...*engine.Token) (bool, error) {
	rows, err := tokenRows(next)
	if err != nil {
		return false, err
	}
	n := nowNanos(now)
	mark := map[string]any{"used_at": n}
	if successor != nil {
		mark["successor"], mark["successor_until"] = successor.Sealed, toNanos(successor.Until)
	}
	err = retryTransient(ctx, func() error {
		return s.rotate(ctx, oldID, n, mark, rows)
	})
	if errors.Is(err, errNotRotated) {
		return false, nil
	}
	if err != nil {
		return false, translate(err)
	}
	return true, nil
}

// rotate is one attempt of RotateRefreshToken.
func (s *Store) rotate(ctx context.Context, oldID string, n int64, mark map[string]any, rows []*tokenRow) error {
	return s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		res := tx.Model(&tokenRow{}).
			Where("id = ? AND kind = ? AND used_at = 0 AND revoked = ? AND expires_at > ?",
				oldID, string(engine.KindRefresh), false, n).
			Updates(mark)
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected != 1 {
			return errNotRotated
		}
		if len(rows) == 0 {
			return nil
		}
		return tx.Create(rows).Error
	})
}

// RevokeToken revokes the token id; revoking an unknown token is no error
// (RFC 7009 §2.2 answers the same either way).
func (s *Store) RevokeToken(ctx context.Context, id string) error {
	return s.db.WithContext(ctx).Model(&tokenRow{}).Where("id = ?", id).Update("revoked", true).Error
}

// RevokeFamily revokes every token of the grant family familyID.
func (s *Store) RevokeFamily(ctx context.Context, familyID string) error {
	if familyID == "" {
		// Tokens without a family are not one family.
		return nil
	}
	return retryTransient(ctx, func() error {
		return s.db.WithContext(ctx).Model(&tokenRow{}).Where("family_id = ?", familyID).Update("revoked", true).Error
	})
}

// PurgeTokens deletes tokens that expired before t and reports how many.
// It also forgets the sealed successor answers whose reuse interval ended
// before t, so that they are kept no longer than they may be answered.
func (s *Store) PurgeTokens(ctx context.Context, before time.Time) (int64, error) {
	b := toNanos(before)
	res := s.db.WithContext(ctx).Where("expires_at < ?", b).Delete(&tokenRow{})
	if res.Error != nil {
		return 0, res.Error
	}
	err := s.db.WithContext(ctx).Model(&tokenRow{}).Where("successor_until <> 0 AND successor_until < ?", b).
		Updates(map[string]any{"successor": "", "successor_until": 0}).Error
	return res.RowsAffected, err
}

// LatestExpiry is the latest expiry of the tokens signed with key kid, the
// zero time when there are none; a key may be deleted once it has passed.
func (s *Store) LatestExpiry(ctx context.Context, kid string) (time.Time, error) {
	var n int64
	err := s.db.WithContext(ctx).Model(&tokenRow{}).Where("key_id = ?", kid).
		Select("COALESCE(MAX(expires_at), 0)").Scan(&n).Error
	if err != nil {
		return time.Time{}, err
	}
	return fromNanos(n), nil
}
