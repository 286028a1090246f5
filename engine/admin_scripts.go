package engine

import (
	"context"
	"errors"
	"math"
	"regexp"
	"slices"
	"time"

	"github.com/keyhook/keyhook/hooks"
)

// Script limits (docs/sandbox.md).
const (
	DefaultScriptTimeout = 100 * time.Millisecond
	MaxScriptTimeout     = 5000 * time.Millisecond
	DefaultScriptLevel   = 100
)

var scriptNamePattern = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)

// ScriptDoc is a script as the admin API reads and writes it.
type ScriptDoc struct {
	Name    string            `json:"name"`
	Type    string            `json:"type"`
	Source  string            `json:"source"`
	Enabled *bool             `json:"enabled,omitempty"`
	Level   *int              `json:"level,omitempty"`
	Config  map[string]string `json:"config"`
	// Secrets are write-only: answers carry each name with SecretSet;
	// a write that leaves them out keeps the stored ones
	// (engine/scriptsecrets.go, docs/scripts.md).
	Secrets   map[string]string `json:"secrets,omitempty"`
	TimeoutMS *int64            `json:"timeout_ms,omitempty"`
	OnError   string            `json:"on_error,omitempty"`
	// MemoryMB is the memory budget of one call in MiB (absent: the
	// server's default); Isolation is "process" (the default) or
	// "inline" (docs/sandbox.md).
	MemoryMB  *int   `json:"memory_mb,omitempty"`
	Isolation string `json:"isolation,omitempty"`
	// RecordInputs is how many inputs of the live version's calls each
	// instance keeps for replay, 0 (off) to 1000 (docs/scripts.md,
	// "Replay"). Left out when 0, so that snapshots of scripts written
	// before it stay equal.
	RecordInputs int `json:"record_inputs,omitempty"`
	// Version is the runtime's key of the live source, a random string
	// that changes on every write; VersionNumber is the live version's
	// number in the script's history (docs/scripts.md, "Versions,
	// rollback and rollout"). Both are read-only.
	Version       string `json:"version,omitempty"`
	VersionNumber int    `json:"version_number,omitempty"`
	// Candidate is a source tried beside the live one (docs/scripts.md,
	// "Versions, rollback and rollout"); it runs with the script's
	// settings and is no part of its versions' snapshots.
	Candidate *CandidateDoc `json:"candidate,omitempty"`
	// FallingBackTo is the number of the version this instance serves in
	// place of the live one, which failed (on_error: last_good); absent
	// while the live one serves. Read-only, like TrippedUntil.
	FallingBackTo *int `json:"falling_back_to,omitempty"`
	// AllowedHosts are the hosts context.fetch may reach (docs/scripts.md).
	AllowedHosts []string `json:"allowed_hosts,omitempty"`
	// TrippedUntil is when this instance's circuit breaker for the script
	// lets it run again; absent when the breaker is closed. Read-only:
	// never stored, ignored on writes.
	TrippedUntil *time.Time `json:"tripped_until,omitempty"`
}

// ScriptDocument is the admin view of s.
func ScriptDocument(s *hooks.Script) *ScriptDoc {
	enabled, level, ms := s.Enabled, s.Level, s.Timeout.Milliseconds()
	cfg := s.Config
	if cfg == nil {
		cfg = map[string]string{}
	}
	doc := &ScriptDoc{Name: s.Name, Type: string(s.Kind), Source: s.Source, Enabled: &enabled, Level: &level,
		Config: cfg, TimeoutMS: &ms, OnError: string(s.OnError), Isolation: string(s.Isolation), Version: s.Version,
		VersionNumber: s.Number, AllowedHosts: s.AllowedHosts, Secrets: secretNames(s.Secrets),
		RecordInputs: s.RecordInputs}
	if s.MemoryMB > 0 {
		mb := s.MemoryMB
		doc.MemoryMB = &mb
	}
	if c := s.Candidate; c != nil {
		pct := c.Percent
		doc.Candidate = &CandidateDoc{Source: c.Source, Rollout: string(c.Rollout), Percent: &pct}
	}
	return doc
}

