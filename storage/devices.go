package storage

import (
	"context"
	"errors"
	"time"

	"gorm.io/gorm"

	"github.com/keyhook/keyhook/engine"
)

// deviceGrantRow is a device authorization (RFC 8628, docs/device-flow.md):
// the device code and the user code only as hashes.
type deviceGrantRow struct {
	ID           string `gorm:"column:id;primaryKey"`
	UserCodeID   string `gorm:"column:user_code_id"`
	ClientID     string `gorm:"column:client_id"`
	Scope        string `gorm:"column:scope"`
	Status       string `gorm:"column:status"`
	Username     string `gorm:"column:username"`
	AuthTime     int64  `gorm:"column:auth_time"`
	FamilyID     string `gorm:"column:family_id"`
	PollInterval int64  `gorm:"column:poll_interval"`
	LastPolledAt int64  `gorm:"column:last_polled_at"`
	CreatedAt    int64  `gorm:"column:created_at"`
	ExpiresAt    int64  `gorm:"column:expires_at"`
	UsedAt       int64  `gorm:"column:used_at"`
}

func (deviceGrantRow) TableName() string { return "device_grants" }

func deviceGrantToRow(g *engine.DeviceGrant) *deviceGrantRow {
	return &deviceGrantRow{
		ID: g.ID, UserCodeID: g.UserCodeID, ClientID: g.ClientID, Scope: g.Scope, Status: string(g.Status),
		Username: g.Username, AuthTime: toNanos(g.AuthTime), FamilyID: g.FamilyID, PollInterval: g.Interval,
		LastPolledAt: toNanos(g.LastPolledAt), CreatedAt: toNanos(g.CreatedAt), ExpiresAt: toNanos(g.ExpiresAt),
		UsedAt: toNanos(g.UsedAt),
	}
}

func (r *deviceGrantRow) toEngine() *engine.DeviceGrant {
	return &engine.DeviceGrant{
		ID: r.ID, UserCodeID: r.UserCodeID, ClientID: r.ClientID, Scope: r.Scope, Status: engine.DeviceStatus(r.Status),
		Username: r.Username, AuthTime: fromNanos(r.AuthTime), FamilyID: r.FamilyID, Interval: r.PollInterval,
		LastPolledAt: fromNanos(r.LastPolledAt), CreatedAt: fromNanos(r.CreatedAt), ExpiresAt: fromNanos(r.ExpiresAt),
		UsedAt: fromNanos(r.UsedAt),
	}
}

// CreateDeviceGrant stores g; engine.ErrConflict when its device code or
// user code hash exists (the user code column is unique).
func (s *Store) CreateDeviceGrant(ctx context.Context, g *engine.DeviceGrant) error {
	return translate(s.conn(ctx).Create(deviceGrantToRow(g)).Error)
}

// DeviceGrantByID returns the device authorization id or engine.ErrNotFound.
func (s *Store) DeviceGrantByID(ctx context.Context, id string) (*engine.DeviceGrant, error) {
	return s.deviceGrant(ctx, "id = ?", id)
}

// DeviceGrantByUserCode returns the device authorization of a user code
// hash or engine.ErrNotFound.
func (s *Store) DeviceGrantByUserCode(ctx context.Context, userCodeID string) (*engine.DeviceGrant, error) {
	return s.deviceGrant(ctx, "user_code_id = ?", userCodeID)
}

func (s *Store) deviceGrant(ctx context.Context, where string, arg string) (*engine.DeviceGrant, error) {
	var r deviceGrantRow
	if err := s.conn(ctx).Where(where, arg).Take(&r).Error; err != nil {
		return nil, translate(err)
	}
	return r.toEngine(), nil
}

// PollDeviceGrant records a poll at now. The conditional UPDATE is the
// arbiter, as in RedeemCode: of concurrent polls within one interval, on
// any instance, one changes the row; each of the others adds step to the
// interval (RFC 8628 §3.5) and reports false.
func (s *Store) PollDeviceGrant(ctx context.Context, id string, now time.Time, step time.Duration) (bool, error) {
	n := nowNanos(now)
	var polled bool
	err := retryTransient(ctx, func() error {
		res := s.conn(ctx).Model(&deviceGrantRow{}).
			Where("id = ? AND last_polled_at + poll_interval * 1000000000 <= ?", id, n).
			Update("last_polled_at", n)
		if res.Error != nil || res.RowsAffected == 1 {
			polled = res.RowsAffected == 1
			return res.Error
		}
		return s.conn(ctx).Model(&deviceGrantRow{}).Where("id = ?", id).Updates(map[string]any{
			"last_polled_at": n,
			"poll_interval":  gorm.Expr("poll_interval + ?", int64(step/time.Second)),
		}).Error
	})
	if err != nil {
		return false, translate(err)
	}
	return polled, nil
}

// DecideDeviceGrant records the user's decision if the grant is still
// pending and unexpired at now.
func (s *Store) DecideDeviceGrant(ctx context.Context, id string, status engine.DeviceStatus, username string, authTime, now time.Time) (bool, error) {
	res := s.conn(ctx).Model(&deviceGrantRow{}).
		Where("id = ? AND status = ? AND used_at = 0 AND expires_at > ?", id, string(engine.DevicePending), nowNanos(now)).
		Updates(map[string]any{"status": string(status), "username": username, "auth_time": toNanos(authTime)})
	if res.Error != nil {
		return false, translate(res.Error)
	}
	return res.RowsAffected == 1, nil
}

// errDeviceUsed rolls back a redemption that lost its race.
var errDeviceUsed = errors.New("device code already used")

// RedeemDeviceGrant marks the grant used and stores tokens in one
// transaction, only if it was unused (as RedeemCode).
func (s *Store) RedeemDeviceGrant(ctx context.Context, id string, now time.Time, tokens ...*engine.Token) (bool, error) {
	rows, err := tokenRows(tokens)
	if err != nil {
		return false, err
	}
	err = retryTransient(ctx, func() error {
		return s.conn(ctx).Transaction(func(tx *gorm.DB) error {
			res := tx.Model(&deviceGrantRow{}).Where("id = ? AND used_at = 0", id).Update("used_at", nowNanos(now))
			if res.Error != nil {
				return res.Error
			}
			if res.RowsAffected != 1 {
				return errDeviceUsed
			}
			if len(rows) == 0 {
				return nil
			}
			return tx.Create(rows).Error
		})
	})
	if errors.Is(err, errDeviceUsed) {
		return false, nil
	}
	if err != nil {
		return false, translate(err)
	}
	return true, nil
}

// CountDeviceGrants counts the device authorizations of clientID that
// have not expired at now.
func (s *Store) CountDeviceGrants(ctx context.Context, clientID string, now time.Time) (int64, error) {
	var n int64
	err := s.conn(ctx).Model(&deviceGrantRow{}).Where("client_id = ? AND expires_at > ?", clientID, nowNanos(now)).
		Count(&n).Error
	return n, translate(err)
}

// PurgeDeviceGrants deletes device authorizations that expired before t.
func (s *Store) PurgeDeviceGrants(ctx context.Context, before time.Time) (int64, error) {
	res := s.conn(ctx).Where("expires_at < ?", toNanos(before)).Delete(&deviceGrantRow{})
	return res.RowsAffected, res.Error
}
