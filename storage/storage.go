// Package storage implements engine.Stores on SQLite and PostgreSQL with
// gorm. One *Store serves every store interface; its schema is created and
// upgraded by versioned migrations at Open, so several instances may share
// one database and start at the same time.
package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"github.com/jackc/pgx/v5/pgconn"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gorm.io/driver/postgres"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/keyhook/keyhook/engine"
)

// Dialect names returned by (*Store).Dialect.
const (
	DialectSQLite   = "sqlite"
	DialectPostgres = "postgres"
)

// Store is a database holding everything keyhook persists. It implements
// every interface of engine.Stores and is safe for concurrent use.
type Store struct {
	db      *gorm.DB
	sqlDB   *sql.DB
	dialect string
	// dsn is the DSN Open was given; tests reopen the same database with it.
	dsn string
	// stmts are the hot paths' prepared statements, beside gorm.
	stmts struct {
		tokenByID, insertToken *sql.Stmt
	}
	tokenCache *tokenCache
	// inserts feeds the group commits of CreateTokens (tokens.go).
	inserts chan *pendingInsert
	closed  chan struct{}
	// commits counts the batches begun (tests watch it).
	commits atomic.Int64
	// stop ends the background work (the PostgreSQL listener, SQLite
	// checkpoints) and waits for it.
	stop func()
}

// Option tunes Open.
type Option func(*options)

type options struct {
	logger       *slog.Logger
	maxOpenConns int
	slow         time.Duration
}

// WithLogger makes the store log slow queries (without their arguments,
// which may hold secrets) and gorm's own warnings to l. Without it the store
// logs nothing; failures are returned to the caller either way.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithSlowThreshold sets how long a query may take before WithLogger's
// logger hears about it (default 500ms).
func WithSlowThreshold(d time.Duration) Option { return func(o *options) { o.slow = d } }

// WithMaxOpenConns overrides the connection pool size (default 8 for
// SQLite, whose writers serialize anyway, and 20 for PostgreSQL).
func WithMaxOpenConns(n int) Option { return func(o *options) { o.maxOpenConns = n } }

