package storage

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/keyhook/keyhook/engine"
)

// CreateTokens stores the tokens of one issuance atomically, and returns
// once they are committed. Concurrent issuances share a transaction (group
// commit, see inserter): one commit per batch instead of one per token is
// what makes issuance on SQLite fast, and no caller hears back before its
// batch has committed.
func (s *Store) CreateTokens(ctx context.Context, tokens ...*engine.Token) error {
	rows, err := tokenRows(tokens)
	if err != nil || len(rows) == 0 {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	p := &pendingInsert{rows: rows, done: make(chan error, 1)}
	select {
	case <-s.closed:
		return errClosed
	default:
	}
	select {
	case s.inserts <- p:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.closed:
		return errClosed
	}
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		// The batch may still commit; tokens nobody receives are harmless.
		return ctx.Err()
	case <-s.closed:
		// The inserter may have answered as it stopped; if not, the
		// tokens are not known to be stored.
		select {
		case err := <-p.done:
			return err
		default:
			return errClosed
		}
	}
}

var errClosed = errors.New("storage: the store is closed")

// pendingInsert is one CreateTokens call waiting for its batch.
type pendingInsert struct {
	rows []*tokenRow
	done chan error
}

// maxBatch bounds the issuances of one group commit.
const maxBatch = 64

// inserter runs the group commits: it takes the first waiting issuance
// and all that queued behind it meanwhile (up to maxBatch), inserts their
// rows in one transaction, and answers each. When a batch fails, each of
// its issuances is tried alone, so that one issuance's failure (a client
// deleted meanwhile, say) is its own. Without concurrent issuances a
// batch is one issuance, which waits for nothing.
func (s *Store) inserter(ctx context.Context) {
	batch := make([]*pendingInsert, 0, maxBatch)
	for {
		batch = batch[:0]
		select {
		case <-ctx.Done():
			return
		case p := <-s.inserts:
			batch = append(batch, p)
		}
	drain:
		for len(batch) < maxBatch {
			select {
			case p := <-s.inserts:
				batch = append(batch, p)
			default:
				break drain
			}
		}
		err := s.insertBatch(batch)
		if err != nil && len(batch) > 1 {
			for _, p := range batch {
				p.done <- s.insertBatch([]*pendingInsert{p})
			}
			continue
		}
		for _, p := range batch {
			p.done <- err
		}
	}
}

