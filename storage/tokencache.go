package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/jackc/pgx/v5"
	"gorm.io/gorm"

	"github.com/keyhook/keyhook/engine"
)

// The token cache (docs/performance.md, "The token cache").
//
// Introspection reads a token by id on every call; most calls read the
// same tokens again and again. LookupToken answers those reads from
// memory, and a cached token never outlives a change made to any token
// through any Store on the same database, in this process or another.
// Changes are counted, not tracked one by one: every statement that
// changes or deletes existing token rows (revocation, refresh rotation, a
// client's deletion, purging) runs inside changeTokens, which advances a
// pair of counters:
//
//   - started, before the transaction begins;
//   - finished, once it has committed (or failed).
//
// A token read from the database is cached with the value of finished
// read before the read, and only if no change was under way from before
// the read until after it (started == finished throughout). A cached
// token is used only while finished still has its value and no change is
// under way. So any change that committed before a lookup began is either
// in the row the lookup read or has moved finished past the entry.
//
// Where the counters live decides who sees them:
//
//   - SQLite: in a small file beside the database, mapped shared into
//     every process that opens it. SQLite in WAL mode already requires
//     every process to be on one host and to share memory (its -shm
//     file), so the counters reach exactly the processes that can open
//     the database. A process that dies between started and finished
//     leaves a change "under way" for good: the cache is then bypassed
//     by every process until the last one closes the database, and the
//     next one to open it alone resets the counters.
//   - PostgreSQL: in this process's memory, and every change also sends
//     NOTIFY keyhook_tokens in its transaction. Each Store LISTENs on a
//     connection of its own; a notification counts as a change made
//     elsewhere. While that connection is down (and until it has been
//     re-established), the cache is bypassed.
type tokenCache struct {
	entries *lru.Cache[string, cachedToken]
	gen     *counters
}

type cachedToken struct {
	t   *engine.Token
	gen uint64
}

// tokenCacheSize bounds the cached tokens (~1 KiB each, so ~20 MiB at most
// of --memory-target-mb's 96).
const tokenCacheSize = 20_000

func newTokenCache(gen *counters) *tokenCache {
	entries, _ := lru.New[string, cachedToken](tokenCacheSize)
	return &tokenCache{entries: entries, gen: gen}
}

// LookupToken is TokenByID, answered from the token cache when the
// token's row cannot have changed since it was cached. The token is
// shared: callers must not modify it.
func (s *Store) LookupToken(ctx context.Context, id string) (*engine.Token, error) {
	c := s.tokenCache
	g, ok := c.gen.snapshot()
	if ok {
		if e, hit := c.entries.Get(id); hit && e.gen == g {
			return e.t, nil
		}
	}
	t, err := s.readToken(ctx, id)
	if err != nil {
		return nil, err
	}
	if ok {
		if g2, ok2 := c.gen.snapshot(); ok2 && g2 == g {
			c.entries.Add(id, cachedToken{t: t, gen: g})
		}
	}
	return t, nil
}

// changeTokens runs fn, a transaction that changes or deletes existing
// token rows, as a change the token cache must see (see above). Inside
// Atomically it runs in Atomically's transaction (under a savepoint), and
// the change stays under way until that transaction ends: a token read
// meanwhile, before the commit, is not cached.
func (s *Store) changeTokens(ctx context.Context, fn func(tx *gorm.DB) error) error {
	s.tokenCache.gen.begin()
	defer s.afterTx(ctx, s.tokenCache.gen.end)
	return s.conn(ctx).Transaction(func(tx *gorm.DB) error {
		if err := fn(tx); err != nil {
			return err
		}
		if s.dialect == DialectPostgres {
			return tx.Exec("SELECT pg_notify('" + tokensChannel + "', '')").Error
		}
		return nil
	})
}

// tokenColumns are the columns readToken scans and insertRows writes, in
// tokenRow's order.
const (
	tokenColumns = `id, kind, format, client_id, subject, username, scope, grant_type, family_id, audience,
	key_id, claims, issued_at, expires_at, auth_time, revoked, used_at, successor, successor_until, resources, act, jkt`
	tokenColumnCount = 22
)

// readToken reads one token with a prepared statement: the hot read skips
// gorm's reflection.
func (s *Store) readToken(ctx context.Context, id string) (*engine.Token, error) {
	var r tokenRow
	err := s.stmts.tokenByID.QueryRowContext(ctx, id).Scan(&r.ID, &r.Kind, &r.Format, &r.ClientID, &r.Subject,
		&r.Username, &r.Scope, &r.GrantType, &r.FamilyID, &r.Audience, &r.KeyID, &r.Claims, &r.IssuedAt,
		&r.ExpiresAt, &r.AuthTime, &r.Revoked, &r.UsedAt, &r.Successor, &r.SuccessorUntil, &r.Resources, &r.Act, &r.JKT)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, engine.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return r.toEngine()
}

