package storage

import (
	"context"
	"time"

	"github.com/keyhook/keyhook/engine"
)

// CreateRegistrationToken stores the initial access token t (RFC 7591
// §3), by the hash of its value.
func (s *Store) CreateRegistrationToken(ctx context.Context, t *engine.RegistrationToken) error {
	r, err := registrationTokenToRow(t)
	if err != nil {
		return err
	}
	return s.create(ctx, r)
}

// RegistrationTokens returns every initial access token, newest first.
func (s *Store) RegistrationTokens(ctx context.Context) ([]*engine.RegistrationToken, error) {
	var rows []registrationTokenRow
	if err := s.conn(ctx).Order("created_at DESC, id").Find(&rows).Error; err != nil {
		return nil, err
	}
	return convertAll(rows, (*registrationTokenRow).toEngine)
}

// RegistrationToken returns the initial access token id or
// engine.ErrNotFound.
func (s *Store) RegistrationToken(ctx context.Context, id string) (*engine.RegistrationToken, error) {
	var r registrationTokenRow
	if err := s.conn(ctx).Where("id = ?", id).Take(&r).Error; err != nil {
		return nil, translate(err)
	}
	return r.toEngine()
}

// RegistrationTokenByHash returns the initial access token whose value
// hashes to hash, or engine.ErrNotFound.
func (s *Store) RegistrationTokenByHash(ctx context.Context, hash string) (*engine.RegistrationToken, error) {
	var r registrationTokenRow
	if err := s.conn(ctx).Where("token_hash = ?", hash).Take(&r).Error; err != nil {
		return nil, translate(err)
	}
	return r.toEngine()
}

// UseRegistrationToken counts a use of the token id if it is unexpired
// at now and has uses left. The conditional UPDATE is the arbiter: of
// concurrent callers for the last use, exactly one changes the row.
func (s *Store) UseRegistrationToken(ctx context.Context, id string, now time.Time) (bool, error) {
	res := s.conn(ctx).Exec(`UPDATE registration_tokens SET uses = uses + 1
		WHERE id = ? AND expires_at > ? AND uses < max_uses`, id, nowNanos(now))
	return res.RowsAffected == 1, translate(res.Error)
}

// DeleteRegistrationToken deletes the token; engine.ErrNotFound when
// there is none. The clients registered with it stay.
func (s *Store) DeleteRegistrationToken(ctx context.Context, id string) error {
	return changedOne(s.conn(ctx).Where("id = ?", id).Delete(&registrationTokenRow{}))
}

// PurgeRegistrationTokens deletes the tokens that expired before t.
func (s *Store) PurgeRegistrationTokens(ctx context.Context, before time.Time) (int64, error) {
	res := s.conn(ctx).Where("expires_at < ?", toNanos(before)).Delete(&registrationTokenRow{})
	return res.RowsAffected, res.Error
}
