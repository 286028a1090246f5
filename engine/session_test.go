package engine_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyhook/keyhook/engine"
	"github.com/keyhook/keyhook/storage"
)

// failingSessions is a session store whose reads fail.
type failingSessions struct{ engine.SessionStore }

func (failingSessions) SessionByID(context.Context, string) (*engine.Session, error) {
	return nil, errors.New("database gone")
}

// TestResume checks which authorization requests a login session answers
// without the form (OIDC Core §3.1.2.1, §3.1.2.6), on a fixed clock: the
// request's prompt, max_age and login_hint against the session's age and
// user, and what a session store failure becomes.
func TestResume(t *testing.T) {
	ctx := context.Background()
	store, err := storage.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	cfg := engine.Config{Issuer: "http://keyhook.test", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: clock,
		SessionLifetime: time.Hour}
	cfg.LoginThrottle.Free = -1
	e, err := engine.New(ctx, cfg, store.Stores())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateUser(ctx, &engine.UserDoc{Username: "alice", Password: "alice-pw"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateClient(ctx, &engine.ClientDoc{ClientID: "app", TokenEndpointAuthMethod: "none",
		GrantTypes: []string{"authorization_code"}, RedirectURIs: []string{"https://app.example/cb"}, Scope: "openid"}); err != nil {
		t.Fatal(err)
	}
	authorize := func(t *testing.T, e *engine.Engine, prompt, maxAge, hint string) *engine.Authorization {
		t.Helper()
		a, err := e.Authorize(ctx, &engine.AuthorizeRequest{ResponseType: "code", ClientID: "app", State: "s",
			CodeChallenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", CodeChallengeMethod: "S256",
			Prompt: prompt, MaxAge: maxAge, LoginHint: hint})
		if err != nil {
			t.Fatalf("Authorize: %v", err)
		}
		return a
	}
	in, err := e.Login(ctx, authorize(t, e, "", "", ""), "alice", "alice-pw", "")
	if err != nil || in.SessionValue == "" || in.SessionLifetime != time.Hour {
		t.Fatalf("Login: %+v %v", in, err)
	}

	const (
		code  = "code"
		form  = "form"
		login = "login_required"
	)
	for _, tc := range []struct {
		name                 string
		age                  time.Duration
		session              string
		prompt, maxAge, hint string
		want                 string
	}{
		{"fresh session", 0, in.SessionValue, "", "", "", code},
		{"no session", 0, "", "", "", "", form},
		{"no session, prompt=none", 0, "", "none", "", "", login},
		{"unknown session", 0, "x" + in.SessionValue, "none", "", "", login},
		{"prompt=login", 0, in.SessionValue, "login", "", "", form},
		{"prompt=consent", 0, in.SessionValue, "consent", "", "", code},
		{"max_age equal to the age", 10 * time.Minute, in.SessionValue, "", "600", "", code},
		{"max_age a second short", 10*time.Minute + time.Second, in.SessionValue, "", "600", "", form},
		{"max_age a second short, prompt=none", 10*time.Minute + time.Second, in.SessionValue, "none", "600", "", login},
		{"max_age=0", 0, in.SessionValue, "", "0", "", form},
		{"login_hint of the user", 0, in.SessionValue, "none", "", "alice", code},
		{"login_hint of another", 0, in.SessionValue, "", "", "bob", form},
		{"last second of the session", time.Hour - time.Second, in.SessionValue, "none", "", "", code},
		{"expired", time.Hour, in.SessionValue, "none", "", "", login},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now = time.Unix(1_800_000_000, 0).Add(tc.age)
			defer func() { now = time.Unix(1_800_000_000, 0) }()
			loc, err := e.Resume(ctx, authorize(t, e, tc.prompt, tc.maxAge, tc.hint), tc.session)
			var re *engine.RedirectError
			switch tc.want {
			case code:
				u, _ := url.Parse(loc)
				if err != nil || u.Query().Get("code") == "" || u.Query().Get("iss") != "http://keyhook.test" {
					t.Fatalf("want a code, got %q %v", loc, err)
				}
			case form:
				if !errors.Is(err, engine.ErrLoginNeeded) {
					t.Fatalf("want the form, got %q %v", loc, err)
				}
			default:
				if !errors.As(err, &re) || re.Err.Code != engine.ErrorCode(tc.want) ||
					!strings.Contains(re.Location("http://keyhook.test"), "error="+tc.want) {
					t.Fatalf("want %s, got %q %v", tc.want, loc, err)
				}
			}
		})
	}

	t.Run("an expired session is gone for good", func(t *testing.T) {
		if _, err := e.Resume(ctx, authorize(t, e, "none", "", ""), in.SessionValue); err == nil {
			t.Fatal("the session expired in the table above, and was deleted then")
		}
	})

	t.Run("store failure", func(t *testing.T) {
		st := store.Stores()
		st.Sessions = failingSessions{st.Sessions}
		broken, err := engine.New(ctx, cfg, st)
		if err != nil {
			t.Fatal(err)
		}
		_, err = broken.Resume(ctx, authorize(t, broken, "none", "", ""), "some-value")
		var re *engine.RedirectError
		if !errors.Is(err, engine.CodeTemporarilyUnavailable) || errors.As(err, &re) {
			t.Fatalf("want temporarily_unavailable shown as a page, got %v", err)
		}
	})
}

