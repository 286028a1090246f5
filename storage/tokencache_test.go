package storage

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/keyhook/keyhook/engine"
)

// TestTokenCache checks that LookupToken, which may answer from memory,
// never answers a token as it was before a change made through any Store
// on the same database (tokencache.go): on SQLite at once, on PostgreSQL
// once the change's notification has arrived.
func TestTokenCache(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		runTokenCache(t, func(t *testing.T) string { return "sqlite:" + filepath.Join(t.TempDir(), "k.db") })
	})
	t.Run("postgres", func(t *testing.T) {
		base := pgBase(t)
		runTokenCache(t, func(t *testing.T) string {
			dsn, drop, err := NewTestDSN(context.Background(), base)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = drop() })
			return dsn
		})
	})
}

func runTokenCache(t *testing.T, newDSN func(t *testing.T) string) {
	ctx := context.Background()
	future := time.Now().Add(time.Hour).UTC()
	// setup opens two stores on one new database (two instances) with a
	// client, an access token "at" and a refresh token "rt" of family
	// "f", both read once through a so that a caches them.
	setup := func(t *testing.T) (a, b *Store) {
		dsn := newDSN(t)
		a, b = mustOpen(t, dsn), mustOpen(t, dsn)
		noErr(t, "CreateClient", a.CreateClient(ctx, testClient("c")))
		noErr(t, "CreateTokens", a.CreateTokens(ctx,
			testToken("at", "c", engine.KindAccess, "f", future),
			testToken("rt", "c", engine.KindRefresh, "f", future)))
		for _, id := range []string{"at", "rt"} {
			got, err := a.LookupToken(ctx, id)
			noErr(t, "LookupToken", err)
			if got.Revoked || !got.UsedAt.IsZero() {
				t.Fatalf("%s is not fresh: %+v", id, got)
			}
		}
		return a, b
	}
	// seen waits for a's LookupToken of id to satisfy ok: at once on
	// SQLite, within 10 s on PostgreSQL (the notification's way).
	seen := func(t *testing.T, a *Store, id string, what string, ok func(*engine.Token, error) bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			got, err := a.LookupToken(ctx, id)
			if ok(got, err) {
				return
			}
			if a.Dialect() == DialectSQLite || time.Now().After(deadline) {
				t.Fatalf("%s: a's LookupToken(%s) = %+v, %v", what, id, got, err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	revoked := func(tok *engine.Token, err error) bool { return err == nil && tok.Revoked }
	gone := func(_ *engine.Token, err error) bool { return errors.Is(err, engine.ErrNotFound) }

	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, a, b *Store)
	}{
		{"the cache answers repeated reads", func(t *testing.T, a, b *Store) {
			// A change behind the store's back (not through changeTokens)
			// is not seen: proof that the second read came from memory.
			noErr(t, "raw update", a.db.Exec("UPDATE tokens SET scope = 'changed' WHERE id = 'at'").Error)
			got, err := a.LookupToken(ctx, "at")
			noErr(t, "LookupToken", err)
			equal(t, "cached scope", got.Scope, "read")
			direct, err := a.TokenByID(ctx, "at")
			noErr(t, "TokenByID", err)
			equal(t, "TokenByID reads the database", direct.Scope, "changed")
		}},
		{"revoked here", func(t *testing.T, a, b *Store) {
			noErr(t, "RevokeToken", a.RevokeToken(ctx, "at"))
			got, err := a.LookupToken(ctx, "at")
			if !revoked(got, err) {
				t.Fatalf("after a revoked it: %+v %v", got, err)
			}
		}},
		{"revoked by another instance", func(t *testing.T, a, b *Store) {
			noErr(t, "RevokeToken", b.RevokeToken(ctx, "at"))
			seen(t, a, "at", "revoked through b", revoked)
		}},
		{"family revoked by another instance", func(t *testing.T, a, b *Store) {
			noErr(t, "RevokeFamily", b.RevokeFamily(ctx, "f"))
			seen(t, a, "at", "family revoked through b", revoked)
			seen(t, a, "rt", "family revoked through b", revoked)
		}},
		{"refresh token rotated by another instance", func(t *testing.T, a, b *Store) {
			ok, err := b.RotateRefreshToken(ctx, "rt", time.Now(), nil, testToken("rt2", "c", engine.KindRefresh, "f", future))
			if err != nil || !ok {
				t.Fatalf("RotateRefreshToken = %v, %v", ok, err)
			}
			seen(t, a, "rt", "rotated through b", func(tok *engine.Token, err error) bool { return err == nil && !tok.UsedAt.IsZero() })
		}},
		{"client deleted by another instance", func(t *testing.T, a, b *Store) {
			noErr(t, "DeleteClient", b.DeleteClient(ctx, "c"))
			seen(t, a, "at", "client deleted through b", gone)
		}},
		{"purged by another instance", func(t *testing.T, a, b *Store) {
			noErr(t, "CreateTokens", a.CreateTokens(ctx, testToken("old", "c", engine.KindAccess, "", time.Now().Add(-time.Hour))))
			_, err := a.LookupToken(ctx, "old")
			noErr(t, "LookupToken old", err)
			if _, err := b.PurgeTokens(ctx, time.Now()); err != nil {
				t.Fatal(err)
			}
			seen(t, a, "old", "purged through b", gone)
		}},
		{"a change left under way turns the cache off", func(t *testing.T, a, b *Store) {
			if a.Dialect() != DialectSQLite {
				t.Skip("on PostgreSQL a change reaches other instances at its commit")
			}
			// b dies between the start and the end of a change: its
			// end never comes.
			b.tokenCache.gen.begin()
			noErr(t, "raw update", a.db.Exec("UPDATE tokens SET revoked = TRUE WHERE id = 'at'").Error)
			seen(t, a, "at", "while a change is under way", revoked)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := setup(t)
			tc.fn(t, a, b)
		})
	}
}

// TestTokenCacheKeepsOnlyTokens: an attacker guessing token values makes
// lookups of ids that do not exist; none is remembered (the cache does
// not grow with them), and a token stored after a lookup missed it is
// found.
func TestTokenCacheKeepsOnlyTokens(t *testing.T) {
	ctx := context.Background()
	st := mustOpen(t, "sqlite:"+filepath.Join(t.TempDir(), "k.db"))
	noErr(t, "CreateClient", st.CreateClient(ctx, testClient("c")))
	for i := range 1000 {
		_, err := st.LookupToken(ctx, fmt.Sprintf("guess-%d", i))
		isErr(t, "LookupToken of a guess", err, engine.ErrNotFound)
	}
	if n := st.tokenCache.entries.Len(); n != 0 {
		t.Fatalf("%d misses cached", n)
	}
	noErr(t, "CreateTokens", st.CreateTokens(ctx, testToken("guess-7", "c", engine.KindAccess, "", time.Now().Add(time.Hour))))
	got, err := st.LookupToken(ctx, "guess-7")
	noErr(t, "LookupToken after the token was stored", err)
	equal(t, "found", got.ID, "guess-7")
}

// TestTokenCacheCountersReset: a process that died during a change leaves
// the SQLite counters unequal; the next process to open the database
// alone resets them, and its cache works again.
func TestTokenCacheCountersReset(t *testing.T) {
	ctx := context.Background()
	dsn := "sqlite:" + filepath.Join(t.TempDir(), "k.db")
	st, err := Open(ctx, dsn)
	noErr(t, "Open", err)
	st.tokenCache.gen.begin() // never ended
	if _, ok := st.tokenCache.gen.snapshot(); ok {
		t.Fatal("a change under way left the cache on")
	}
	noErr(t, "Close", st.Close())
	again := mustOpen(t, dsn)
	if _, ok := again.tokenCache.gen.snapshot(); !ok {
		t.Fatal("opened alone, the store did not reset the counters")
	}
}

// TestTokenCacheUseAfterClose: a store used after Close (a background
// loop's last round) answers an error; it does not crash the process.
func TestTokenCacheUseAfterClose(t *testing.T) {
	ctx := context.Background()
	st, err := Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "k.db"))
	noErr(t, "Open", err)
	noErr(t, "Close", st.Close())
	if err := st.RevokeToken(ctx, "x"); err == nil {
		t.Error("RevokeToken after Close succeeded")
	}
	if _, err := st.PurgeTokens(ctx, time.Now()); err == nil {
		t.Error("PurgeTokens after Close succeeded")
	}
	if _, err := st.LookupToken(ctx, "x"); err == nil {
		t.Error("LookupToken after Close succeeded")
	}
	if err := st.CreateTokens(ctx, testToken("t", "c", engine.KindAccess, "", time.Now().Add(time.Hour))); err == nil {
		t.Error("CreateTokens after Close succeeded")
	}
}

