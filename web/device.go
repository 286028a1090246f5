package web

import (
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/keyhook/keyhook/engine"
)

// This file serves the device flow (RFC 8628, docs/device-flow.md): the
// device authorization endpoint, and the verification page where the
// user types the code the device shows, signs in with the login form of
// the authorization endpoint, and allows or denies the device.

// deviceSessionPath is the path of the login session cookie set at the
// verification page: only it is sent the cookie (the authorization
// endpoint's own is at sessionCookiePath).
const deviceSessionPath = engine.PathDevice

// deviceAuthorization serves POST /oauth2/device_authorization (RFC 8628 §3.1).
func (s *Server) deviceAuthorization(c echo.Context) error {
	form, cred, err := clientRequest(c)
	if err != nil {
		return err
	}
	_, scopeGiven := form["scope"]
	resp, err := s.eng.DeviceAuthorization(c.Request().Context(), &engine.DeviceAuthorizationRequest{
		Credentials: cred, Scope: form.Get("scope"), ScopeGiven: scopeGiven,
	})
	if err != nil {
		return err
	}
	noStore(c)
	return c.JSON(http.StatusOK, resp)
}

var devicePage = template.Must(template.New("device").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Connect a device · keyhook</title>
<style>
body{font-family:system-ui,sans-serif;background:#f4f5f7;margin:0;display:flex;min-height:100vh;align-items:center;justify-content:center}
main{background:#fff;padding:2rem 2.5rem;border-radius:8px;box-shadow:0 1px 4px rgba(0,0,0,.15);width:20rem}
h1{font-size:1.3rem;margin:0 0 1rem}label{display:block;margin:.8rem 0 .2rem;font-size:.9rem}
input[type=text]{width:100%;box-sizing:border-box;padding:.5rem;border:1px solid #bbb;border-radius:4px;font-size:1.2rem;letter-spacing:.1em;text-transform:uppercase}
button{margin-top:1.2rem;width:100%;padding:.6rem;border:0;border-radius:4px;background:#2457c5;color:#fff;font-size:1rem;cursor:pointer}
button.secondary{background:#e4e6eb;color:#222}
.error{background:#fde8e8;color:#9b1c1c;padding:.6rem;border-radius:4px;font-size:.9rem}.client{color:#555;font-size:.9rem}
</style></head><body><main>
{{if eq .Mode "confirm"}}<h1>Allow access?</h1>
<p class="client"><strong id="client">{{.ClientName}}</strong> on your device asks for access to your account{{if .Scopes}} with these scopes:{{else}}.{{end}}</p>
{{if .Scopes}}<ul id="scopes">{{range .Scopes}}<li>{{.}}</li>{{end}}</ul>{{end}}
<p class="client">Code <strong id="user_code">{{.UserCode}}</strong>, signed in as <strong id="username">{{.Username}}</strong>.
Allow only if your device shows this code.</p>
<form method="post" action="device">
<input type="hidden" name="csrf_token" value="{{.CSRF}}"><input type="hidden" name="user_code" value="{{.UserCode}}">
<button type="submit" name="step" value="approve" id="approve">Allow</button>
<button type="submit" name="step" value="deny" id="deny" class="secondary">Deny</button>
<button type="submit" name="step" value="switch" id="switch" class="secondary">Not {{.Username}}? Sign in as someone else</button>
</form>
{{else if eq .Mode "done"}}<h1>{{if .Approved}}Device connected{{else}}Access denied{{end}}</h1>
<p id="done">{{if .Approved}}You may return to your device.{{else}}The device was not given access. You may close this page.{{end}}</p>
{{else}}<h1>Connect a device</h1>
<p class="client">Enter the code your device shows.</p>
{{if .Error}}<p class="error" id="error">{{.Error}}</p>{{end}}
<form method="post" action="device">
<input type="hidden" name="csrf_token" value="{{.CSRF}}"><input type="hidden" name="step" value="code">
<label for="user_code">Code</label><input type="text" id="user_code" name="user_code" autocomplete="off" autocapitalize="characters" spellcheck="false" maxlength="64" required autofocus value="{{.UserCode}}">
<button type="submit" id="submit">Continue</button>
</form>{{end}}
</main></body></html>
`))

type deviceView struct {
	// Mode is "code" (the code form), "confirm" (allow or deny) or "done".
	Mode       string
	Error      string
	UserCode   string
	CSRF       string
	ClientName string
	Scopes     []string
	Username   string
	Approved   bool
}

func (s *Server) renderDevice(c echo.Context, status int, v deviceView) error {
	strictPageHeaders(c)
	c.Response().WriteHeader(status)
	return devicePage.Execute(c.Response(), v)
}

// shownCode is a typed user code as the page shows it back: formatted
// when it is well formed, else as typed, cut short.
func shownCode(typed string) string {
	if code, ok := engine.NormalizeUserCode(typed); ok {
		return engine.FormatUserCode(code)
	}
	return clip(typed, 64)
}

// deviceForm serves GET /oauth2/device, the verification URI; with
// ?user_code= (verification_uri_complete) the code is filled in, and the
// user still confirms it (RFC 8628 §3.3.1).
func (s *Server) deviceForm(c echo.Context) error {
	token := s.setCSRFCookie(c)
	return s.renderDevice(c, http.StatusOK, deviceView{Mode: "code", CSRF: token, UserCode: shownCode(c.QueryParam("user_code"))})
}

// deviceSubmit serves the POSTs of the verification page: step=code
// checks the code, step=login signs in (step=switch shows the form to
// sign in as another user), step=approve or deny decides.
func (s *Server) deviceSubmit(c echo.Context) error {
	if err := c.Request().ParseForm(); err != nil {
		if bodyTooLarge(err) {
			return err
		}
		return s.renderDevice(c, http.StatusBadRequest, deviceView{Mode: "code", CSRF: s.setCSRFCookie(c),
			Error: "The form is malformed."})
	}
	form := c.Request().PostForm
	csrf, ok := checkCSRF(c, form)
	if !ok {
		return s.renderDevice(c, http.StatusForbidden, deviceView{Mode: "code", CSRF: s.setCSRFCookie(c),
			UserCode: shownCode(form.Get("user_code")),
			Error:    "The form expired or did not come from this server. Enter the code again."})
	}
	ctx := c.Request().Context()
	typed := form.Get("user_code")
	switch step := form.Get("step"); step {
	case "code":
		dr, err := s.eng.DeviceLookup(ctx, typed, csrf)
		if err != nil {
			return s.deviceCodeErr(c, csrf, typed, err)
		}
		user, err := s.eng.DeviceSignedIn(ctx, sessionValue(c))
		if err != nil {
			return s.deviceCodeErr(c, csrf, typed, err)
		}
		if user == "" {
			return s.deviceLogin(c, http.StatusOK, dr, csrf, "", "")
		}
		return s.renderDevice(c, http.StatusOK, confirmView(dr, csrf, user))
	case "switch":
		dr, err := s.eng.DeviceLookup(ctx, typed, csrf)
		if err != nil {
			return s.deviceCodeErr(c, csrf, typed, err)
		}
		return s.deviceLogin(c, http.StatusOK, dr, csrf, "", "")
	case "login":
		username := form.Get("username")
		dr, in, err := s.eng.DeviceLogin(ctx, typed, csrf, username, form.Get("password"), sessionValue(c))
		switch {
		case dr == nil:
			return s.deviceCodeErr(c, csrf, typed, err)
		case errors.Is(err, engine.ErrLoginFailed):
			return s.deviceLogin(c, http.StatusUnauthorized, dr, csrf, username, "The username or password is wrong.")
		}
		if msg, oe := loginRefusal(err); msg != "" {
			setRetryAfter(c, oe)
			return s.deviceLogin(c, statusOf(oe.Code), dr, csrf, username, msg)
		}
		if err != nil {
			return s.deviceCodeErr(c, csrf, typed, err)
		}
		if in.SessionValue == "" {
			return s.renderDevice(c, http.StatusServiceUnavailable, deviceView{Mode: "code", CSRF: csrf,
				UserCode: shownCode(typed), Error: "The server could not keep you signed in. Try again in a moment."})
		}
		c.SetCookie(&http.Cookie{Name: sessionCookie, Value: in.SessionValue, Path: deviceSessionPath,
			MaxAge: int(in.SessionLifetime / time.Second), HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: s.secureCookies(c)})
		return s.renderDevice(c, http.StatusOK, confirmView(dr, csrf, username))
	case "approve", "deny":
		dr, err := s.eng.DeviceDecide(ctx, typed, csrf, sessionValue(c), step == "approve")
		switch {
		case dr == nil:
			return s.deviceCodeErr(c, csrf, typed, err)
		case errors.Is(err, engine.ErrLoginNeeded):
			return s.deviceLogin(c, http.StatusOK, dr, csrf, "", "")
		case err != nil:
			return s.deviceCodeErr(c, csrf, typed, err)
		}
		return s.renderDevice(c, http.StatusOK, deviceView{Mode: "done", Approved: step == "approve"})
	default:
		return s.renderDevice(c, http.StatusBadRequest, deviceView{Mode: "code", CSRF: csrf, UserCode: shownCode(typed),
			Error: "The form is malformed."})
	}
}

func confirmView(dr *engine.DeviceRequest, csrf, username string) deviceView {
	return deviceView{Mode: "confirm", CSRF: csrf, UserCode: engine.FormatUserCode(dr.UserCode),
		ClientName: clientLabel(dr.Client), Scopes: strings.Fields(dr.Scope), Username: username}
}

// deviceLogin shows the login form of the authorization endpoint, posting
// back to the verification page with the user code.
func (s *Server) deviceLogin(c echo.Context, status int, dr *engine.DeviceRequest, csrf, username, msg string) error {
	return s.renderLogin(c, status, loginView{Action: "device", ClientName: clientLabel(dr.Client), CSRF: csrf,
		Params:   []hiddenField{{"user_code", engine.FormatUserCode(dr.UserCode)}, {"step", "login"}},
		Username: username, Error: msg})
}

// deviceCodeErr shows the code form again for a wrong code (the same
// answer for malformed, unknown, expired and decided codes), too many
// wrong codes (429 with Retry-After), or a server that cannot check.
func (s *Server) deviceCodeErr(c echo.Context, csrf, typed string, err error) error {
	v := deviceView{Mode: "code", CSRF: csrf, UserCode: shownCode(typed)}
	if errors.Is(err, engine.ErrUserCodeInvalid) {
		v.Error = "That code is not valid. Check the code your device shows and try again."
		return s.renderDevice(c, http.StatusBadRequest, v)
	}
	var oe *engine.Error
	if !errors.As(err, &oe) {
		return err
	}
	status := statusOf(oe.Code)
	switch {
	case oe.Code == engine.CodeSlowDown && oe.RetryAfter > 0:
		setRetryAfter(c, oe)
		v.Error = fmt.Sprintf("Too many wrong codes. Try again in %d seconds.", int64((oe.RetryAfter+time.Second-1)/time.Second))
	case status >= 500:
		setRetryAfter(c, oe)
		v.Error = "The server cannot check the code right now. Try again in a moment."
		s.logger(c).Warn("device verification failed", "err", oe.Error())
	default:
		v.Error = oe.Description
	}
	return s.renderDevice(c, status, v)
}