// Open connects to dsn, which is "sqlite:PATH" or a "postgres://" /
// "postgresql://" URL, and migrates the schema to the latest version.
func Open(ctx context.Context, dsn string, opts ...Option) (*Store, error) {
	o := options{slow: 500 * time.Millisecond}
	for _, opt := range opts {
		opt(&o)
	}
	dialector, dialect, maxOpen, err := parseDSN(dsn)
	if err != nil {
		return nil, err
	}
	if o.maxOpenConns > 0 {
		maxOpen = o.maxOpenConns
	}

	var lg = logger.Discard.LogMode(logger.Silent)
	if o.logger != nil {
		lg = &slogLogger{l: o.logger, slow: o.slow}
	}
	db, err := gorm.Open(dialector, &gorm.Config{
		Logger:                 lg,
		TranslateError:         true,
		SkipDefaultTransaction: true,
		// Hot paths run the same few queries: prepare each once per connection.
		PrepareStmt: true,
		NowFunc:     func() time.Time { return time.Now().UTC() },
	})
	if err != nil {
		return nil, fmt.Errorf("storage: open %s: %w", dialect, err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, fmt.Errorf("storage: open %s: %w", dialect, err)
	}
	sqlDB.SetMaxOpenConns(maxOpen)
	sqlDB.SetMaxIdleConns(maxOpen)
	if dialect == DialectPostgres {
		sqlDB.SetConnMaxIdleTime(5 * time.Minute)
		sqlDB.SetConnMaxLifetime(30 * time.Minute)
	}
	s := &Store{db: db, sqlDB: sqlDB, dialect: dialect, dsn: dsn, stop: func() {}, inserts: make(chan *pendingInsert, maxBatch),
		closed: make(chan struct{})}
	if err := sqlDB.PingContext(ctx); err != nil {
		sqlDB.Close()
		return nil, fmt.Errorf("storage: connect %s: %w", dialect, err)
	}
	if err := s.migrate(ctx); err != nil {
		sqlDB.Close()
		return nil, err
	}
	if err := s.startHotPaths(ctx, o.logger); err != nil {
		sqlDB.Close()
		return nil, fmt.Errorf("storage: %w", err)
	}
	return s, nil
}

// CheckDSN reports whether Open would accept dsn's form, without
// connecting or creating anything: keyhook serve checks its configuration
// before it touches the database.
func CheckDSN(dsn string) error {
	_, _, _, err := parseDSN(dsn)
	return err
}

// parseDSN picks the dialect of dsn and its default pool size.
func parseDSN(dsn string) (gorm.Dialector, string, int, error) {
	switch {
	case strings.HasPrefix(dsn, "sqlite:"):
		path := strings.TrimPrefix(dsn, "sqlite:")
		if path == "" {
			return nil, "", 0, errors.New("storage: sqlite DSN has no path (want sqlite:PATH)")
		}
		if strings.HasPrefix(path, ":memory:") || strings.HasPrefix(path, "file:") {
			return nil, "", 0, fmt.Errorf("storage: sqlite DSN %q: want sqlite:PATH with a file path", dsn)
		}
		return sqlite.Open(sqliteDSN(path)), DialectSQLite, 8, nil
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		// pgconn's parser is the one the driver uses; its errors
		// leave the password out.
		if _, err := pgconn.ParseConfig(dsn); err != nil {
			return nil, "", 0, fmt.Errorf("storage: %w", err)
		}
		return postgres.Open(dsn), DialectPostgres, 20, nil
	}
	return nil, "", 0, errors.New("storage: unsupported DSN: want sqlite:PATH or postgres://...")
}

// startHotPaths prepares the hot statements and starts the token cache
// with its change counters (tokencache.go), and on SQLite the checkpointer.
func (s *Store) startHotPaths(ctx context.Context, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	q := "SELECT " + tokenColumns + " FROM tokens WHERE id = ?"
	if s.dialect == DialectPostgres {
		q = "SELECT " + tokenColumns + " FROM tokens WHERE id = $1"
	}
	var err error
	if s.stmts.tokenByID, err = s.sqlDB.PrepareContext(ctx, q); err != nil {
		return err
	}
	if s.dialect == DialectSQLite {
		ins := "INSERT INTO tokens (" + tokenColumns + ") VALUES (?" + strings.Repeat(", ?", tokenColumnCount-1) + ")"
		if s.stmts.insertToken, err = s.sqlDB.PrepareContext(ctx, ins); err != nil {
			return err
		}
	}
	bg, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { s.inserter(bg) })
	switch s.dialect {
	case DialectSQLite:
		path := strings.TrimPrefix(s.dsn, "sqlite:")
		g, err := openSharedCounters(path+"-keyhook-tokens", log)
		if err != nil {
			cancel()
			return err
		}
		s.tokenCache = newTokenCache(g)
		wg.Go(func() { s.checkpoints(bg, path+"-wal", log) })
	case DialectPostgres:
		g := localCounters()
		s.tokenCache = newTokenCache(g)
		ready := make(chan struct{})
		wg.Go(func() { listen(bg, s.dsn, g, log, ready) })
		// Start with the cache on when the listener comes up promptly;
		// until then lookups read the database.
		select {
		case <-ready:
		case <-time.After(5 * time.Second):
		}
	}
	var once sync.Once
	s.stop = func() {
		once.Do(func() {
			close(s.closed)
			cancel()
			wg.Wait()
		})
	}
	return nil
}

// sqliteDSN builds the go-sqlite3 DSN for a database file: WAL so readers do
// not block the writer, a busy timeout so writers wait instead of failing,
// foreign keys for ON DELETE CASCADE, and BEGIN IMMEDIATE so a transaction
// takes the write lock up front (read-then-write transactions cannot then
// deadlock with SQLITE_BUSY halfway). secure_delete zeroes what a
// delete or an update frees, so that a deleted client, a resealed key
// (docs/keys.md) or a purged token leaves nothing readable in the file.
func sqliteDSN(path string) string {
	// The path is part of a file: URI; escape what URIs give meaning to.
	esc := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	return "file:" + esc + "?_journal_mode=WAL&_busy_timeout=10000&_foreign_keys=on&_txlock=immediate&_synchronous=NORMAL&_secure_delete=on"
}

