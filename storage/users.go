package storage

import (
	"context"
	"time"

	"github.com/keyhook/keyhook/engine"
)

// UserByName returns the user or engine.ErrNotFound.
func (s *Store) UserByName(ctx context.Context, username string) (*engine.User, error) {
	var r userRow
	if err := s.db.WithContext(ctx).Where("username = ?", username).Take(&r).Error; err != nil {
		return nil, translate(err)
	}
	return r.toEngine()
}

// Users returns every user, ordered by username.
func (s *Store) Users(ctx context.Context) ([]*engine.User, error) {
	var rows []userRow
	if err := s.db.WithContext(ctx).Order("username").Find(&rows).Error; err != nil {
		return nil, err
	}
	return convertAll(rows, (*userRow).toEngine)
}

// CreateUser stores u; engine.ErrConflict when the username is taken.
func (s *Store) CreateUser(ctx context.Context, u *engine.User) error {
	r, err := userToRow(u)
	if err != nil {
		return err
	}
	return translate(s.db.WithContext(ctx).Create(r).Error)
}

// UpdateUser replaces every field of the user u.Username;
// engine.ErrNotFound when there is none.
func (s *Store) UpdateUser(ctx context.Context, u *engine.User) error {
	r, err := userToRow(u)
	if err != nil {
		return err
	}
	res := s.db.WithContext(ctx).Model(&userRow{}).Where("username = ?", u.Username).
		Select("*").Omit("username").Updates(r)
	return changedOne(res)
}

// DeleteUser deletes the user; engine.ErrNotFound when there is none.
// The user's tokens stay until they expire or are revoked.
func (s *Store) DeleteUser(ctx context.Context, username string) error {
	return changedOne(s.db.WithContext(ctx).Where("username = ?", username).Delete(&userRow{}))
}

// CreateCode stores the authorization code c; engine.ErrConflict when its
// id exists.
func (s *Store) CreateCode(ctx context.Context, c *engine.AuthCode) error {
	return translate(s.db.WithContext(ctx).Create(authCodeToRow(c)).Error)
}

// UseCode marks the code id used at now if it was unused and returns it
// with true; an already used code comes back with false (the caller then
// revokes what was issued from it, RFC 6749 §4.1.2); engine.ErrNotFound
// when there is no such code. The conditional UPDATE makes one of
// concurrent callers the winner.
func (s *Store) UseCode(ctx context.Context, id string, now time.Time) (*engine.AuthCode, bool, error) {
	db := s.db.WithContext(ctx)
	res := db.Model(&authCodeRow{}).Where("id = ? AND used_at = 0", id).Update("used_at", nowNanos(now))
	if res.Error != nil {
		return nil, false, res.Error
	}
	var r authCodeRow
	if err := db.Where("id = ?", id).Take(&r).Error; err != nil {
		return nil, false, translate(err)
	}
	return r.toEngine(), res.RowsAffected == 1, nil
}

// PurgeCodes deletes codes that expired before t and reports how many.
func (s *Store) PurgeCodes(ctx context.Context, before time.Time) (int64, error) {
	res := s.db.WithContext(ctx).Where("expires_at < ?", toNanos(before)).Delete(&authCodeRow{})
	return res.RowsAffected, res.Error
}
