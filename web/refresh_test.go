package web_test

import (
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
)

// passwordSetup creates a user and a confidential client with the
// password and refresh_token grants.
func passwordSetup(t *testing.T, h *harness) {
	t.Helper()
	if r := h.admin(http.MethodPost, "/users", map[string]any{"username": "alice", "password": "alice-pw",
		"claims": map[string]any{"email": "alice@example.com", "name": "Alice"}}); r.status != 201 {
		t.Fatalf("create user: %d %s", r.status, r.body)
	}
	h.createClient(map[string]any{"client_id": "app", "client_secret": "app-secret",
		"grant_types": []string{"password", "refresh_token"}, "scope": "openid profile email api"})
}

func (h *harness) passwordToken(scope string) *tokenResp {
	h.t.Helper()
	vals := url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"alice-pw"}}
	if scope != "" {
		vals.Set("scope", scope)
	}
	return h.mustDecodeToken(h.form("/oauth2/token", vals, "app", "app-secret"))
}

func (h *harness) refresh(rt, scope string) *response {
	h.t.Helper()
	vals := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
	if scope != "" {
		vals.Set("scope", scope)
	}
	return h.form("/oauth2/token", vals, "app", "app-secret")
}

func TestPasswordGrant(t *testing.T) {
	h := newHarness(t)
	passwordSetup(t, h)
	tr := h.passwordToken("api")
	if tr.RefreshToken == "" || tr.Scope != "api" || tr.IDToken != "" {
		t.Fatalf("token = %+v", tr)
	}
	in := h.introspect(tr.AccessToken)
	if in["sub"] != "alice" || in["username"] != "alice" || in["grant_type"] != "password" {
		t.Fatalf("introspection = %v", in)
	}
	for _, tc := range []struct{ name, user, pass string }{
		{"wrong password", "alice", "nope"},
		{"unknown user", "mallory", "alice-pw"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.form("/oauth2/token", url.Values{"grant_type": {"password"}, "username": {tc.user}, "password": {tc.pass}}, "app", "app-secret")
			wantError(t, r, 400, "invalid_grant")
		})
	}
	t.Run("disabled user", func(t *testing.T) {
		h.admin(http.MethodPut, "/users/alice", map[string]any{"disabled": true, "claims": map[string]any{}})
		r := h.form("/oauth2/token", url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"alice-pw"}}, "app", "app-secret")
		wantError(t, r, 400, "invalid_grant")
	})
}

func TestRefreshRotationAndReuse(t *testing.T) {
	h := newHarness(t)
	passwordSetup(t, h)
	first := h.passwordToken("api email")

	// Narrower scope is allowed, wider is not.
	wantError(t, h.refresh(first.RefreshToken, "api email openid"), 400, "invalid_scope")
	r := h.refresh(first.RefreshToken, "api")
	second := h.mustDecodeToken(r)
	if second.Scope != "api" || second.RefreshToken == "" || second.RefreshToken == first.RefreshToken {
		t.Fatalf("refresh answer = %+v", second)
	}
	if in := h.introspect(second.AccessToken); in["active"] != true || in["grant_type"] != "refresh_token" {
		t.Fatalf("new access token: %v", in)
	}
	// The old refresh token ended with its use; using it again ends the family.
	wantError(t, h.refresh(first.RefreshToken, ""), 400, "invalid_grant")
	for name, tok := range map[string]string{"first access": first.AccessToken, "second access": second.AccessToken, "second refresh": second.RefreshToken} {
		if in := h.introspect(tok); len(in) != 1 || in["active"] != false {
			t.Errorf("%s after reuse: %v", name, in)
		}
	}
	wantError(t, h.refresh(second.RefreshToken, ""), 400, "invalid_grant")
	t.Run("unknown and wrong-client refresh tokens", func(t *testing.T) {
		wantError(t, h.refresh("not-a-token", ""), 400, "invalid_grant")
		h.createClient(map[string]any{"client_id": "other", "client_secret": "other-secret", "grant_types": []string{"password", "refresh_token"}, "scope": "api"})
		fresh := h.passwordToken("api")
		r := h.form("/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {fresh.RefreshToken}}, "other", "other-secret")
		wantError(t, r, 400, "invalid_grant")
	})
}

// raceRefresh presents one refresh token from n goroutines at once,
// spread over the given instances, and counts 200s and 400s.
func raceRefresh(t *testing.T, instances []*harness, rt string, n int) (wins, rejected int32) {
	t.Helper()
	var w, r atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		h := instances[i%len(instances)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			vals := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
			req, _ := http.NewRequest(http.MethodPost, h.url+"/oauth2/token", stringsReader(vals.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth("app", "app-secret")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			switch resp.StatusCode {
			case 200:
				w.Add(1)
			case 400:
				r.Add(1)
			default:
				t.Errorf("status %d", resp.StatusCode)
			}
		}()
	}
	close(start)
	wg.Wait()
	return w.Load(), r.Load()
}

func TestRefreshRaceExactlyOneWins(t *testing.T) {
	h := newHarness(t)
	passwordSetup(t, h)
	if wins, rejected := raceRefresh(t, []*harness{h}, h.passwordToken("").RefreshToken, 10); wins != 1 || rejected != 9 {
		t.Fatalf("wins = %d, invalid_grant = %d; want 1 and 9", wins, rejected)
	}
}
