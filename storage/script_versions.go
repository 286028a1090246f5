package storage

import (
	"context"

	"gorm.io/gorm"

	"github.com/keyhook/keyhook/engine"
)

// The version history of scripts (docs/scripts.md, "Versions, rollback
// and rollout"): rows are written once and never changed.

var _ engine.ScriptVersionStore = (*Store)(nil)

// ScriptVersions lists the versions of the script called name, newest
// first.
func (s *Store) ScriptVersions(ctx context.Context, name string) ([]*engine.ScriptVersion, error) {
	var rows []scriptVersionRow
	if err := s.conn(ctx).Where("script = ?", name).Order("number DESC").Find(&rows).Error; err != nil {
		return nil, err
	}
	out := make([]*engine.ScriptVersion, len(rows))
	for i := range rows {
		out[i] = rows[i].toEngine()
	}
	return out, nil
}

// ScriptVersion returns version number of the script or engine.ErrNotFound.
func (s *Store) ScriptVersion(ctx context.Context, name string, number int) (*engine.ScriptVersion, error) {
	var r scriptVersionRow
	if err := s.conn(ctx).Where("script = ? AND number = ?", name, number).Take(&r).Error; err != nil {
		return nil, translate(err)
	}
	return r.toEngine(), nil
}

// LatestScriptVersion returns the newest version of the script or
// engine.ErrNotFound.
func (s *Store) LatestScriptVersion(ctx context.Context, name string) (*engine.ScriptVersion, error) {
	var r scriptVersionRow
	if err := s.conn(ctx).Where("script = ?", name).Order("number DESC").Take(&r).Error; err != nil {
		return nil, translate(err)
	}
	return r.toEngine(), nil
}

// AddScriptVersion stores v; engine.ErrConflict when its number is taken.
func (s *Store) AddScriptVersion(ctx context.Context, v *engine.ScriptVersion) error {
	return s.create(ctx, scriptVersionToRow(v))
}

// ReplaceScriptVersions makes all the versions of the script called name.
func (s *Store) ReplaceScriptVersions(ctx context.Context, name string, all []*engine.ScriptVersion) error {
	return translate(s.conn(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Where("script = ?", name).Delete(&scriptVersionRow{}).Error; err != nil {
			return err
		}
		for _, v := range all {
			r := scriptVersionToRow(v)
			r.Script = name
			if err := tx.Create(r).Error; err != nil {
				return err
			}
		}
		return nil
	}))
}

func scriptVersionToRow(v *engine.ScriptVersion) *scriptVersionRow {
	return &scriptVersionRow{Script: v.Script, Number: int64(v.Number), Author: v.Author,
		CreatedAt: nowNanos(v.CreatedAt), SHA256: v.SHA256, Snapshot: string(v.Snapshot)}
}

func (r *scriptVersionRow) toEngine() *engine.ScriptVersion {
	return &engine.ScriptVersion{Script: r.Script, Number: int(r.Number), Author: r.Author,
		CreatedAt: fromNanos(r.CreatedAt), SHA256: r.SHA256, Snapshot: []byte(r.Snapshot)}
}
