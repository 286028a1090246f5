package engine_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyhook/keyhook/engine"
)

// pushedFake wraps the real pushed-request store: it counts the calls of
// StartPushedRequest and can fail reads, or lose every consumption (as
// when another sign-in took the request first).
type pushedFake struct {
	engine.PushedRequestStore
	starts       atomic.Int32
	failRead     bool
	loseConsume  bool
	failConsume  bool
	failCreating bool
}

func (f *pushedFake) PushedRequestByID(ctx context.Context, id string) (*engine.PushedRequest, error) {
	if f.failRead {
		return nil, errors.New("database gone")
	}
	return f.PushedRequestStore.PushedRequestByID(ctx, id)
}

func (f *pushedFake) StartPushedRequest(ctx context.Context, id string, until time.Time) (bool, error) {
	f.starts.Add(1)
	return f.PushedRequestStore.StartPushedRequest(ctx, id, until)
}

func (f *pushedFake) ConsumePushedRequest(ctx context.Context, id string, now time.Time) (bool, error) {
	switch {
	case f.failConsume:
		return false, errors.New("database gone")
	case f.loseConsume:
		return false, nil
	}
	return f.PushedRequestStore.ConsumePushedRequest(ctx, id, now)
}

func (f *pushedFake) CreatePushedRequest(ctx context.Context, p *engine.PushedRequest) error {
	if f.failCreating {
		return errors.New("database gone")
	}
	return f.PushedRequestStore.CreatePushedRequest(ctx, p)
}

// parEngine is an engine on a fixed clock (*now) with the client app
// (public, PKCE) and the user alice, its pushed-request store wrapped.
func parEngine(t *testing.T, now *time.Time) (*engine.Engine, *pushedFake) {
	t.Helper()
	ctx := context.Background()
	st := openStores(t)
	fake := &pushedFake{PushedRequestStore: st.Pushed}
	st.Pushed = fake
	cfg := engine.Config{Issuer: "http://keyhook.test", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now: func() time.Time { return *now }}
	cfg.LoginThrottle.Free, cfg.ClientAuthThrottle.Free = -1, -1
	e, err := engine.New(ctx, cfg, st)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateUser(ctx, &engine.UserDoc{Username: "alice", Password: "alice-pw"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateClient(ctx, &engine.ClientDoc{ClientID: "app", TokenEndpointAuthMethod: "none",
		GrantTypes: []string{"authorization_code"}, RedirectURIs: []string{"https://app.example/cb", "https://app.example/2"},
		Scope: "openid api"}); err != nil {
		t.Fatal(err)
	}
	return e, fake
}

const testChallenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"

func goodAuthorizeRequest() engine.AuthorizeRequest {
	return engine.AuthorizeRequest{ResponseType: "code", ClientID: "app", RedirectURI: "https://app.example/cb", State: "s",
		CodeChallenge: testChallenge, CodeChallengeMethod: "S256", Scope: "openid", ScopeGiven: true}
}

func codeOf(err error) engine.ErrorCode {
	var oe *engine.Error
	if errors.As(err, &oe) {
		return oe.Code
	}
	return ""
}

// TestPushAuthorizationValidatesAsAuthorize: every request the
// authorization endpoint refuses is refused by the pushed authorization
// request endpoint with the same code, as a plain error (never a
// redirect), and every one it takes is taken.
func TestPushAuthorizationValidatesAsAuthorize(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	e, _ := parEngine(t, &now)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		edit func(r *engine.AuthorizeRequest)
		want engine.ErrorCode // "" = accepted
	}{
		{"good", func(*engine.AuthorizeRequest) {}, ""},
		{"no scope", func(r *engine.AuthorizeRequest) { r.Scope, r.ScopeGiven = "", false }, ""},
		{"response_type token", func(r *engine.AuthorizeRequest) { r.ResponseType = "token" }, engine.CodeUnsupportedResponseType},
		{"unregistered redirect", func(r *engine.AuthorizeRequest) { r.RedirectURI = "https://evil.example/cb" }, engine.CodeInvalidRequest},
		{"no redirect with two registered", func(r *engine.AuthorizeRequest) { r.RedirectURI = "" }, engine.CodeInvalidRequest},
		{"no PKCE for a public client", func(r *engine.AuthorizeRequest) { r.CodeChallenge, r.CodeChallengeMethod = "", "" }, engine.CodeInvalidRequest},
		{"plain PKCE", func(r *engine.AuthorizeRequest) { r.CodeChallengeMethod = "plain" }, engine.CodeInvalidRequest},
		{"scope beyond the client's", func(r *engine.AuthorizeRequest) { r.Scope = "openid admin" }, engine.CodeInvalidScope},
		{"bad prompt", func(r *engine.AuthorizeRequest) { r.Prompt = "none login" }, engine.CodeInvalidRequest},
		{"bad max_age", func(r *engine.AuthorizeRequest) { r.MaxAge = "soon" }, engine.CodeInvalidRequest},
		{"foreign id_token_hint", func(r *engine.AuthorizeRequest) { r.IDTokenHint = "x.y.z" }, engine.CodeInvalidRequest},
		{"request object", func(r *engine.AuthorizeRequest) { r.RequestObject = "x.y." }, engine.CodeRequestNotSupported},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := goodAuthorizeRequest()
			tc.edit(&r)
			direct := r
			_, aerr := e.Authorize(ctx, &direct)
			pushed := r
			resp, perr := e.PushAuthorization(ctx, &engine.PushedAuthorizationRequest{
				Credentials: engine.ClientCredentials{ClientID: "app"}, Request: &pushed})
			if codeOf(aerr) != tc.want || codeOf(perr) != tc.want {
				t.Fatalf("authorize: %v; push: %v; want %q from both", aerr, perr, tc.want)
			}
			var re *engine.RedirectError
			if errors.As(perr, &re) {
				t.Fatalf("push answered a redirect: %v", perr)
			}
			if tc.want == "" && (!strings.HasPrefix(resp.RequestURI, engine.RequestURIPrefix) || resp.ExpiresIn != 60) {
				t.Fatalf("push answer %+v", resp)
			}
		})
	}
}