// scriptFromDoc validates doc, including that the source compiles. stored
// is the script doc replaces (nil for a new one): its secrets are kept
// when doc has none, and resolve doc's SecretSet references.
func (e *Engine) scriptFromDoc(doc *ScriptDoc, stored *hooks.Script) (*hooks.Script, error) {
	s := &hooks.Script{Name: doc.Name, Kind: hooks.Kind(doc.Type), Source: doc.Source, Enabled: true,
		Level: DefaultScriptLevel, Config: doc.Config, Timeout: DefaultScriptTimeout, OnError: hooks.OnError(doc.OnError)}
	if !scriptNamePattern.MatchString(s.Name) {
		return nil, fieldError("name", "must match [a-z0-9_-]{1,64}")
	}
	if s.Kind != hooks.KindIntrospection && s.Kind != hooks.KindUpdateToken && s.Kind != hooks.KindRegistration {
		return nil, fieldError("type", "must be introspection, update_token or registration")
	}
	if doc.Enabled != nil {
		s.Enabled = *doc.Enabled
	}
	if doc.Level != nil {
		if *doc.Level < math.MinInt32 || *doc.Level > math.MaxInt32 {
			return nil, fieldError("level", "must be a 32-bit integer")
		}
		s.Level = *doc.Level
	}
	if doc.TimeoutMS != nil {
		if *doc.TimeoutMS < 1 || *doc.TimeoutMS > MaxScriptTimeout.Milliseconds() {
			return nil, fieldError("timeout_ms", "must be between 1 and 5000")
		}
		s.Timeout = time.Duration(*doc.TimeoutMS) * time.Millisecond
	}
	if doc.MemoryMB != nil {
		if *doc.MemoryMB < 1 || *doc.MemoryMB > e.cfg.MaxScriptMemoryMB {
			return nil, fieldError("memory_mb", "must be between 1 and %d", e.cfg.MaxScriptMemoryMB)
		}
		s.MemoryMB = *doc.MemoryMB
	}
	switch s.Isolation = hooks.Isolation(doc.Isolation); s.Isolation {
	case "", hooks.IsolationProcess, hooks.IsolationInline:
	default:
		return nil, fieldError("isolation", "must be process or inline")
	}
	if err := checkAllowedHosts(doc.AllowedHosts); err != nil {
		return nil, err
	}
	s.AllowedHosts = doc.AllowedHosts
	if doc.RecordInputs < 0 || doc.RecordInputs > hooks.MaxRecordInputs {
		return nil, fieldError("record_inputs", "must be between 0 and %d", hooks.MaxRecordInputs)
	}
	s.RecordInputs = doc.RecordInputs
	switch s.OnError {
	case "":
		s.OnError = hooks.OnErrorSkip
	case hooks.OnErrorSkip, hooks.OnErrorDeny, hooks.OnErrorLastGood:
	default:
		return nil, fieldError("on_error", "must be skip, deny or last_good")
	}
	if s.Source == "" {
		return nil, fieldError("source", "is required")
	}
	var old map[string]string
	if stored != nil {
		old = stored.Secrets
	}
	if doc.Secrets == nil {
		s.Secrets = old
	} else {
		var err error
		if s.Secrets, err = resolveSecrets(doc.Secrets, old); err != nil {
			return nil, err
		}
	}
	if err := e.checkSource("source", s.Name, s.Source); err != nil {
		return nil, err
	}
	if doc.Candidate != nil {
		c, err := e.candidateFromDoc(s.Name, doc.Candidate)
		if err != nil {
			return nil, err
		}
		s.Candidate = c
	}
	return s, nil
}

// checkSource reports a source that does not compile as a 400 naming
// field, with the line and column of a syntax error.
func (e *Engine) checkSource(field, name, src string) error {
	if e.hooks == nil {
		return nil
	}
	if err := e.hooks.Runtime().Check(name, src); err != nil {
		var se *hooks.SyntaxError
		if errors.As(err, &se) {
			return fieldError(field, "line %d, column %d: %s", se.Line, se.Column, se.Message)
		}
		return fieldError(field, "%v", err)
	}
	return nil
}

// CreateScript stores a new script; it runs from now on, here at once and
// on other instances after their next refresh.
func (e *Engine) CreateScript(ctx context.Context, doc *ScriptDoc) (*ScriptDoc, error) {
	s, err := e.scriptFromDoc(doc, nil)
	if err != nil {
		return nil, err
	}
	if err := checkDelegatedScript(ctx, nil, s); err != nil {
		return nil, err
	}
	if err := e.saveScript(ctx, s, e.st.Scripts.CreateScript); errors.Is(err, ErrConflict) {
		return nil, Errorf(CodeConflict, "name: script %q exists already", s.Name)
	} else if err != nil {
		return nil, storeFailure(err)
	}
	e.scriptsChanged(func() { e.hooks.Put(s) })
	return ScriptDocument(s), nil
}

