package engine_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/keyhook/keyhook/engine"
	"github.com/keyhook/keyhook/storage"
)

// openStores opens a SQLite database in the test's temporary directory,
// closed when the test ends, and returns its stores.
func openStores(t testing.TB) engine.Stores {
	t.Helper()
	store, err := storage.Open(context.Background(), "sqlite:"+filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store.Stores()
}