// TestTokenCacheListenerLost: on PostgreSQL a lost LISTEN connection may
// have missed notifications; once the listener is back, nothing cached
// before is used.
func TestTokenCacheListenerLost(t *testing.T) {
	base := pgBase(t)
	ctx := context.Background()
	dsn, drop, err := NewTestDSN(ctx, base)
	noErr(t, "NewTestDSN", err)
	t.Cleanup(func() { _ = drop() })
	a := mustOpen(t, dsn)
	noErr(t, "CreateClient", a.CreateClient(ctx, testClient("c")))
	noErr(t, "CreateTokens", a.CreateTokens(ctx, testToken("at", "c", engine.KindAccess, "", time.Now().Add(time.Hour))))
	_, err = a.LookupToken(ctx, "at")
	noErr(t, "LookupToken", err)
	// End a's listener, then change the row without a notification
	// (as if it were sent while the listener was down).
	noErr(t, "terminate", a.db.Exec(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND query = 'LISTEN `+tokensChannel+`'`).Error)
	noErr(t, "raw update", a.db.Exec("UPDATE tokens SET revoked = TRUE WHERE id = 'at'").Error)
	deadline := time.Now().Add(15 * time.Second)
	for {
		got, err := a.LookupToken(ctx, "at")
		noErr(t, "LookupToken", err)
		if got.Revoked {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the change made while the listener was down is never seen")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// And the cache is on again.
	deadline = time.Now().Add(15 * time.Second)
	for {
		if _, ok := a.tokenCache.gen.snapshot(); ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the listener did not come back")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
