package engine_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyhook/keyhook/engine"
)

// lostAnswers is a token store whose rotations commit and then fail, as
// when the server dies between rotating a refresh token and answering:
// the client never sees the new pair.
type lostAnswers struct {
	engine.TokenStore
	on atomic.Bool
}

var errConnectionLost = errors.New("connection lost after commit")

func (s *lostAnswers) RotateRefreshToken(ctx context.Context, oldID string, now time.Time, succ *engine.Successor, next ...*engine.Token) (bool, error) {
	ok, err := s.TokenStore.RotateRefreshToken(ctx, oldID, now, succ, next...)
	if err == nil && ok && s.on.Load() {
		return false, errConnectionLost
	}
	return ok, err
}

// testClock is in jwksuri_test.go.

type reuseFixture struct {
	e      *engine.Engine
	tokens *lostAnswers
	clock  *testClock
}

func newReuseFixture(t *testing.T) *reuseFixture {
	t.Helper()
	ctx := context.Background()
	st := openStores(t)
	f := &reuseFixture{tokens: &lostAnswers{TokenStore: st.Tokens}, clock: &testClock{t: time.Now()}}
	st.Tokens = f.tokens
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var err error
	if f.e, err = engine.New(ctx, engine.Config{Issuer: "http://keyhook.test", Logger: log, Now: f.clock.now}, st); err != nil {
		t.Fatal(err)
	}
	if _, err := f.e.CreateUser(ctx, &engine.UserDoc{Username: "alice", Password: "alice-pw"}); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *reuseFixture) client(t *testing.T, id string, interval int64, jwt bool) {
	t.Helper()
	_, err := f.e.CreateClient(context.Background(), &engine.ClientDoc{ClientID: id, ClientSecret: id + "-secret",
		GrantTypes: []string{"password", "refresh_token"}, Scope: "openid api", AccessTokenAsJWT: jwt,
		RefreshTokenReuseInterval: interval})
	if err != nil {
		t.Fatal(err)
	}
}

func (f *reuseFixture) token(client string, req engine.TokenRequest) (*engine.TokenResponse, error) {
	req.Credentials = engine.ClientCredentials{Basic: true, BasicID: client, BasicSecret: client + "-secret"}
	return f.e.Token(context.Background(), &req)
}