// Stores returns s as every engine store.
func (s *Store) Stores() engine.Stores {
	return engine.Stores{
		Clients:    s,
		Tokens:     s,
		Keys:       s,
		Properties: s,
		JTIs:       s,
		Scripts:    s,
		Users:      s,
		Codes:      s,
		Secrets:    s,
		Sessions:   s,
		Pushed:     s,
		Devices:    s,

		Registration: s,

		ScriptVersions: s,
		TrustedIssuers: s,
	}
}

// Close stops the store's background work and closes the connection pool.
func (s *Store) Close() error {
	s.stop()
	for _, st := range []*sql.Stmt{s.stmts.tokenByID, s.stmts.insertToken} {
		if st != nil {
			st.Close()
		}
	}
	err := s.sqlDB.Close()
	if s.tokenCache != nil {
		if cerr := s.tokenCache.gen.close(); err == nil {
			err = cerr
		}
	}
	return err
}

// Ping checks that the database answers, for readiness probes.
func (s *Store) Ping(ctx context.Context) error {
	sqlDB, err := s.db.DB()
	if err != nil {
		return err
	}
	return sqlDB.PingContext(ctx)
}

// Dialect is DialectSQLite or DialectPostgres.
func (s *Store) Dialect() string { return s.dialect }

// slogLogger is a gorm logger that reports only slow queries, without their
// arguments, and gorm's own messages. Query errors are not logged: they are
// returned, and some (duplicate keys) are expected answers.
type slogLogger struct {
	l    *slog.Logger
	slow time.Duration
}

func (g *slogLogger) LogMode(logger.LogLevel) logger.Interface { return g }

func (g *slogLogger) Info(ctx context.Context, msg string, args ...any) {
	g.l.InfoContext(ctx, fmt.Sprintf(msg, args...))
}

func (g *slogLogger) Warn(ctx context.Context, msg string, args ...any) {
	g.l.WarnContext(ctx, fmt.Sprintf(msg, args...))
}

func (g *slogLogger) Error(ctx context.Context, msg string, args ...any) {
	g.l.ErrorContext(ctx, fmt.Sprintf(msg, args...))
}

func (g *slogLogger) Trace(ctx context.Context, begin time.Time, fc func() (string, int64), _ error) {
	if g.slow <= 0 {
		return
	}
	if d := time.Since(begin); d > g.slow {
		sql, rows := fc()
		g.l.WarnContext(ctx, "slow query", "duration", d, "sql", sql, "rows", rows)
	}
}

// ParamsFilter drops query arguments so that logged SQL never carries
// secrets, hashes or claims.
func (g *slogLogger) ParamsFilter(_ context.Context, sql string, _ ...any) (string, []any) {
	return sql, nil
}

// translate maps gorm errors onto the engine's sentinels.
func translate(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, gorm.ErrDuplicatedKey):
		return fmt.Errorf("%w: %w", engine.ErrConflict, err)
	case errors.Is(err, gorm.ErrRecordNotFound):
		return engine.ErrNotFound
	}
	return err
}

// retryTransient runs op again, a few times, when PostgreSQL aborts it
// for a deadlock (40P01) or a serialization failure (40001): both are
// verdicts on timing, not on the request. Concurrent uses of one refresh
// token revoke the same family rows at once, which can end in a deadlock.
func retryTransient(ctx context.Context, op func() error) error {
	var err error
	for attempt := 0; attempt < 4; attempt++ {
		if err = op(); err == nil || !transient(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt+1) * 5 * time.Millisecond):
		}
	}
	return err
}

func transient(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40P01" || pe.Code == "40001")
}

// convertAll converts rows to engine values, stopping at the first error.
func convertAll[R, T any](rows []R, conv func(*R) (T, error)) ([]T, error) {
	out := make([]T, 0, len(rows))
	for i := range rows {
		v, err := conv(&rows[i])
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// changedOne is the outcome of an update or delete of one record by key:
// the database's error, or engine.ErrNotFound when no row matched.
func changedOne(res *gorm.DB) error {
	if res.Error != nil {
		return translate(res.Error)
	}
	if res.RowsAffected == 0 {
		return engine.ErrNotFound
	}
	return nil
}
