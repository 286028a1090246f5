package storage

import (
	"context"
	"unicode/utf8"

	"gorm.io/gorm"

	"github.com/keyhook/keyhook/engine"
)

// ClientByID returns the client with id or engine.ErrNotFound.
func (s *Store) ClientByID(ctx context.Context, id string) (*engine.Client, error) {
	if !utf8.ValidString(id) {
		return nil, engine.ErrNotFound // as UserByName: no stored id is, and PostgreSQL would refuse the query
	}
	var r clientRow
	if err := s.conn(ctx).Where("id = ?", id).Take(&r).Error; err != nil {
		return nil, translate(err)
	}
	return r.toEngine()
}

// Clients returns every client, ordered by id.
func (s *Store) Clients(ctx context.Context) ([]*engine.Client, error) {
	var rows []clientRow
	if err := s.conn(ctx).Order("id").Find(&rows).Error; err != nil {
		return nil, err
	}
	return convertAll(rows, (*clientRow).toEngine)
}

// CreateClient stores c; engine.ErrConflict when its id is taken.
func (s *Store) CreateClient(ctx context.Context, c *engine.Client) error {
	r, err := clientToRow(c)
	if err != nil {
		return err
	}
	return s.create(ctx, r)
}

// UpdateClient replaces every field of the client c.ID;
// engine.ErrNotFound when there is none.
func (s *Store) UpdateClient(ctx context.Context, c *engine.Client) error {
	r, err := clientToRow(c)
	if err != nil {
		return err
	}
	res := s.conn(ctx).Model(&clientRow{}).Where("id = ?", c.ID).
		Select("*").Omit("id").Updates(r)
	return changedOne(res)
}

// DeleteClient deletes the client; its tokens and authorization codes go
// with it (ON DELETE CASCADE). engine.ErrNotFound when there is none.
func (s *Store) DeleteClient(ctx context.Context, id string) error {
	return translate(s.changeTokens(ctx, func(tx *gorm.DB) error {
		return changedOne(tx.Where("id = ?", id).Delete(&clientRow{}))
	}))
}