// counters is the started/finished pair of a database: in this process's
// memory (PostgreSQL) or in a file mapped by every process that opens the
// database (SQLite).
type counters struct {
	started, finished *atomic.Uint64
	// live, on PostgreSQL, is false while the listener is not (yet)
	// listening; nil on SQLite.
	live *atomic.Bool
	// file holds the SQLite processes' lock; nil on PostgreSQL.
	file *os.File
}

// localCounters are counters in this process's memory, not yet live.
func localCounters() *counters {
	return &counters{started: new(atomic.Uint64), finished: new(atomic.Uint64), live: new(atomic.Bool)}
}

// snapshot is finished, and whether no change is under way (and the
// counters can be trusted at all).
func (g *counters) snapshot() (uint64, bool) {
	f := g.finished.Load()
	return f, (g.live == nil || g.live.Load()) && g.started.Load() == f
}

// begin marks a change under way; end marks it finished.
func (g *counters) begin() { g.started.Add(1) }
func (g *counters) end()   { g.finished.Add(1) }

// close releases the SQLite file (and its lock). The mapping stays until
// the process ends: a store used after Close (a background loop finishing
// its last round) must find the counters where they were, not a fault.
func (g *counters) close() error {
	if g.file == nil {
		return nil
	}
	return g.file.Close()
}

// openSharedCounters maps path (created when absent), resetting the
// counters when no other process has it open.
func openSharedCounters(path string, log *slog.Logger) (*counters, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*counters, error) {
		f.Close()
		return nil, fmt.Errorf("token cache counters %s: %w", path, err)
	}
	const size = 4096
	st, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	if st.Size() < size {
		if err := f.Truncate(size); err != nil {
			return fail(err)
		}
	}
	mem, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		return fail(err)
	}
	// The mapping holds the file open by itself; the lock below is taken
	// on a descriptor of its own, so that closing that one releases it
	// (a lock on the mapped descriptor would last as long as the mapping).
	f.Close()
	if f, err = os.OpenFile(path, os.O_RDWR, 0); err != nil {
		return fail(err)
	}
	g := &counters{file: f,
		started:  (*atomic.Uint64)(unsafe.Pointer(&mem[0])),
		finished: (*atomic.Uint64)(unsafe.Pointer(&mem[8]))}
	// Alone (an exclusive lock succeeds), a change left under way by a
	// process that died is over: reset. Then hold a shared lock, so that
	// others know this process has the file.
	if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
		if s, fin := g.started.Load(), g.finished.Load(); s != fin {
			log.Warn("token cache: a process ended during a token change; counters reset", "file", path)
			g.finished.Store(s)
		}
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH); err != nil {
		return fail(err)
	}
	return g, nil
}

// tokensChannel is the PostgreSQL notification channel of token changes.
const tokensChannel = "keyhook_tokens"

// listen keeps a LISTEN keyhook_tokens connection to dsn until ctx ends,
// counting each notification as a change made elsewhere. g is live only
// while it listens; each (re)connection counts as a change, since
// notifications sent while it was down are lost.
func listen(ctx context.Context, dsn string, g *counters, log *slog.Logger, ready chan<- struct{}) {
	backoff := 100 * time.Millisecond
	signalled := false
	for ctx.Err() == nil {
		conn, err := pgx.Connect(ctx, dsn)
		if err == nil {
			_, err = conn.Exec(ctx, "LISTEN "+tokensChannel)
		}
		if err == nil {
			g.begin()
			g.end()
			g.live.Store(true)
			if !signalled {
				close(ready)
				signalled = true
			}
			backoff = 100 * time.Millisecond
			for {
				if _, err = conn.WaitForNotification(ctx); err != nil {
					break
				}
				g.begin()
				g.end()
			}
		}
		g.live.Store(false)
		if conn != nil {
			cctx, cancel := context.WithTimeout(context.Background(), time.Second)
			conn.Close(cctx)
			cancel()
		}
		if ctx.Err() != nil {
			break
		}
		if log != nil {
			log.Warn("token cache: LISTEN connection lost; reading tokens from the database until it is back", "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
	if !signalled {
		close(ready)
	}
}

// walCheckpointAt is the WAL size past which the checkpointer forces a
// checkpoint that truncates the file.
const walCheckpointAt = 64 << 20

// checkpoints keeps the SQLite WAL bounded. SQLite checkpoints by itself
// every 1000 pages, but a checkpoint cannot restart the WAL while readers
// still use its frames, so under steady load the file only grows. Every
// 10 s, a WAL over walCheckpointAt gets a TRUNCATE checkpoint, which waits
// (up to the busy timeout) for the readers of the moment to finish.
func (s *Store) checkpoints(ctx context.Context, wal string, log *slog.Logger) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st, err := os.Stat(wal)
		if err != nil || st.Size() < walCheckpointAt {
			continue
		}
		if _, err := s.sqlDB.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)"); err != nil && ctx.Err() == nil {
			log.Warn("WAL checkpoint failed", "err", err, "wal_bytes", st.Size())
		}
	}
}
