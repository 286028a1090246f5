package storage

import (
	"context"
	"errors"
	"time"
	"unicode/utf8"

	"gorm.io/gorm"

	"github.com/keyhook/keyhook/engine"
)

// UserByName returns the user or engine.ErrNotFound.
func (s *Store) UserByName(ctx context.Context, username string) (*engine.User, error) {
	if !utf8.ValidString(username) {
		// No stored username is: PostgreSQL's text is UTF-8, and would
		// refuse the query rather than find nothing (a 503 for what a
		// client typed).
		return nil, engine.ErrNotFound
	}
	var r userRow
	if err := s.conn(ctx).Where("username = ?", username).Take(&r).Error; err != nil {
		return nil, translate(err)
	}
	return r.toEngine()
}

// Users returns every user, ordered by username.
func (s *Store) Users(ctx context.Context) ([]*engine.User, error) {
	var rows []userRow
	if err := s.conn(ctx).Order("username").Find(&rows).Error; err != nil {
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
	return s.create(ctx, r)
}

// UpdateUser replaces every field of the user u.Username;
// engine.ErrNotFound when there is none.
func (s *Store) UpdateUser(ctx context.Context, u *engine.User) error {
	r, err := userToRow(u)
	if err != nil {
		return err
	}
	res := s.conn(ctx).Model(&userRow{}).Where("username = ?", u.Username).
		Select("*").Omit("username").Updates(r)
	return changedOne(res)
}

// DeleteUser deletes the user; engine.ErrNotFound when there is none.
// The user's tokens stay until they expire or are revoked.
func (s *Store) DeleteUser(ctx context.Context, username string) error {
	return changedOne(s.conn(ctx).Where("username = ?", username).Delete(&userRow{}))
}

// CreateCode stores the authorization code c; engine.ErrConflict when its
// id exists.
func (s *Store) CreateCode(ctx context.Context, c *engine.AuthCode) error {
	return translate(s.conn(ctx).Create(authCodeToRow(c)).Error)
}

// CodeByID returns the authorization code id, used or not, or
// engine.ErrNotFound.
func (s *Store) CodeByID(ctx context.Context, id string) (*engine.AuthCode, error) {
	var r authCodeRow
	if err := s.conn(ctx).Where("id = ?", id).Take(&r).Error; err != nil {
		return nil, translate(err)
	}
	return r.toEngine(), nil
}

// errCodeUsed rolls back a redemption that lost its race.
var errCodeUsed = errors.New("authorization code already used")

// RedeemCode marks the code id used and stores tokens in one
// transaction, only if the code was unused. As in RotateRefreshToken, the
// conditional UPDATE is the arbiter (a row lock on PostgreSQL, BEGIN
// IMMEDIATE on SQLite): exactly one caller changes the row, and a caller
// that finds it used finds the winner's tokens committed with it.
func (s *Store) RedeemCode(ctx context.Context, id string, now time.Time, tokens ...*engine.Token) (bool, error) {
	rows, err := tokenRows(tokens)
	if err != nil {
		return false, err
	}
	err = retryTransient(ctx, func() error {
		return s.conn(ctx).Transaction(func(tx *gorm.DB) error {
			res := tx.Model(&authCodeRow{}).Where("id = ? AND used_at = 0", id).Update("used_at", nowNanos(now))
			if res.Error != nil {
				return res.Error
			}
			if res.RowsAffected != 1 {
				return errCodeUsed
			}
			if len(rows) == 0 {
				return nil
			}
			return tx.Create(rows).Error
		})
	})
	if errors.Is(err, errCodeUsed) {
		return false, nil
	}
	if err != nil {
		return false, translate(err)
	}
	return true, nil
}

// PurgeCodes deletes codes that expired before t and reports how many.
func (s *Store) PurgeCodes(ctx context.Context, before time.Time) (int64, error) {
	res := s.conn(ctx).Where("expires_at < ?", toNanos(before)).Delete(&authCodeRow{})
	return res.RowsAffected, res.Error
}
