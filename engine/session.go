package engine

import (
	"context"
	"errors"
	"time"
)

// DefaultSessionLifetime is how long a login session lasts when
// Config.SessionLifetime is not set (docs/browser-flow.md).
const DefaultSessionLifetime = 12 * time.Hour

// Session is a browser's login session at the authorization endpoint:
// the user signed in once, and later authorization requests of the same
// browser are answered without the form (OIDC Core §3.1.2.3) unless they
// ask for a sign-in. The browser holds a random value in a cookie; the
// store keeps only its hash, as for opaque tokens.
type Session struct {
	// ID is the TokenHash of the cookie value.
	ID       string
	Username string
	// AuthTime is when the user signed in (OIDC Core §2 auth_time).
	AuthTime time.Time
	// UserUpdatedAt is the user's UpdatedAt at sign-in: any later change
	// to the user (password, disabled, claims) ends the session.
	UserUpdatedAt time.Time
	// ExpiresAt is AuthTime plus the session lifetime; a session is
	// never extended.
	ExpiresAt time.Time
}

// MaxSessionsPerUser bounds the login sessions one user has at once: a
// sign-in beyond it ends the user's oldest sessions. Without it every
// sign-in of a browser that keeps no cookie (a script, a test run, a
// client in a loop) would add a row that lives for the whole session
// lifetime, and one account could fill the table (docs/browser-flow.md).
const MaxSessionsPerUser = 50

// SessionStore keeps login sessions. Deleting a user deletes their
// sessions.
type SessionStore interface {
	// CreateSession returns ErrConflict when the id exists.
	CreateSession(ctx context.Context, s *Session) error
	// SessionByID returns the session or ErrNotFound.
	SessionByID(ctx context.Context, id string) (*Session, error)
	// DeleteSession deletes the session; absent is not an error.
	DeleteSession(ctx context.Context, id string) error
	PurgeSessions(ctx context.Context, before time.Time) (int64, error)
	// TrimSessions deletes the sessions of username except keepID and
	// the newest others (by AuthTime), so that at most limit remain, and
	// reports how many it deleted.
	TrimSessions(ctx context.Context, username, keepID string, limit int) (int64, error)
}

// ErrLoginNeeded is returned by Resume when the user must sign in with
// the login form.
var ErrLoginNeeded = errors.New("the user must sign in")

// sessionLifetime is the configured lifetime or the default.
func (e *Engine) sessionLifetime() time.Duration {
	return positiveOr(e.cfg.SessionLifetime, DefaultSessionLifetime)
}

// startSession stores a new session for u, who signed in at now, and
// deletes the browser's previous one (a fresh value at every sign-in:
// a value planted before the sign-in is worth nothing after it) and the
// user's oldest beyond MaxSessionsPerUser. It
// returns the cookie value, or "" when sessions are not stored or the
// store failed (logged: the sign-in stands without one).
func (e *Engine) startSession(ctx context.Context, u *User, now time.Time, old string) string {
	if e.st.Sessions == nil {
		return ""
	}
	if old != "" {
		if err := e.st.Sessions.DeleteSession(ctx, TokenHash(old)); err != nil {
			e.log.Warn("deleting a replaced login session failed", "err", err)
		}
	}
	value := randomToken()
	s := &Session{ID: TokenHash(value), Username: u.Username, AuthTime: now, UserUpdatedAt: u.UpdatedAt,
		ExpiresAt: now.Add(e.sessionLifetime())}
	if err := e.st.Sessions.CreateSession(ctx, s); err != nil {
		e.log.Warn("storing a login session failed; the user signed in without one", "err", err)
		return ""
	}
	if _, err := e.st.Sessions.TrimSessions(ctx, u.Username, s.ID, MaxSessionsPerUser); err != nil {
		e.log.Warn("ending a user's oldest login sessions failed", "err", err)
	}
	return value
}

// session finds the live session of a cookie value: unexpired, and its
// user still exists, is enabled and unchanged since the sign-in. It
// returns nil when there is none; a session found dead is deleted.
func (e *Engine) session(ctx context.Context, value string) (*Session, *User, error) {
	if value == "" || e.st.Sessions == nil || e.st.Users == nil {
		return nil, nil, nil
	}
	s, err := e.st.Sessions.SessionByID(ctx, TokenHash(value))
	if errors.Is(err, ErrNotFound) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, storeFailure(err)
	}
	u, err := e.activeUser(ctx, s.Username, CodeLoginRequired)
	if errors.Is(err, CodeLoginRequired) || (err == nil && !u.UpdatedAt.Equal(s.UserUpdatedAt)) || !e.now().Before(s.ExpiresAt) {
		if err := e.st.Sessions.DeleteSession(ctx, s.ID); err != nil {
			e.log.Warn("deleting an ended login session failed", "err", err)
		}
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	return s, u, nil
}

// Resume answers an authorization from the browser's login session
// (sessionValue, the value of its cookie, may be ""): the redirect URI
// with a code when the session satisfies the request, ErrLoginNeeded when
// the user must sign in, or, for prompt=none, a *RedirectError
// login_required (OIDC Core §3.1.2.6). A session does not satisfy
// prompt=login (or select_account), a max_age its sign-in is older than
// (max_age=0 is prompt=login, OIDC Core §3.1.2.1), or a login_hint or
// id_token_hint naming another user.
func (e *Engine) Resume(ctx context.Context, a *Authorization, sessionValue string) (string, error) {
	s, u, err := e.session(ctx, sessionValue)
	if err != nil {
		return "", err
	}
	now := e.now()
	var why string
	switch {
	case s == nil:
		why = "the user is not signed in"
	case a.PromptLogin:
		why = "the request asks for a new sign-in"
	case a.MaxAge == 0 || a.MaxAge > 0 && now.Unix()-s.AuthTime.Unix() > a.MaxAge:
		why = "the sign-in is older than max_age"
	case a.Hint() != "" && a.Hint() != u.Username:
		why = "another user is signed in"
	}
	if why == "" {
		return e.issueCode(ctx, a, u.Username, s.AuthTime)
	}
	if a.PromptNone {
		return "", &RedirectError{Err: Errorf(CodeLoginRequired, "%s", why), RedirectURI: a.RedirectURI, State: a.Request.State}
	}
	return "", ErrLoginNeeded
}
