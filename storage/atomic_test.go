package storage

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/keyhook/keyhook/engine"
)

// TestAtomically: the writes made in Atomically commit together or not at
// all, a nested call joins the transaction, and an expected conflict
// inside it (another instance created the bootstrap admin meanwhile)
// leaves the transaction usable, on PostgreSQL too, which otherwise
// aborts a transaction at its first error.
func TestAtomically(t *testing.T) {
	boom := errors.New("boom")
	for _, db := range []struct {
		name string
		open func(t *testing.T) *Store
	}{
		{"sqlite", func(t *testing.T) *Store { return mustOpen(t, "sqlite:"+filepath.Join(t.TempDir(), "keyhook.db")) }},
		{"postgres", func(t *testing.T) *Store {
			dsn, drop, err := NewTestDSN(context.Background(), pgBase(t))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := drop(); err != nil {
					t.Errorf("drop: %v", err)
				}
			})
			return mustOpen(t, dsn)
		}},
	} {
		t.Run(db.name, func(t *testing.T) {
			ctx := context.Background()
			for _, tc := range []struct {
				name    string
				fn      func(ctx context.Context, st *Store) error
				wantErr error
				present []string // clients there afterwards
				absent  []string
			}{
				{"an error rolls back every write", func(ctx context.Context, st *Store) error {
					noErr(t, "CreateClient", st.CreateClient(ctx, testClient("rolled-back")))
					noErr(t, "CreateUser", st.CreateUser(ctx, &engine.User{Username: "rolled-back"}))
					noErr(t, "SetProperties", st.SetProperties(ctx, map[string]string{"access_token_lifetime": "777"}))
					return boom
				}, boom, nil, []string{"rolled-back"}},
				{"nil commits", func(ctx context.Context, st *Store) error {
					return st.CreateClient(ctx, testClient("committed"))
				}, nil, []string{"committed"}, nil},
				{"a nested call joins the transaction", func(ctx context.Context, st *Store) error {
					noErr(t, "nested", st.Atomically(ctx, func(ctx context.Context) error {
						return st.CreateClient(ctx, testClient("nested"))
					}))
					return boom
				}, boom, nil, []string{"nested"}},
				{"a client's deletion rolls back too", func(ctx context.Context, st *Store) error {
					noErr(t, "DeleteClient", st.DeleteClient(ctx, "committed"))
					if _, ok := st.tokenCache.gen.snapshot(); ok {
						t.Error("the token cache counts no change under way before the transaction ends")
					}
					return boom
				}, boom, []string{"committed"}, nil},
				{"a client's deletion commits with the rest", func(ctx context.Context, st *Store) error {
					noErr(t, "DeleteClient", st.DeleteClient(ctx, "committed"))
					return st.CreateClient(ctx, testClient("after-delete"))
				}, nil, []string{"after-delete"}, []string{"committed"}},
				{"a conflict leaves the transaction usable", func(ctx context.Context, st *Store) error {
					isErr(t, "CreateClient of a taken id", st.CreateClient(ctx, testClient("committed")), engine.ErrConflict)
					isErr(t, "CreateUser of a taken name", st.CreateUser(ctx, &engine.User{Username: "taken"}), engine.ErrConflict)
					return st.CreateClient(ctx, testClient("after-conflict"))
				}, nil, []string{"committed", "after-conflict"}, nil},
			} {
				t.Run(tc.name, func(t *testing.T) {
					st := db.open(t)
					noErr(t, "CreateUser", st.CreateUser(ctx, &engine.User{Username: "taken"}))
					if tc.name != "nil commits" {
						noErr(t, "CreateClient", st.CreateClient(ctx, testClient("committed")))
					}
					if err := st.Atomically(ctx, func(ctx context.Context) error { return tc.fn(ctx, st) }); !errors.Is(err, tc.wantErr) {
						t.Fatalf("Atomically: %v, want %v", err, tc.wantErr)
					}
					for _, id := range tc.present {
						_, err := st.ClientByID(ctx, id)
						noErr(t, "client "+id, err)
					}
					for _, id := range tc.absent {
						_, err := st.ClientByID(ctx, id)
						isErr(t, "client "+id, err, engine.ErrNotFound)
						_, err = st.UserByName(ctx, id)
						isErr(t, "user "+id, err, engine.ErrNotFound)
					}
					props, err := st.Properties(ctx)
					noErr(t, "Properties", err)
					if props["access_token_lifetime"] == "777" {
						t.Error("a rolled-back property is stored")
					}
				})
			}
		})
	}
}