// ReplaceScript replaces the script called name.
func (e *Engine) ReplaceScript(ctx context.Context, name string, doc *ScriptDoc) (*ScriptDoc, error) {
	if doc.Name != "" && doc.Name != name {
		return nil, fieldError("name", "cannot be changed")
	}
	doc.Name = name
	old, err := e.st.Scripts.ScriptByName(ctx, name)
	if err != nil {
		return nil, adminErr(err, "script", name)
	}
	s, err := e.scriptFromDoc(doc, old)
	if err != nil {
		return nil, err
	}
	if err := checkDelegatedScript(ctx, old, s); err != nil {
		return nil, err
	}
	if s.Kind != old.Kind {
		clients, err := e.st.Clients.Clients(ctx)
		if err != nil {
			return nil, storeFailure(err)
		}
		for _, c := range clients {
			if slices.Contains(c.IntrospectionScripts, name) || slices.Contains(c.UpdateTokenScripts, name) {
				return nil, fieldError("type", "cannot change while client %q binds the script", c.ID)
			}
		}
	}
	if err := e.saveScript(ctx, s, e.st.Scripts.UpdateScript); err != nil {
		return nil, adminErr(err, "script", name) // deleted meanwhile: 404
	}
	e.scriptsChanged(func() { e.hooks.Put(s) })
	return ScriptDocument(s), nil
}

// ScriptDoc reads one script.
func (e *Engine) ScriptDoc(ctx context.Context, name string) (*ScriptDoc, error) {
	s, err := e.st.Scripts.ScriptByName(ctx, name)
	if err != nil {
		return nil, adminErr(err, "script", name)
	}
	return e.withBreaker(ScriptDocument(s)), nil
}

// withBreaker adds to doc the state of the script's circuit breaker.
func (e *Engine) withBreaker(doc *ScriptDoc) *ScriptDoc {
	if e.hooks != nil {
		if until, ok := e.hooks.TrippedUntil(doc.Name); ok {
			until = until.UTC()
			doc.TrippedUntil = &until
		}
		if n, ok := e.hooks.FallingBackTo(doc.Name); ok {
			doc.FallingBackTo = &n
		}
	}
	return doc
}

// ScriptDocs lists every script.
func (e *Engine) ScriptDocs(ctx context.Context) ([]*ScriptDoc, error) {
	all, err := e.st.Scripts.Scripts(ctx)
	if err != nil {
		return nil, storeFailure(err)
	}
	out := make([]*ScriptDoc, len(all))
	for i, s := range all {
		out[i] = e.withBreaker(ScriptDocument(s))
	}
	return out, nil
}

// DeleteScript deletes a script. Clients that bind it keep the name; a
// binding to a missing script runs nothing.
func (e *Engine) DeleteScript(ctx context.Context, name string) error {
	err := e.st.Scripts.DeleteScript(ctx, name)
	if err != nil {
		return adminErr(err, "script", name)
	}
	e.scriptsChanged(func() { e.hooks.Remove(name) })
	return nil
}

// DryRunRequest is the body of POST /admin/v1/scripts/{name}/test.
type DryRunRequest struct {
	Function string         `json:"function"`
	Args     []any          `json:"args"`
	Context  map[string]any `json:"context"`
	Source   string         `json:"source"`
	// Secrets, when given, replace the stored script's secrets for this
	// run (SecretSet refers to a stored value); the script reads them as
	// context.secrets, and the answer shows SecretMark wherever one of
	// their values would appear.
	Secrets map[string]string `json:"secrets,omitempty"`
	// safeFetchOnly is set by Replay: its calls' answers are only
	// compared, so context.fetch may only GET or HEAD.
	safeFetchOnly bool
}

// DryRunResult is its answer (docs/scripts.md).
type DryRunResult struct {
	Result     any      `json:"result"`
	ArgsAfter  []any    `json:"args_after"`
	Logs       []string `json:"logs"`
	Error      *string  `json:"error"`
	DurationMS float64  `json:"duration_ms"`
}

