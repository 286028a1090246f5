package web

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/keyhook/keyhook/engine"
)

// csrfCookie carries the double-submit token of the login form.
const csrfCookie = "keyhook_csrf"

// sessionCookie carries the login session (docs/browser-flow.md). Only
// the authorization endpoint reads it, so only it is sent the cookie.
const (
	sessionCookie     = "keyhook_session"
	sessionCookiePath = engine.PathAuthorize
)

// authorizeParams are the authorization request parameters the login form
// carries through as hidden fields. A request made from a pushed one
// carries only client_id and request_uri (formParams).
var authorizeParams = []string{"response_type", "client_id", "redirect_uri", "scope", "state", "code_challenge",
	"code_challenge_method", "nonce", "prompt", "max_age", "login_hint", "id_token_hint", paramResource, "dpop_jkt"}

var loginPage = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{if .Fatal}}Cannot sign in{{else}}Sign in{{end}} · keyhook</title>
<style>
body{font-family:system-ui,sans-serif;background:#f4f5f7;margin:0;display:flex;min-height:100vh;align-items:center;justify-content:center}
main{background:#fff;padding:2rem 2.5rem;border-radius:8px;box-shadow:0 1px 4px rgba(0,0,0,.15);width:20rem}
h1{font-size:1.3rem;margin:0 0 1rem}label{display:block;margin:.8rem 0 .2rem;font-size:.9rem}
input[type=text],input[type=password]{width:100%;box-sizing:border-box;padding:.5rem;border:1px solid #bbb;border-radius:4px}
button{margin-top:1.2rem;width:100%;padding:.6rem;border:0;border-radius:4px;background:#2457c5;color:#fff;font-size:1rem;cursor:pointer}
.error{background:#fde8e8;color:#9b1c1c;padding:.6rem;border-radius:4px;font-size:.9rem}.client{color:#555;font-size:.9rem}
</style></head><body><main>
{{if .Fatal}}<h1>Cannot sign in</h1><p class="error" id="error">{{.Error}}</p>
{{else}}<h1>Sign in</h1>
<p class="client">to continue to <strong>{{.ClientName}}</strong></p>
{{if .Error}}<p class="error" id="error">{{.Error}}</p>{{end}}
<form method="post" action="{{.Action}}">
{{range .Params}}<input type="hidden" name="{{.Name}}" value="{{.Value}}">
{{end}}<input type="hidden" name="csrf_token" value="{{.CSRF}}">
<label for="username">Username</label><input type="text" id="username" name="username" autocomplete="username" required autofocus value="{{.Username}}">
<label for="password">Password</label><input type="password" id="password" name="password" autocomplete="current-password" required>
<button type="submit" id="submit">Sign in</button>
</form>{{end}}
</main></body></html>
`))

type loginView struct {
	// Action is where the form posts, relative to /oauth2/: "authorize"
	// when empty, "device" at the verification page (docs/device-flow.md).
	Action     string
	Fatal      bool
	Error      string
	ClientName string
	Params     []hiddenField
	CSRF       string
	Username   string
}

func (s *Server) renderLogin(c echo.Context, status int, v loginView) error {
	if v.Action == "" {
		v.Action = "authorize"
	}
	strictPageHeaders(c)
	c.Response().WriteHeader(status)
	return loginPage.Execute(c.Response(), v)
}

// strictPageHeaders are the headers of every page keyhook shows a user:
// never cached, never framed (clickjacking), no script, no referrer.
func strictPageHeaders(c echo.Context) {
	h := c.Response().Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set(echo.HeaderContentType, echo.MIMETextHTMLCharsetUTF8)
}

// setCSRFCookie sets a fresh double-submit token for the forms under
// /oauth2/ and returns it.
func (s *Server) setCSRFCookie(c echo.Context) string {
	token := csrfToken()
	c.SetCookie(&http.Cookie{Name: csrfCookie, Value: token, Path: "/oauth2/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: s.secureCookies(c)})
	return token
}

// checkCSRF reports whether the form's csrf_token matches the cookie,
// and returns it.
func checkCSRF(c echo.Context, form url.Values) (string, bool) {
	cookie, cerr := c.Cookie(csrfCookie)
	sent := form.Get("csrf_token")
	return sent, cerr == nil && sent != "" && subtle.ConstantTimeCompare([]byte(cookie.Value), []byte(sent)) == 1
}

func authorizeRequest(form url.Values) *engine.AuthorizeRequest {
	_, scopeGiven := form["scope"]
	return &engine.AuthorizeRequest{
		ResponseType: form.Get("response_type"), ClientID: form.Get("client_id"), RedirectURI: form.Get("redirect_uri"),
		Scope: form.Get("scope"), ScopeGiven: scopeGiven, State: form.Get("state"), CodeChallenge: form.Get("code_challenge"),
		CodeChallengeMethod: form.Get("code_challenge_method"), Nonce: form.Get("nonce"),
		Prompt: form.Get("prompt"), MaxAge: form.Get("max_age"), LoginHint: form.Get("login_hint"),
		IDTokenHint:   form.Get("id_token_hint"),
		RequestObject: form.Get("request"), RequestURI: form.Get("request_uri"),
		Resources: form[paramResource], DPoPJKT: form.Get("dpop_jkt"),
	}
}

// secureCookies reports whether cookies must be Secure: the issuer is
// https, or this request came over https (directly or, as echo reads
// X-Forwarded-Proto, through a proxy; believing it can only add Secure).
func (s *Server) secureCookies(c echo.Context) bool {
	return strings.HasPrefix(s.eng.Issuer(), "https://") || c.Scheme() == "https"
}

// sessionValue is the value of the browser's login session cookie, or "".
func sessionValue(c echo.Context) string {
	if ck, err := c.Cookie(sessionCookie); err == nil {
		return ck.Value
	}
	return ""
}

// authorizeErr shows errors before a valid redirect URI is known as a page
// and sends the others back to the client (RFC 6749 §4.1.2.1).
func (s *Server) authorizeErr(c echo.Context, err error) error {
	var re *engine.RedirectError
	if errors.As(err, &re) {
		return c.Redirect(http.StatusSeeOther, re.Location(s.eng.Issuer()))
	}
	var oe *engine.Error
	if errors.As(err, &oe) {
		status := statusOf(oe.Code)
		if status < 500 {
			status = http.StatusBadRequest
		}
		return s.renderLogin(c, status, loginView{Fatal: true, Error: oe.Description})
	}
	return err
}

// authorizeForm serves GET /oauth2/authorize: validate, answer from the
// login session when it satisfies the request (OIDC Core §3.1.2.3), else
// show the login form with a fresh CSRF token, the username field filled
// with login_hint.
func (s *Server) authorizeForm(c echo.Context) error {
	form, err := oauthForm(c)
	if err != nil {
		return s.authorizeErr(c, err)
	}
	a, err := s.eng.Authorize(c.Request().Context(), authorizeRequest(form))
	if err != nil {
		return s.authorizeErr(c, err)
	}
	location, err := s.eng.Resume(c.Request().Context(), a, sessionValue(c))
	if err == nil {
		return c.Redirect(http.StatusSeeOther, location)
	}
	if !errors.Is(err, engine.ErrLoginNeeded) {
		return s.authorizeErr(c, err)
	}
	token := s.setCSRFCookie(c)
	return s.renderLogin(c, http.StatusOK, loginView{ClientName: clientLabel(a.Client), Params: formParams(a, form), CSRF: token,
		Username: a.Hint()})
}

// authorizeLogin serves the POST of the login form.
func (s *Server) authorizeLogin(c echo.Context) error {
	if err := c.Request().ParseForm(); err != nil {
		return s.authorizeErr(c, engine.Errorf(engine.CodeInvalidRequest, "the form is malformed"))
	}
	form := c.Request().PostForm
	a, err := s.eng.Authorize(c.Request().Context(), authorizeRequest(form))
	if err != nil {
		return s.authorizeErr(c, err)
	}
	sent, ok := checkCSRF(c, form)
	if !ok {
		return s.renderLogin(c, http.StatusForbidden, loginView{Fatal: true,
			Error: "The sign-in form expired or did not come from this server. Go back to the application and try again."})
	}
	in, err := s.eng.Login(c.Request().Context(), a, form.Get("username"), form.Get("password"), sessionValue(c))
	if errors.Is(err, engine.ErrLoginFailed) {
		return s.renderLogin(c, http.StatusUnauthorized, loginView{ClientName: clientLabel(a.Client), Params: formParams(a, form),
			CSRF: sent, Username: form.Get("username"), Error: "The username or password is wrong."})
	}
	if msg, oe := loginRefusal(err); msg != "" {
		// Throttled or busy: the form again, with the same answer for
		// every username (docs/auth-limits.md).
		setRetryAfter(c, oe)
		return s.renderLogin(c, statusOf(oe.Code), loginView{ClientName: clientLabel(a.Client), Params: formParams(a, form),
			CSRF: sent, Username: form.Get("username"), Error: msg})
	}
	if err != nil {
		return s.authorizeErr(c, err)
	}
	if in.SessionValue != "" {
		// SameSite=Lax: the cookie must come along when a client's page
		// sends the browser here (a cross-site top-level GET), and never
		// with a cross-site POST.
		c.SetCookie(&http.Cookie{Name: sessionCookie, Value: in.SessionValue, Path: sessionCookiePath,
			MaxAge: int(in.SessionLifetime / time.Second), HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: s.secureCookies(c)})
	}
	return c.Redirect(http.StatusSeeOther, in.Location)
}

// loginRefusal is the message for a sign-in refused without checking the
// password: too many failures (429) or no room to hash it (503).
func loginRefusal(err error) (string, *engine.Error) {
	var oe *engine.Error
	if !errors.As(err, &oe) || oe.RetryAfter <= 0 {
		return "", nil
	}
	secs := int64((oe.RetryAfter + time.Second - 1) / time.Second)
	switch oe.Code {
	case engine.CodeSlowDown:
		return fmt.Sprintf("Too many failed sign-in attempts. Try again in %d seconds.", secs), oe
	case engine.CodeTemporarilyUnavailable:
		return "The server is busy. Try again in a moment.", oe
	}
	return "", nil
}

// hiddenField is one parameter the login form carries.
type hiddenField struct{ Name, Value string }

// formParams are the hidden fields of the login form for a: the
// request_uri of a pushed request and the client_id (RFC 9126 §4: the
// parameters stay on the server, where the browser cannot change them),
// else the parameters as sent.
func formParams(a *engine.Authorization, form url.Values) []hiddenField {
	if a.RequestURI != "" {
		return []hiddenField{{"client_id", a.Client.ID}, {"request_uri", a.RequestURI}}
	}
	return carry(form)
}

// carry is the authorization request's parameters as the login form's
// hidden fields: the first value of each, and every resource (RFC 8707
// §2 lets it repeat).
func carry(form url.Values) []hiddenField {
	var out []hiddenField
	for _, k := range authorizeParams {
		v := form[k]
		if k != paramResource && len(v) > 1 {
			v = v[:1]
		}
		for _, x := range v {
			out = append(out, hiddenField{k, x})
		}
	}
	return out
}

func clientLabel(c *engine.Client) string {
	if c.Name != "" {
		return c.Name
	}
	return c.ID
}

func csrfToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
