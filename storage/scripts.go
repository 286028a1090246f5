package storage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"time"

	"gorm.io/gorm"

	"github.com/keyhook/keyhook/hooks"
)

// Scripts returns every script, ordered by name.
func (s *Store) Scripts(ctx context.Context) ([]*hooks.Script, error) {
	var rows []scriptRow
	if err := s.conn(ctx).Order("name").Find(&rows).Error; err != nil {
		return nil, err
	}
	return convertAll(rows, (*scriptRow).toEngine)
}

// ScriptByName returns the script or engine.ErrNotFound.
func (s *Store) ScriptByName(ctx context.Context, name string) (*hooks.Script, error) {
	var r scriptRow
	if err := s.conn(ctx).Where("name = ?", name).Take(&r).Error; err != nil {
		return nil, translate(err)
	}
	return r.toEngine()
}

// CreateScript stores sc under a new version, which it writes back to
// sc.Version; engine.ErrConflict when the name is taken.
func (s *Store) CreateScript(ctx context.Context, sc *hooks.Script) error {
	return s.writeScript(ctx, sc, func(tx *gorm.DB, r *scriptRow) error { return tx.Create(r).Error })
}

// UpdateScript replaces the script sc.Name under a new version, which it
// writes back to sc.Version; engine.ErrNotFound when there is none.
func (s *Store) UpdateScript(ctx context.Context, sc *hooks.Script) error {
	return s.writeScript(ctx, sc, func(tx *gorm.DB, r *scriptRow) error {
		return changedOne(tx.Model(&scriptRow{}).Where("name = ?", sc.Name).Select("*").Omit("name").Updates(r))
	})
}

// writeScript stores sc under a new version with write, bumps the scripts'
// generation in the same transaction, and writes the version back to sc.
func (s *Store) writeScript(ctx context.Context, sc *hooks.Script, write func(*gorm.DB, *scriptRow) error) error {
	r, err := scriptToRow(sc)
	if err != nil {
		return err
	}
	r.Version, r.UpdatedAt = newScriptVersion(), time.Now().UnixNano()
	err = s.conn(ctx).Transaction(func(tx *gorm.DB) error {
		if err := write(tx, r); err != nil {
			return err
		}
		return bumpScriptGeneration(tx)
	})
	if err != nil {
		return translate(err)
	}
	sc.Version = r.Version
	return nil
}

// DeleteScript deletes the script and its versions; engine.ErrNotFound
// when there is none.
func (s *Store) DeleteScript(ctx context.Context, name string) error {
	return translate(s.conn(ctx).Transaction(func(tx *gorm.DB) error {
		if err := changedOne(tx.Where("name = ?", name).Delete(&scriptRow{})); err != nil {
			return err
		}
		if err := tx.Where("script = ?", name).Delete(&scriptVersionRow{}).Error; err != nil {
			return err
		}
		return bumpScriptGeneration(tx)
	}))
}

// ScriptsVersion is the script generation: a counter that every script
// create, update and delete increments in its own transaction, so it is a
// one-row read for instances that poll for script changes.
func (s *Store) ScriptsVersion(ctx context.Context) (string, error) {
	var r scriptGenerationRow
	if err := s.conn(ctx).Where("id = 1").Take(&r).Error; err != nil {
		return "", translate(err)
	}
	return strconv.FormatInt(r.Generation, 10), nil
}

func bumpScriptGeneration(tx *gorm.DB) error {
	return tx.Model(&scriptGenerationRow{}).Where("id = 1").
		Update("generation", gorm.Expr("generation + 1")).Error
}

// newScriptVersion returns a random version id: unlike a counter it never
// repeats across databases or restores, so runtimes cannot confuse two
// different sources that share a name.
func newScriptVersion() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ResealScriptSecrets replaces the stored secrets of the script called
// name with next if they are still old (both as the engine stores them),
// keeping its version: the values are the same, only sealed
// (engine/scriptsecrets.go). A script changed meanwhile is left as it is.
func (s *Store) ResealScriptSecrets(ctx context.Context, name string, old, next map[string]string) error {
	o, err := encodeJSON(old)
	if err != nil {
		return err
	}
	n, err := encodeJSON(next)
	if err != nil {
		return err
	}
	return s.conn(ctx).Model(&scriptRow{}).Where("name = ? AND secrets = ?", name, o).Update("secrets", n).Error
}