// TestPushedRequestLifecycle: the lifetime to the nanosecond, the
// sign-in window given once, one-time use, and store failures.
func TestPushedRequestLifecycle(t *testing.T) {
	start := time.Unix(1_800_000_000, 0)
	now := start
	e, fake := parEngine(t, &now)
	ctx := context.Background()
	push := func(t *testing.T) string {
		t.Helper()
		r := goodAuthorizeRequest()
		resp, err := e.PushAuthorization(ctx, &engine.PushedAuthorizationRequest{
			Credentials: engine.ClientCredentials{ClientID: "app"}, Request: &r})
		if err != nil {
			t.Fatal(err)
		}
		return resp.RequestURI
	}
	use := func(uri string) (*engine.Authorization, error) {
		return e.Authorize(ctx, &engine.AuthorizeRequest{ClientID: "app", RequestURI: uri, State: "ignored"})
	}
	defer func() { now = start }()

	t.Run("expires at its lifetime", func(t *testing.T) {
		now = start
		a, b := push(t), push(t)
		now = start.Add(engine.DefaultPushedRequestLifetime - time.Nanosecond)
		if _, err := use(a); err != nil {
			t.Fatalf("last nanosecond: %v", err)
		}
		now = start.Add(engine.DefaultPushedRequestLifetime)
		if _, err := use(b); codeOf(err) != engine.CodeInvalidRequestURI {
			t.Fatalf("at expiry: %v", err)
		}
	})
	t.Run("the sign-in window is given once", func(t *testing.T) {
		now = start
		uri := push(t)
		before := fake.starts.Load()
		a, err := use(uri)
		if err != nil || a.Request.State != "s" || a.RequestURI != uri {
			t.Fatalf("%+v %v", a, err)
		}
		now = start.Add(engine.PushedSignInWindow - time.Second)
		if _, err := use(uri); err != nil {
			t.Fatalf("within the window: %v", err)
		}
		if n := fake.starts.Load() - before; n != 1 {
			t.Fatalf("%d starts, want 1", n)
		}
		now = start.Add(engine.PushedSignInWindow)
		if _, err := use(uri); codeOf(err) != engine.CodeInvalidRequestURI {
			t.Fatalf("after the window: %v", err)
		}
	})
	t.Run("consumed by the code", func(t *testing.T) {
		now = start
		a, err := use(push(t))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.Login(ctx, a, "alice", "alice-pw", ""); err != nil {
			t.Fatal(err)
		}
		if _, err := e.Login(ctx, a, "alice", "alice-pw", ""); codeOf(err) != engine.CodeInvalidRequestURI {
			t.Fatalf("second sign-in on one pushed request: %v", err)
		}
	})
	t.Run("a wrong password consumes nothing", func(t *testing.T) {
		now = start
		a, _ := use(push(t))
		if _, err := e.Login(ctx, a, "alice", "nope", ""); !errors.Is(err, engine.ErrLoginFailed) {
			t.Fatal(err)
		}
		if _, err := e.Login(ctx, a, "alice", "alice-pw", ""); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a lost race", func(t *testing.T) {
		now = start
		a, _ := use(push(t))
		fake.loseConsume = true
		defer func() { fake.loseConsume = false }()
		if _, err := e.Login(ctx, a, "alice", "alice-pw", ""); codeOf(err) != engine.CodeInvalidRequestURI {
			t.Fatalf("%v", err)
		}
	})
	for _, tc := range []struct {
		name string
		set  *bool
		do   func(uri string) error
	}{
		{"read fails", &fake.failRead, func(uri string) error { _, err := use(uri); return err }},
		{"consume fails", &fake.failConsume, func(uri string) error {
			a, err := use(uri)
			if err != nil {
				return err
			}
			_, err = e.Login(ctx, a, "alice", "alice-pw", "")
			return err
		}},
		{"create fails", &fake.failCreating, func(string) error {
			r := goodAuthorizeRequest()
			_, err := e.PushAuthorization(ctx, &engine.PushedAuthorizationRequest{
				Credentials: engine.ClientCredentials{ClientID: "app"}, Request: &r})
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now = start
			uri := push(t)
			*tc.set = true
			defer func() { *tc.set = false }()
			err := tc.do(uri)
			var re *engine.RedirectError
			if codeOf(err) != engine.CodeTemporarilyUnavailable || errors.As(err, &re) {
				t.Fatalf("want temporarily_unavailable, not redirected: %v", err)
			}
		})
	}
}