// insertBatch inserts the rows of batch in one transaction, with the
// prepared insert on SQLite and one multi-row INSERT on PostgreSQL (one
// round trip). It does not use any caller's context: a request that ends
// must not undo the others.
func (s *Store) insertBatch(batch []*pendingInsert) error {
	var rows []*tokenRow
	if len(batch) == 1 {
		rows = batch[0].rows
	} else {
		for _, p := range batch {
			rows = append(rows, p.rows...)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s.commits.Add(1)
	tx, err := s.sqlDB.BeginTx(ctx, nil)
	if err != nil {
		return s.translateSQL(err)
	}
	if err := s.insertRows(ctx, tx, rows); err != nil {
		_ = tx.Rollback()
		return s.translateSQL(err)
	}
	return s.translateSQL(tx.Commit())
}

func (s *Store) insertRows(ctx context.Context, tx *sql.Tx, rows []*tokenRow) error {
	if s.dialect == DialectSQLite {
		stmt := tx.StmtContext(ctx, s.stmts.insertToken)
		for _, r := range rows {
			if _, err := stmt.ExecContext(ctx, r.values()...); err != nil {
				return err
			}
		}
		return nil
	}
	var q strings.Builder
	q.WriteString("INSERT INTO tokens (" + tokenColumns + ") VALUES ")
	args := make([]any, 0, len(rows)*tokenColumnCount)
	for i, r := range rows {
		if i > 0 {
			q.WriteByte(',')
		}
		q.WriteByte('(')
		for j := range tokenColumnCount {
			if j > 0 {
				q.WriteByte(',')
			}
			q.WriteByte('$')
			q.WriteString(strconv.Itoa(len(args) + j + 1))
		}
		q.WriteByte(')')
		args = append(args, r.values()...)
	}
	_, err := tx.ExecContext(ctx, q.String(), args...)
	return err
}

// values are r's columns in tokenColumns' order.
func (r *tokenRow) values() []any {
	return []any{r.ID, r.Kind, r.Format, r.ClientID, r.Subject, r.Username, r.Scope, r.GrantType, r.FamilyID,
		r.Audience, r.KeyID, r.Claims, r.IssuedAt, r.ExpiresAt, r.AuthTime, r.Revoked, r.UsedAt, r.Successor,
		r.SuccessorUntil, r.Resources, r.Act, r.JKT}
}

// translateSQL maps a database/sql error onto the engine's sentinels, as
// gorm does for its own statements.
func (s *Store) translateSQL(err error) error {
	if err == nil {
		return nil
	}
	if t, ok := s.db.Dialector.(gorm.ErrorTranslator); ok {
		err = t.Translate(err)
	}
	return translate(err)
}

func tokenRows(tokens []*engine.Token) ([]*tokenRow, error) {
	rows := make([]*tokenRow, 0, len(tokens))
	for _, t := range tokens {
		r, err := tokenToRow(t)
		if err != nil {
			return nil, err
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// TokenByID returns the token with id or engine.ErrNotFound, read from
// the database (LookupToken may answer from the token cache).
func (s *Store) TokenByID(ctx context.Context, id string) (*engine.Token, error) {
	return s.readToken(ctx, id)
}

// errNotRotated rolls back a rotation that lost its race.
var errNotRotated = errors.New("refresh token not active")

// RotateRefreshToken marks oldID used and stores next in one transaction,
// only if oldID is an active refresh token at now. The conditional UPDATE
// is the arbiter: on PostgreSQL a concurrent rotation waits for the row lock
// and then re-checks used_at, on SQLite BEGIN IMMEDIATE serializes the
// transactions, so exactly one caller changes the row and reports true.
func (s *Store) RotateRefreshToken(ctx context.Context, oldID string, now time.Time, successor *engine.Successor, next ...*engine.Token) (bool, error) {
	rows, err := tokenRows(next)
	if err != nil {
		return false, err
	}
	n := nowNanos(now)
	mark := map[string]any{"used_at": n}
	if successor != nil {
		mark["successor"], mark["successor_until"] = successor.Sealed, toNanos(successor.Until)
	}
	err = retryTransient(ctx, func() error {
		return s.rotate(ctx, oldID, n, mark, rows)
	})
	if errors.Is(err, errNotRotated) {
		return false, nil
	}
	if err != nil {
		return false, translate(err)
	}
	return true, nil
}

// rotate is one attempt of RotateRefreshToken.
func (s *Store) rotate(ctx context.Context, oldID string, n int64, mark map[string]any, rows []*tokenRow) error {
	return s.changeTokens(ctx, func(tx *gorm.DB) error {
		res := tx.Model(&tokenRow{}).
			Where("id = ? AND kind = ? AND used_at = 0 AND revoked = ? AND expires_at > ?",
				oldID, string(engine.KindRefresh), false, n).
			Updates(mark)
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected != 1 {
			return errNotRotated
		}
		if len(rows) == 0 {
			return nil
		}
		return tx.Create(rows).Error
	})
}

// RevokeToken revokes the token id; revoking an unknown token is no error
// (RFC 7009 §2.2 answers the same either way).
func (s *Store) RevokeToken(ctx context.Context, id string) error {
	return s.changeTokens(ctx, func(tx *gorm.DB) error {
		return tx.Model(&tokenRow{}).Where("id = ?", id).Update("revoked", true).Error
	})
}

// RevokeFamily revokes every token of the grant family familyID.
func (s *Store) RevokeFamily(ctx context.Context, familyID string) error {
	if familyID == "" {
		// Tokens without a family are not one family.
		return nil
	}
	return retryTransient(ctx, func() error {
		return s.changeTokens(ctx, func(tx *gorm.DB) error {
			return tx.Model(&tokenRow{}).Where("family_id = ?", familyID).Update("revoked", true).Error
		})
	})
}

// PurgeTokens deletes tokens that expired before t and reports how many.
// It also forgets the sealed successor answers whose reuse interval ended
// before t, so that they are kept no longer than they may be answered.
func (s *Store) PurgeTokens(ctx context.Context, before time.Time) (int64, error) {
	b := toNanos(before)
	var n int64
	err := s.changeTokens(ctx, func(tx *gorm.DB) error {
		res := tx.Where("expires_at < ?", b).Delete(&tokenRow{})
		if res.Error != nil {
			return res.Error
		}
		n = res.RowsAffected
		return tx.Model(&tokenRow{}).Where("successor_until <> 0 AND successor_until < ?", b).
			Updates(map[string]any{"successor": "", "successor_until": 0}).Error
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// LatestExpiry is the latest expiry of the tokens signed with key kid, the
// zero time when there are none; a key may be deleted once it has passed.
func (s *Store) LatestExpiry(ctx context.Context, kid string) (time.Time, error) {
	var n int64
	err := s.db.WithContext(ctx).Model(&tokenRow{}).Where("key_id = ?", kid).
		Select("COALESCE(MAX(expires_at), 0)").Scan(&n).Error
	if err != nil {
		return time.Time{}, err
	}
	return fromNanos(n), nil
}
