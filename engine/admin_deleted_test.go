package engine_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/keyhook/keyhook/engine"
	"github.com/keyhook/keyhook/hooks"
	"github.com/keyhook/keyhook/storage"
)

// The stores below delete the record just before the engine updates it,
// as another admin (or instance) would between the engine's read and its
// write.
type (
	vanishingClients struct{ engine.ClientStore }
	vanishingScripts struct{ engine.ScriptStore }
	vanishingUsers   struct{ engine.UserStore }
)

func (s vanishingClients) UpdateClient(ctx context.Context, c *engine.Client) error {
	_ = s.DeleteClient(ctx, c.ID)
	return s.ClientStore.UpdateClient(ctx, c)
}

func (s vanishingScripts) UpdateScript(ctx context.Context, sc *hooks.Script) error {
	_ = s.DeleteScript(ctx, sc.Name)
	return s.ScriptStore.UpdateScript(ctx, sc)
}

func (s vanishingUsers) UpdateUser(ctx context.Context, u *engine.User) error {
	_ = s.DeleteUser(ctx, u.Username)
	return s.UserStore.UpdateUser(ctx, u)
}

// TestReplaceOfADeletedRecordIsNotFound checks that replacing a client,
// script or user deleted meanwhile answers not found (404), not a store
// failure (503).
func TestReplaceOfADeletedRecordIsNotFound(t *testing.T) {
	ctx := context.Background()
	store, err := storage.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	st := store.Stores()
	st.Clients, st.Scripts, st.Users = vanishingClients{st.Clients}, vanishingScripts{st.Scripts}, vanishingUsers{st.Users}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	e, err := engine.New(ctx, engine.Config{Issuer: "http://keyhook.test", Logger: log}, st)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateClient(ctx, &engine.ClientDoc{ClientID: "c", ClientSecret: "secret-secret"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateScript(ctx, &engine.ScriptDoc{Name: "s", Type: "introspection", Source: "function modifyResponse() { return true }"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateUser(ctx, &engine.UserDoc{Username: "u", Password: "pw"}); err != nil {
		t.Fatal(err)
	}
	for name, replace := range map[string]func() error{
		"client": func() error {
			_, err := e.ReplaceClient(ctx, "c", &engine.ClientDoc{ClientSecret: "secret-secret"})
			return err
		},
		"rotated secret": func() error {
			if _, err := e.CreateClient(ctx, &engine.ClientDoc{ClientID: "r", ClientSecret: "secret-secret"}); err != nil {
				return err
			}
			_, err := e.RotateClientSecret(ctx, "r")
			return err
		},
		"script": func() error {
			_, err := e.ReplaceScript(ctx, "s", &engine.ScriptDoc{Type: "introspection", Source: "function modifyResponse() { return false }"})
			return err
		},
		"user": func() error {
			_, err := e.ReplaceUser(ctx, "u", &engine.UserDoc{Claims: map[string]any{"x": 1}})
			return err
		},
	} {
		t.Run(name, func(t *testing.T) {
			var oe *engine.Error
			if err := replace(); !errors.As(err, &oe) || oe.Code != engine.CodeNotFound {
				t.Fatalf("err = %v, want %s", err, engine.CodeNotFound)
			}
		})
	}
}

// TestErrorsCompareByCode checks that errors.Is finds an *engine.Error by
// its OAuth code, however deep it is wrapped, and only by its code.
func TestErrorsCompareByCode(t *testing.T) {
	notFound := engine.Errorf(engine.CodeNotFound, "client %q does not exist", "x")
	for _, tc := range []struct {
		name   string
		err    error
		target error
		want   bool
	}{
		{"same code", notFound, engine.CodeNotFound, true},
		{"wrapped", fmt.Errorf("replace: %w", notFound), engine.CodeNotFound, true},
		{"joined", errors.Join(errors.New("x"), notFound), engine.CodeNotFound, true},
		{"another code", notFound, engine.CodeConflict, false},
		{"a fresh error of the same code", fmt.Errorf("x: %w", notFound), engine.Errorf(engine.CodeNotFound, "other text"), true},
		{"a fresh error of another code", notFound, engine.Errorf(engine.CodeConflict, "x"), false},
		{"its cause", engine.Wrap(engine.CodeTemporarilyUnavailable, engine.ErrNotFound, "x"), engine.ErrNotFound, true},
		{"not an engine error", errors.New("not_found"), engine.CodeNotFound, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := errors.Is(tc.err, tc.target); got != tc.want {
				t.Fatalf("errors.Is(%v, %v) = %v", tc.err, tc.target, got)
			}
		})
	}
}
