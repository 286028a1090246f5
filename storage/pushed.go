package storage

import (
	"context"
	"time"

	"github.com/keyhook/keyhook/engine"
)

// CreatePushedRequest stores the pushed authorization request p
// (RFC 9126 §2); a request of a client that does not exist is refused by
// the foreign key.
func (s *Store) CreatePushedRequest(ctx context.Context, p *engine.PushedRequest) error {
	r, err := pushedToRow(p)
	if err != nil {
		return err
	}
	return s.create(ctx, r)
}

// PushedRequestByID returns the pushed request id, expired or not, or
// engine.ErrNotFound.
func (s *Store) PushedRequestByID(ctx context.Context, id string) (*engine.PushedRequest, error) {
	var r pushedRequestRow
	if err := s.conn(ctx).Where("id = ?", id).Take(&r).Error; err != nil {
		return nil, translate(err)
	}
	return r.toEngine()
}

// StartPushedRequest marks the pushed request id started with the expiry
// until, if it was not started, and reports whether it did.
func (s *Store) StartPushedRequest(ctx context.Context, id string, until time.Time) (bool, error) {
	res := s.conn(ctx).Model(&pushedRequestRow{}).Where("id = ? AND started = ?", id, false).
		Updates(map[string]any{"started": true, "expires_at": toNanos(until)})
	return res.RowsAffected == 1, translate(res.Error)
}

// ConsumePushedRequest deletes the pushed request id if it has not
// expired at now. The conditional DELETE is the arbiter: of concurrent
// callers, exactly one sees a row go.
func (s *Store) ConsumePushedRequest(ctx context.Context, id string, now time.Time) (bool, error) {
	res := s.conn(ctx).Where("id = ? AND expires_at > ?", id, nowNanos(now)).Delete(&pushedRequestRow{})
	return res.RowsAffected == 1, translate(res.Error)
}

// CountPushedRequests counts the pushed requests of clientID that have
// not expired at now.
func (s *Store) CountPushedRequests(ctx context.Context, clientID string, now time.Time) (int64, error) {
	var n int64
	err := s.conn(ctx).Model(&pushedRequestRow{}).Where("client_id = ? AND expires_at > ?", clientID, nowNanos(now)).
		Count(&n).Error
	return n, translate(err)
}

// PurgePushedRequests deletes pushed requests that expired before t and
// reports how many.
func (s *Store) PurgePushedRequests(ctx context.Context, before time.Time) (int64, error) {
	res := s.conn(ctx).Where("expires_at < ?", toNanos(before)).Delete(&pushedRequestRow{})
	return res.RowsAffected, res.Error
}