// TestScript runs one function of a stored script, or of unsaved source,
// on the given input without touching any token.
func (e *Engine) TestScript(ctx context.Context, name string, req *DryRunRequest) (*DryRunResult, error) {
	if e.hooks == nil {
		return nil, Errorf(CodeServerError, "scripts are not enabled")
	}
	s, err := e.st.Scripts.ScriptByName(ctx, name)
	switch {
	case errors.Is(err, ErrNotFound) && req.Source != "":
		s = &hooks.Script{Name: name, Kind: hooks.KindIntrospection, Enabled: true, Timeout: DefaultScriptTimeout}
	case errors.Is(err, ErrNotFound):
		return nil, Errorf(CodeNotFound, "script %q does not exist", name)
	case err != nil:
		return nil, storeFailure(err)
	}
	if req.Source != "" {
		// Unsaved code would run in the server's own process for an
		// inline script, which only keyhook:admin may write (as replay).
		if delegated(ctx) && s.Isolation == hooks.IsolationInline {
			return nil, Errorf(CodeInsufficientScope, "isolation: only %s may try unsaved code on a script that runs inline", AdminScope)
		}
		cp := *s
		cp.Source, cp.Version = req.Source, "dry-run:"+TokenHash(req.Source)
		s = &cp
		if err := e.hooks.Runtime().Check(name, s.Source); err != nil {
			return nil, fieldError("source", "%v", err)
		}
	}
	fn := hooks.Function(req.Function)
	if fn == "" {
		fn = hooks.FnModifyResponse
		switch s.Kind {
		case hooks.KindUpdateToken:
			fn = hooks.FnModifyAccessToken
		case hooks.KindRegistration:
			fn = hooks.FnValidateRegistration
		}
	}
	if !scriptFunctionPattern.MatchString(string(fn)) {
		return nil, fieldError("function", "must be a JavaScript function name")
	}
	if req.Secrets != nil {
		secrets, err := resolveSecrets(req.Secrets, s.Secrets)
		if err != nil {
			return nil, err
		}
		cp := *s
		cp.Secrets = secrets
		s = &cp
	}
	hctx := req.Context
	if hctx == nil {
		hctx = map[string]any{}
	}
	if _, ok := hctx["config"]; !ok {
		cfg := map[string]any{}
		for k, v := range s.Config {
			cfg[k] = v
		}
		hctx["config"] = cfg
	}
	// context.secrets are the script's, whatever the request's context
	// says: they are what the answer is redacted for.
	secrets := map[string]any{}
	for k, v := range s.Secrets {
		secrets[k] = v
	}
	hctx["secrets"] = secrets
	// The dry run runs under a runtime name of its own: under the
	// script's, unsaved code (or a replay's many calls) would replace the
	// live version's program, hold its runtimes and slow-call gate, and
	// count its failures as the live script's.
	run := *s
	run.Name = name + hooks.DryRunSuffix
	res, err := e.hooks.Runtime().Call(ctx, &run, &hooks.Call{Function: fn, Args: req.Args, Context: hctx,
		SafeFetchOnly: req.safeFetchOnly})
	out := &DryRunResult{ArgsAfter: req.Args, Logs: []string{}}
	if res != nil && res.Logs != nil {
		out.Logs = res.Logs // kept even when the call failed
	}
	if se := (*hooks.ScriptError)(nil); errors.As(err, &se) && se.Script == run.Name {
		cp := *se
		cp.Script = name
		err = &cp
	}
	if err != nil {
		msg := err.Error()
		out.Error = &msg
		return redactDryRun(s, out), nil
	}
	if !res.Defined {
		msg := "the script does not define " + string(fn)
		out.Error = &msg
		return redactDryRun(s, out), nil
	}
	out.Result, out.ArgsAfter, out.DurationMS = res.Return, res.Args, float64(res.Duration.Microseconds())/1000
	if out.ArgsAfter == nil {
		out.ArgsAfter = []any{}
	}
	return redactDryRun(s, out), nil
}

// redactDryRun takes s's secret values out of a dry run's answer. The
// runtime redacted the logs and the error already; the values are the
// script's answer, which a real call would put in a token, but a dry run
// shows them to whoever runs the test.
func redactDryRun(s *hooks.Script, out *DryRunResult) *DryRunResult {
	out.Result = s.RedactValue(out.Result)
	if args, ok := s.RedactValue(out.ArgsAfter).([]any); ok {
		out.ArgsAfter = args
	}
	for i, l := range out.Logs {
		out.Logs[i] = s.Redact(l)
	}
	if out.Error != nil {
		msg := s.Redact(*out.Error)
		out.Error = &msg
	}
	return out
}

