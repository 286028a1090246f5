package storage

import (
	"context"

	"gorm.io/gorm"
)

// txKey is the context key under which Atomically keeps its transaction.
type txKey struct{ s *Store }

// Atomically runs fn in one database transaction: the changes of clients,
// scripts, users, properties, keys and secrets that fn makes through s
// with the context it is given commit together when fn returns nil, and
// none of them does when it returns an error (keyhook import, --seed).
// Token writes go through their own group commit (tokens.go) and must not
// be made in fn: on SQLite they would wait for the transaction's lock.
// Deleting a client (and its tokens) may: changeTokens joins the
// transaction (keyhook import --bundle --prune).
func (s *Store) Atomically(ctx context.Context, fn func(ctx context.Context) error) error {
	if _, ok := ctx.Value(txKey{s}).(*gorm.DB); ok {
		return fn(ctx) // already inside one
	}
	var after []func()
	defer func() {
		for _, f := range after {
			f()
		}
	}()
	return s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		ctx := context.WithValue(ctx, txKey{s}, tx)
		return fn(context.WithValue(ctx, afterKey{s}, &after))
	})
}

// afterKey is the context key of the functions Atomically runs once its
// transaction has committed or rolled back.
type afterKey struct{ s *Store }

// afterTx runs f once the transaction of ctx ends, or at once when ctx
// carries none.
func (s *Store) afterTx(ctx context.Context, f func()) {
	if after, ok := ctx.Value(afterKey{s}).(*[]func()); ok {
		*after = append(*after, f)
		return
	}
	f()
}

// conn is the connection for a call made with ctx: Atomically's
// transaction when ctx carries one of s, else the pool.
func (s *Store) conn(ctx context.Context) *gorm.DB {
	if tx, ok := ctx.Value(txKey{s}).(*gorm.DB); ok {
		return tx.WithContext(ctx)
	}
	return s.db.WithContext(ctx)
}

// create inserts r; inside Atomically under a savepoint, so that a
// conflict its caller expects (engine.ErrConflict) leaves the transaction
// usable: PostgreSQL aborts a transaction at its first error otherwise.
func (s *Store) create(ctx context.Context, r any) error {
	if _, ok := ctx.Value(txKey{s}).(*gorm.DB); ok {
		return translate(s.conn(ctx).Transaction(func(tx *gorm.DB) error { return tx.Create(r).Error }))
	}
	return translate(s.conn(ctx).Create(r).Error)
}