func (f *reuseFixture) password(t *testing.T, client string) *engine.TokenResponse {
	t.Helper()
	resp, err := f.token(client, engine.TokenRequest{GrantType: engine.GrantPassword, Username: "alice", Password: "alice-pw",
		Scope: "openid api", ScopeGiven: true})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func (f *reuseFixture) refresh(client, rt string) (*engine.TokenResponse, error) {
	return f.token(client, engine.TokenRequest{GrantType: engine.GrantRefreshToken, RefreshToken: rt})
}

// lostRotation rotates rt with the answer lost.
func (f *reuseFixture) lostRotation(t *testing.T, client, rt string) {
	t.Helper()
	f.tokens.on.Store(true)
	defer f.tokens.on.Store(false)
	if _, err := f.refresh(client, rt); !errors.Is(err, errConnectionLost) {
		t.Fatalf("rotation with the answer lost: %v", err)
	}
}

func (f *reuseFixture) active(t *testing.T, client, token string) bool {
	t.Helper()
	in, err := f.e.Introspect(context.Background(), &engine.IntrospectionRequest{Token: token,
		Credentials: engine.ClientCredentials{Basic: true, BasicID: client, BasicSecret: client + "-secret"}})
	if err != nil {
		t.Fatal(err)
	}
	return in.Fields["active"] == true
}

func wantInvalidGrant(t *testing.T, err error) {
	t.Helper()
	var oe *engine.Error
	if !errors.As(err, &oe) || oe.Code != engine.CodeInvalidGrant {
		t.Fatalf("err = %v, want invalid_grant", err)
	}
}

// TestRefreshTokenReuseInterval checks refresh_token_reuse_interval
// (docs/refresh.md): a server that rotated a refresh token and failed to
// answer leaves the client able to present the old token again within
// the interval and get the same successor pair, both usable; after the
// interval, or with the default 0, that is reuse and ends the family
// (RFC 9700 §4.14.2).
func TestRefreshTokenReuseInterval(t *testing.T) {
	for _, tc := range []struct {
		name string
		jwt  bool
	}{{"opaque access tokens", false}, {"JWT access tokens", true}} {
		t.Run(tc.name+": within the interval the same pair, both usable", func(t *testing.T) {
			f := newReuseFixture(t)
			f.client(t, "app", 60, tc.jwt)
			first := f.password(t, "app")
			f.lostRotation(t, "app", first.RefreshToken)

			f.clock.advance(10 * time.Second)
			again, err := f.refresh("app", first.RefreshToken)
			if err != nil {
				t.Fatalf("within the interval: %v", err)
			}
			f.clock.advance(20 * time.Second)
			third, err := f.refresh("app", first.RefreshToken)
			if err != nil {
				t.Fatalf("again within the interval: %v", err)
			}
			if again.AccessToken != third.AccessToken || again.RefreshToken != third.RefreshToken || again.IDToken != third.IDToken ||
				again.AccessToken == first.AccessToken || again.RefreshToken == first.RefreshToken || again.IDToken == "" {
				t.Fatalf("answers differ:\n%+v\n%+v", again, third)
			}
			if third.ExpiresIn != again.ExpiresIn-20 {
				t.Errorf("expires_in %d then %d, want the remaining lifetime", again.ExpiresIn, third.ExpiresIn)
			}
			if !f.active(t, "app", again.AccessToken) || !f.active(t, "app", first.AccessToken) {
				t.Fatal("the family was revoked")
			}
			next, err := f.refresh("app", again.RefreshToken)
			if err != nil {
				t.Fatalf("the successor refresh token: %v", err)
			}
			// The answer reached the client: the old token is reuse now.
			_, err = f.refresh("app", first.RefreshToken)
			wantInvalidGrant(t, err)
			for name, tok := range map[string]string{"first": first.AccessToken, "successor": again.AccessToken, "next": next.AccessToken} {
				if f.active(t, "app", tok) {
					t.Errorf("%s access token active after reuse", name)
				}
			}
		})
	}
	for _, tc := range []struct {
		name     string
		interval int64
		after    time.Duration
	}{
		{"after the interval the family ends", 60, 61 * time.Second},
		{"at the end of the interval the family ends", 60, 60 * time.Second},
		{"the default 0 is strict reuse detection", 0, time.Second},
		{"the default 0, presented at once", 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newReuseFixture(t)
			f.client(t, "app", tc.interval, false)
			first := f.password(t, "app")
			f.lostRotation(t, "app", first.RefreshToken)
			f.clock.advance(tc.after)
			_, err := f.refresh("app", first.RefreshToken)
			wantInvalidGrant(t, err)
			if f.active(t, "app", first.AccessToken) {
				t.Fatal("family not revoked")
			}
		})
	}
	t.Run("a revoked family is not answered again", func(t *testing.T) {
		f := newReuseFixture(t)
		f.client(t, "app", 60, false)
		first := f.password(t, "app")
		f.lostRotation(t, "app", first.RefreshToken)
		if err := f.e.Revoke(context.Background(), &engine.RevocationRequest{Token: first.AccessToken,
			Credentials: engine.ClientCredentials{Basic: true, BasicID: "app", BasicSecret: "app-secret"}}); err != nil {
			t.Fatal(err)
		}
		again, err := f.refresh("app", first.RefreshToken)
		if err != nil { // revoking one access token leaves the successor pair
			t.Fatalf("after revoking the old access token: %v", err)
		}
		if err := f.e.Revoke(context.Background(), &engine.RevocationRequest{Token: again.RefreshToken,
			Credentials: engine.ClientCredentials{Basic: true, BasicID: "app", BasicSecret: "app-secret"}}); err != nil {
			t.Fatal(err)
		}
		_, err = f.refresh("app", first.RefreshToken)
		wantInvalidGrant(t, err)
	})
	t.Run("a lowered interval applies to earlier rotations", func(t *testing.T) {
		f := newReuseFixture(t)
		f.client(t, "app", 60, false)
		first := f.password(t, "app")
		f.lostRotation(t, "app", first.RefreshToken)
		doc, err := f.e.ClientDoc(context.Background(), "app")
		if err != nil {
			t.Fatal(err)
		}
		doc.RefreshTokenReuseInterval, doc.ClientSecret = 0, "app-secret"
		if _, err := f.e.ReplaceClient(context.Background(), "app", doc); err != nil {
			t.Fatal(err)
		}
		_, err = f.refresh("app", first.RefreshToken)
		wantInvalidGrant(t, err)
	})
	t.Run("the sealed answer is forgotten by the purge after the interval", func(t *testing.T) {
		f := newReuseFixture(t)
		f.client(t, "app", 60, false)
		first := f.password(t, "app")
		f.lostRotation(t, "app", first.RefreshToken)
		old, err := f.tokens.TokenByID(context.Background(), engine.TokenHash(first.RefreshToken))
		if err != nil || old.Successor == nil {
			t.Fatalf("no sealed answer kept: %+v %v", old, err)
		}
		f.e.Purge(context.Background())
		if old, _ = f.tokens.TokenByID(context.Background(), engine.TokenHash(first.RefreshToken)); old.Successor == nil {
			t.Fatal("forgotten within the interval")
		}
		f.clock.advance(61 * time.Second)
		f.e.Purge(context.Background())
		if old, _ = f.tokens.TokenByID(context.Background(), engine.TokenHash(first.RefreshToken)); old.Successor != nil {
			t.Fatal("the sealed answer outlived the interval")
		}
	})
}

// TestRefreshTokenReuseIntervalRace presents one refresh token from many
// goroutines: with a reuse interval all get the one answer; with none,
// exactly one succeeds (RFC 9700 §4.14.2).
func TestRefreshTokenReuseIntervalRace(t *testing.T) {
	for _, tc := range []struct {
		name     string
		interval int64
	}{{"interval 60", 60}, {"interval 0", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			f := newReuseFixture(t)
			f.client(t, "app", tc.interval, false)
			rt := f.password(t, "app").RefreshToken
			const n = 8
			answers := make([]*engine.TokenResponse, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() { answers[i], _ = f.refresh("app", rt) })
			}
			wg.Wait()
			distinct := map[string]bool{}
			ok := 0
			for _, a := range answers {
				if a != nil {
					ok++
					distinct[a.RefreshToken] = true
				}
			}
			if tc.interval > 0 && (ok != n || len(distinct) != 1) {
				t.Fatalf("%d answers, %d distinct; want %d and 1", ok, len(distinct), n)
			}
			if tc.interval == 0 && ok != 1 {
				t.Fatalf("%d answers, want 1", ok)
			}
		})
	}
}
