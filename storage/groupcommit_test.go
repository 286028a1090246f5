package storage

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/keyhook/keyhook/engine"
)

// TestGroupCommit: issuances that wait behind a busy database commit
// together, each caller hears back only after its tokens are stored, and
// one failing issuance in a batch fails alone.
func TestGroupCommit(t *testing.T) {
	ctx := context.Background()
	dsn := "sqlite:" + filepath.Join(t.TempDir(), "k.db")
	st := mustOpen(t, dsn)
	noErr(t, "CreateClient", st.CreateClient(ctx, testClient("c")))
	future := time.Now().Add(time.Hour)
	noErr(t, "CreateTokens", st.CreateTokens(ctx, testToken("taken", "c", engine.KindAccess, "", future)))

	// Another connection holds the write lock, so the first batch waits
	// in the database while the others queue behind it.
	other := mustOpen(t, dsn)
	lock, err := other.sqlDB.Conn(ctx)
	noErr(t, "Conn", err)
	defer lock.Close()
	_, err = lock.ExecContext(ctx, "BEGIN IMMEDIATE")
	noErr(t, "BEGIN IMMEDIATE", err)
	before := st.commits.Load()

	const n = 16
	errs := make([]error, n)
	var wg sync.WaitGroup
	issue := func(i int) {
		id := fmt.Sprintf("t%d", i)
		if i == 7 {
			id = "taken" // a duplicate id: this issuance fails
		}
		wg.Go(func() {
			errs[i] = st.CreateTokens(ctx, testToken(id, "c", engine.KindAccess, "", future),
				testToken(id+"-refresh", "c", engine.KindRefresh, "", future))
		})
	}
	waitFor := func(what string, cond func() bool) {
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(time.Millisecond)
		}
	}
	issue(0)
	waitFor("the first batch", func() bool { return st.commits.Load() == before+1 })
	for i := 1; i < n; i++ {
		issue(i)
	}
	waitFor("the others to queue", func() bool { return len(st.inserts) == n-1 })
	_, err = lock.ExecContext(ctx, "ROLLBACK")
	noErr(t, "ROLLBACK", err)
	wg.Wait()

	for i, err := range errs {
		if i == 7 {
			isErr(t, "the duplicate issuance", err, engine.ErrConflict)
			continue
		}
		noErr(t, fmt.Sprintf("issuance %d", i), err)
		for _, id := range []string{fmt.Sprintf("t%d", i), fmt.Sprintf("t%d-refresh", i)} {
			_, err := st.TokenByID(ctx, id)
			noErr(t, "stored "+id, err)
		}
	}
	if _, err := st.TokenByID(ctx, "taken-refresh"); err == nil {
		t.Error("the failed issuance's other token was stored")
	}
	// The first issuance's batch, then one batch of the other 15, which
	// failed and was retried one by one: at most 2 + 15 commits; without
	// batching there would be 16 and no retries.
	if got := st.commits.Load() - before; got != 2+(n-1) {
		t.Errorf("%d transactions, want 2 batches and %d retries", got, n-1)
	}
}