// TestSessionsPerUser checks that a sign-in ends the user's oldest login
// sessions beyond engine.MaxSessionsPerUser, and only theirs: a browser
// without a cookie jar signing in in a loop cannot fill the table.
func TestSessionsPerUser(t *testing.T) {
	ctx := context.Background()
	store, err := storage.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	now := time.Unix(1_800_000_000, 0)
	cfg := engine.Config{Issuer: "http://keyhook.test", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now: func() time.Time { return now }}
	cfg.LoginThrottle.Free = -1
	e, err := engine.New(ctx, cfg, store.Stores())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateClient(ctx, &engine.ClientDoc{ClientID: "app", TokenEndpointAuthMethod: "none",
		GrantTypes: []string{"authorization_code"}, RedirectURIs: []string{"https://app.example/cb"}, Scope: "openid"}); err != nil {
		t.Fatal(err)
	}
	a, err := e.Authorize(ctx, &engine.AuthorizeRequest{ResponseType: "code", ClientID: "app", Prompt: "none",
		CodeChallenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", CodeChallengeMethod: "S256"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateUser(ctx, &engine.UserDoc{Username: "bystander", Password: "pw"}); err != nil {
		t.Fatal(err)
	}
	if err := store.CreateSession(ctx, &engine.Session{ID: "bystander-1", Username: "bystander",
		AuthTime: now.Add(-24 * time.Hour), ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	const max = engine.MaxSessionsPerUser
	for _, tc := range []struct {
		name  string
		prior int // sessions the user has before signing in, oldest first
		ended int // how many of them the sign-in ends
	}{
		{"no session before", 0, 0},
		{"one short of the limit", max - 1, 0},
		{"at the limit", max, 1},
		{"past the limit", max + 5, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user := strings.ReplaceAll(tc.name, " ", "-")
			if _, err := e.CreateUser(ctx, &engine.UserDoc{Username: user, Password: "pw"}); err != nil {
				t.Fatal(err)
			}
			ids := make([]string, tc.prior)
			for i := range ids {
				ids[i] = fmt.Sprintf("%s-%03d", user, i)
				if err := store.CreateSession(ctx, &engine.Session{ID: ids[i], Username: user,
					AuthTime: now.Add(time.Duration(i-tc.prior) * time.Minute), ExpiresAt: now.Add(time.Hour)}); err != nil {
					t.Fatal(err)
				}
			}
			in, err := e.Login(ctx, a, user, "pw", "")
			if err != nil || in.SessionValue == "" {
				t.Fatalf("Login: %+v %v", in, err)
			}
			for i, id := range ids {
				_, err := store.SessionByID(ctx, id)
				if gone := errors.Is(err, engine.ErrNotFound); gone != (i < tc.ended) {
					t.Errorf("session %d of %d (oldest first): gone %v, want %v (%v)", i, tc.prior, gone, i < tc.ended, err)
				}
			}
			if loc, err := e.Resume(ctx, a, in.SessionValue); err != nil || !strings.Contains(loc, "code=") {
				t.Fatalf("the new session does not answer: %q %v", loc, err)
			}
			// Another user's sessions are neither counted nor ended.
			if _, err := store.SessionByID(ctx, "bystander-1"); err != nil {
				t.Fatalf("another user's session: %v", err)
			}
		})
	}
}
