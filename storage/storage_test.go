package storage

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// TestSQLitePragmas checks that the DSN's settings reach every pooled
// connection, not just the first.
func TestSQLitePragmas(t *testing.T) {
	ctx := context.Background()
	st := mustOpen(t, "sqlite:"+filepath.Join(t.TempDir(), "odd ?#% name.db"))
	sqlDB, err := st.db.DB()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		conn, err := sqlDB.Conn(ctx) // held open, so each is a distinct connection
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		for _, p := range []struct{ pragma, want string }{
			{"journal_mode", "wal"},
			{"foreign_keys", "1"},
			{"busy_timeout", "10000"},
			{"synchronous", "1"}, // NORMAL
		} {
			var got string
			if err := conn.QueryRowContext(ctx, "PRAGMA "+p.pragma).Scan(&got); err != nil {
				t.Fatalf("conn %d PRAGMA %s: %v", i, p.pragma, err)
			}
			if strings.ToLower(got) != p.want {
				t.Errorf("conn %d PRAGMA %s = %q, want %q", i, p.pragma, got, p.want)
			}
		}
	}
}

func TestOpenRejectsDSN(t *testing.T) {
	for _, dsn := range []string{"", "mysql://x", "sqlite:", "sqlite::memory:", "/tmp/x.db", "file:x.db"} {
		if st, err := Open(context.Background(), dsn); err == nil {
			st.Close()
			t.Errorf("Open(%q) succeeded", dsn)
		}
	}
}

func TestNewTestDSN(t *testing.T) {
	base := pgBase(t)
	ctx := context.Background()
	dsn, drop, err := NewTestDSN(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	st, err := Open(ctx, dsn)
	if err != nil {
		drop()
		t.Fatal(err)
	}
	var name string
	if err := st.db.Raw("SELECT current_database()").Scan(&name).Error; err != nil {
		t.Error(err)
	}
	if !strings.HasPrefix(name, "kh_test_") {
		t.Errorf("connected to %q", name)
	}
	// Dropping works even with the store still connected (FORCE).
	if err := drop(); err != nil {
		t.Fatal(err)
	}
	st.Close()
	if st2, err := Open(ctx, dsn); err == nil {
		st2.Close()
		t.Error("database still exists after drop")
	}
	if _, _, err := NewTestDSN(ctx, "sqlite:x"); err == nil {
		t.Error("NewTestDSN accepted a sqlite DSN")
	}
}
