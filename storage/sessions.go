package storage

import (
	"context"
	"time"

	"github.com/keyhook/keyhook/engine"
)

// CreateSession stores the login session s; engine.ErrConflict when its
// id exists. A session of a user that does not exist is refused by the
// foreign key.
func (s *Store) CreateSession(ctx context.Context, sess *engine.Session) error {
	return translate(s.db.WithContext(ctx).Create(sessionToRow(sess)).Error)
}

// SessionByID returns the login session id or engine.ErrNotFound.
func (s *Store) SessionByID(ctx context.Context, id string) (*engine.Session, error) {
	var r sessionRow
	if err := s.db.WithContext(ctx).Where("id = ?", id).Take(&r).Error; err != nil {
		return nil, translate(err)
	}
	return r.toEngine(), nil
}

// DeleteSession deletes the login session id; absent is not an error.
func (s *Store) DeleteSession(ctx context.Context, id string) error {
	return translate(s.db.WithContext(ctx).Where("id = ?", id).Delete(&sessionRow{}).Error)
}

// PurgeSessions deletes sessions that expired before t and reports how
// many.
func (s *Store) PurgeSessions(ctx context.Context, before time.Time) (int64, error) {
	res := s.db.WithContext(ctx).Where("expires_at < ?", toNanos(before)).Delete(&sessionRow{})
	return res.RowsAffected, res.Error
}

// TrimSessions deletes the sessions of username except keepID and the
// limit-1 newest others (by auth time, then id), and reports how many.
func (s *Store) TrimSessions(ctx context.Context, username, keepID string, limit int) (int64, error) {
	db := s.db.WithContext(ctx)
	q := db.Where("username = ? AND id <> ?", username, keepID)
	if limit > 1 {
		newest := db.Model(&sessionRow{}).Select("id").Where("username = ? AND id <> ?", username, keepID).
			Order("auth_time DESC, id DESC").Limit(limit - 1)
		q = q.Where("id NOT IN (?)", newest)
	}
	res := q.Delete(&sessionRow{})
	return res.RowsAffected, res.Error
}