// TestRequirePushedSeedRoundTrip: require_pushed_authorization_requests
// goes through export and import (keyhook import, --seed) and the store.
func TestRequirePushedSeedRoundTrip(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	e, _ := parEngine(t, &now)
	ctx := context.Background()
	if _, err := e.CreateClient(ctx, &engine.ClientDoc{ClientID: "strict", TokenEndpointAuthMethod: "none",
		GrantTypes: []string{"authorization_code"}, RedirectURIs: []string{"https://strict.example/cb"},
		RequirePushedAuthorizationRequests: true}); err != nil {
		t.Fatal(err)
	}
	seed, err := e.Export(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fresh, _ := parEngine(t, &now)
	if _, err := fresh.Import(ctx, seed); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]bool{"strict": true, "app": false} {
		doc, err := fresh.ClientDoc(ctx, id)
		if err != nil || doc.RequirePushedAuthorizationRequests != want {
			t.Fatalf("%s imported: %+v %v", id, doc, err)
		}
	}
	_, err = fresh.Authorize(ctx, &engine.AuthorizeRequest{ResponseType: "code", ClientID: "strict",
		CodeChallenge: testChallenge, CodeChallengeMethod: "S256"})
	var re *engine.RedirectError
	if !errors.As(err, &re) || re.Err.Code != engine.CodeInvalidRequest {
		t.Fatalf("an unpushed request of the imported client: %v", err)
	}
}
