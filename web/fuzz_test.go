package web_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyhook/keyhook/engine"
	"github.com/keyhook/keyhook/storage"
	"github.com/keyhook/keyhook/web"
)

// fuzzHandler is keyhook's handler on a fresh SQLite file with one
// client_secret_basic client, made once per fuzzing process; requests go
// straight to the handler, without a listener.
func fuzzHandler(f *testing.F) http.Handler {
	ctx := context.Background()
	store, err := storage.Open(ctx, "sqlite:"+filepath.Join(f.TempDir(), "k.db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { store.Close() })
	log := quietLogger()
	// The throttles are off: fuzzing fails on purpose all the time, and
	// a throttled answer would hide what the parser does.
	off := engine.Throttle{Free: -1}
	eng, err := engine.New(ctx, engine.Config{Issuer: "http://keyhook.test", Logger: log,
		LoginThrottle: off, ClientAuthThrottle: off}, store.Stores())
	if err != nil {
		f.Fatal(err)
	}
	if _, err := eng.CreateClient(ctx, &engine.ClientDoc{ClientID: "svc", ClientSecret: "svc-secret", Scope: "a b"}); err != nil {
		f.Fatal(err)
	}
	return web.New(web.Config{Engine: eng, Logger: log, Ready: store.Ping}).Handler()
}

// oauthCodes are the error codes RFC 6749 §5.2 allows the token endpoint.
var oauthCodes = map[string]bool{"invalid_request": true, "invalid_client": true, "invalid_grant": true,
	"unauthorized_client": true, "unsupported_grant_type": true, "invalid_scope": true}

// checkTokenAnswer is the property of the token endpoint under any input:
// no 5xx, and an error is an RFC 6749 §5.2 JSON body with a known code.
func checkTokenAnswer(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	if rec.Code >= 500 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	if rec.Code == http.StatusOK {
		return
	}
	var body struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || !oauthCodes[body.Error] {
		t.Fatalf("status %d with body %q", rec.Code, rec.Body)
	}
}

func postToken(h http.Handler, body, authorization string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/oauth2/token", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// FuzzTokenForm posts arbitrary form bodies to the token endpoint with
// valid Basic credentials (RFC 6749 §3.2).
func FuzzTokenForm(f *testing.F) {
	h := fuzzHandler(f)
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("svc:svc-secret"))
	f.Fuzz(func(t *testing.T, body string) {
		checkTokenAnswer(t, postToken(h, body, basic))
	})
}

// FuzzBasicHeader sends arbitrary Authorization headers with a valid
// client_credentials form (RFC 6749 §2.3.1, RFC 7617): a header that does
// not decode is invalid_client, never a 5xx; only the right credentials
// get a token.
func FuzzBasicHeader(f *testing.F) {
	h := fuzzHandler(f)
	f.Fuzz(func(t *testing.T, authorization string) {
		rec := postToken(h, "grant_type=client_credentials", authorization)
		checkTokenAnswer(t, rec)
		if rec.Code == http.StatusOK {
			scheme, value, _ := strings.Cut(authorization, " ")
			raw, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(value))
			id, secret, _ := strings.Cut(string(raw), ":")
			id, _ = url.QueryUnescape(id)
			secret, _ = url.QueryUnescape(secret)
			if !strings.EqualFold(scheme, "Basic") || id != "svc" || secret != "svc-secret" {
				t.Fatalf("%q got a token", authorization)
			}
		}
	})
}