var scriptFunctionPattern = regexp.MustCompile(`^[A-Za-z_$][A-Za-z0-9_$]{0,63}$`)

// UserDoc is a user as the admin API reads and writes it.
type UserDoc struct {
	Username string         `json:"username"`
	Password string         `json:"password,omitempty"`
	Claims   map[string]any `json:"claims"`
	Disabled bool           `json:"disabled"`
}

// usernamePattern: like clientIDPattern (usable in
// /admin/v1/users/{username} without escaping), e-mail addresses included.
var usernamePattern = regexp.MustCompile(`^[A-Za-z0-9._~@+-]{1,128}$`)

// UserDocument is the admin view of u (no password).
func UserDocument(u *User) *UserDoc {
	claims := u.Claims
	if claims == nil {
		claims = map[string]any{}
	}
	return &UserDoc{Username: u.Username, Claims: claims, Disabled: u.Disabled}
}

// CreateUser stores a user with a hashed password.
func (e *Engine) CreateUser(ctx context.Context, doc *UserDoc) (*UserDoc, error) {
	return e.createUser(ctx, doc, true)
}

// createUser stores a user. Without requirePassword (imports of exports,
// which leave passwords out) a user may come without one: it cannot sign
// in until an admin sets a password.
func (e *Engine) createUser(ctx context.Context, doc *UserDoc, requirePassword bool) (*UserDoc, error) {
	if !usernamePattern.MatchString(doc.Username) {
		return nil, fieldError("username", "must be 1 to 128 of A-Z a-z 0-9 . _ ~ @ + -")
	}
	if doc.Password == "" && requirePassword {
		return nil, fieldError("password", "is required")
	}
	if len(doc.Password) > 1024 {
		return nil, fieldError("password", "is too long")
	}
	hash := ""
	if doc.Password != "" {
		var err error
		if hash, err = e.hashPassword(ctx, doc.Password); err != nil {
			return nil, err
		}
	}
	u := &User{Username: doc.Username, PasswordHash: hash, Claims: doc.Claims,
		Disabled: doc.Disabled, CreatedAt: e.now(), UpdatedAt: e.now()}
	if err := e.st.Users.CreateUser(ctx, u); errors.Is(err, ErrConflict) {
		return nil, Errorf(CodeConflict, "username: %q exists already", u.Username)
	} else if err != nil {
		return nil, storeFailure(err)
	}
	return UserDocument(u), nil
}

// ReplaceUser replaces a user; the password is kept unless given.
func (e *Engine) ReplaceUser(ctx context.Context, username string, doc *UserDoc) (*UserDoc, error) {
	if doc.Username != "" && doc.Username != username {
		return nil, fieldError("username", "cannot be changed")
	}
	old, err := e.st.Users.UserByName(ctx, username)
	if err != nil {
		return nil, adminErr(err, "user", username)
	}
	u := &User{Username: username, PasswordHash: old.PasswordHash, Claims: doc.Claims, Disabled: doc.Disabled,
		CreatedAt: old.CreatedAt, UpdatedAt: e.now()}
	if doc.Password != "" {
		if len(doc.Password) > 1024 {
			return nil, fieldError("password", "is too long")
		}
		if u.PasswordHash, err = e.hashPassword(ctx, doc.Password); err != nil {
			return nil, err
		}
	}
	if err := e.st.Users.UpdateUser(ctx, u); err != nil {
		return nil, adminErr(err, "user", username) // deleted meanwhile: 404
	}
	return UserDocument(u), nil
}

// UserDoc reads one user.
func (e *Engine) UserDoc(ctx context.Context, username string) (*UserDoc, error) {
	u, err := e.st.Users.UserByName(ctx, username)
	if err != nil {
		return nil, adminErr(err, "user", username)
	}
	return UserDocument(u), nil
}

// UserDocs lists every user.
func (e *Engine) UserDocs(ctx context.Context) ([]*UserDoc, error) {
	all, err := e.st.Users.Users(ctx)
	if err != nil {
		return nil, storeFailure(err)
	}
	out := make([]*UserDoc, len(all))
	for i, u := range all {
		out[i] = UserDocument(u)
	}
	return out, nil
}

// DeleteUser deletes a user.
func (e *Engine) DeleteUser(ctx context.Context, username string) error {
	err := e.st.Users.DeleteUser(ctx, username)
	if err != nil {
		return adminErr(err, "user", username)
	}
	return nil
}
