// Package hooks owns keyhook's hook points: what a script receives, how its
// answer becomes a patch of a token or an introspection response, and which
// scripts run for a given owning client (docs/scripts.md). It depends on the
// standard library only; package scripts provides the JavaScript Runtime.
package hooks

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// Kind is a script's type (the admin API's script field "type").
type Kind string

// Script kinds.
const (
	KindIntrospection Kind = "introspection"
	KindUpdateToken   Kind = "update_token"
	// KindRegistration scripts decide dynamic client registrations
	// (RFC 7591, docs/registration.md): every enabled one runs, in level
	// then name order, since the client they are about has no bindings
	// yet.
	KindRegistration Kind = "registration"
)

// OnError is what happens to a token when its script fails.
type OnError string

// Failure policies (docs/sandbox.md, "Failures").
const (
	OnErrorSkip OnError = "skip" // discard the script's edits, go on
	OnErrorDeny OnError = "deny" // refuse the token
)

// Phase tells a script why it runs (context.phase).
type Phase string

// Phases.
const (
	PhaseIntrospection Phase = "introspection"
	PhaseJWTCreation   Phase = "jwt_creation"
	PhaseToken         Phase = "token"
	PhaseRegistration  Phase = "registration"
)

// Isolation says where a script's calls run (docs/sandbox.md).
type Isolation string

// Isolation modes.
const (
	// IsolationProcess runs calls in worker processes with their own
	// memory limit, killed at the deadline: a script cannot stall, crash
	// or exhaust the server whatever it does. The default.
	IsolationProcess Isolation = "process"
	// IsolationInline runs calls in the server's own process: faster,
	// but a hostile script can hold a runtime inside a long built-in
	// and allocate without a hard bound (docs/sandbox.md lists the
	// risks). Opt-in per script.
	IsolationInline Isolation = "inline"
)

// Script is one version of a stored script as hooks and runtimes see it.
type Script struct {
	Name    string
	Kind    Kind
	Source  string
	Enabled bool
	Level   int
	Config  map[string]string
	Timeout time.Duration
	OnError OnError
	// MemoryMB is the memory budget of one call in MiB; 0 is the
	// runtime's default.
	MemoryMB int
	// Isolation is where calls run; empty is the runtime's default.
	Isolation Isolation
	// AllowedHosts are the hosts context.fetch may reach: exact names or
	// "*.suffix" (netguard.CheckHostPattern); empty disables fetch
	// (docs/scripts.md, "context.fetch").
	AllowedHosts []string
	// Version changes whenever Source changes. Runtimes key compiled
	// programs and runtime pools by Name and Version.
	Version string
	// Secrets are the script's secret values by name, in the clear: the
	// engine seals them at rest and opens them on load. They reach the
	// script as context.secrets, and Redact keeps them out of its log
	// lines and error messages (docs/scripts.md, "Secrets").
	Secrets map[string]string
	// Number is the number of the script's live version in its history
	// (1, 2, 3 …; 0 for a script written before versions were kept),
	// as the admin API shows it (docs/scripts.md, "Versions, rollback
	// and rollout").
	Number int
	// Candidate, when set, is a source tried beside the live one
	// (shadow) or instead of it for some tokens (canary).
	Candidate *Candidate
	// RecordInputs, when positive, is how many inputs of the live
	// version's calls this instance keeps for replay (hooks/record.go;
	// docs/scripts.md, "Replay").
	RecordInputs int
}

// Rollout is how a candidate runs.
type Rollout string

// Rollouts (docs/scripts.md, "Versions, rollback and rollout").
const (
	// RolloutShadow runs the candidate beside the live version on a copy
	// of the same input and discards its result, counting differences.
	RolloutShadow Rollout = "shadow"
	// RolloutCanary uses the candidate's result for Percent % of tokens,
	// chosen stably by token.
	RolloutCanary Rollout = "canary"
)

// Candidate is a source under trial; it runs with its script's settings.
type Candidate struct {
	Source  string
	Rollout Rollout
	Percent int
}

// Function names a function a script may define: one of the hook
// functions below, or any function a dry run asks for.
type Function string

// The hook functions keyhook calls (docs/sandbox.md, docs/scripts.md). Every call site
// names them through these constants.
const (
	FnModifyResponse       Function = "modifyResponse"
	FnModifyAccessToken    Function = "modifyAccessToken"
	FnModifyIDToken        Function = "modifyIdToken"
	FnModifyRefreshToken   Function = "modifyRefreshToken"
	FnAccessTokenLifetime  Function = "getAccessTokenLifetimeInSeconds"
	FnIDTokenLifetime      Function = "getIdTokenLifetimeInSeconds"
	FnRefreshTokenLifetime Function = "getRefreshTokenLifetimeInSeconds"
	// FnValidateAssertion maps or refuses the subject of a JWT bearer
	// grant's assertion (RFC 7523, docs/jwt-bearer.md).
	FnValidateAssertion Function = "validateAssertion"
	// FnModifyTokenExchange decides a token exchange (RFC 8693).
	FnModifyTokenExchange Function = "modifyTokenExchange"
	// FnValidateRegistration is called by registration scripts for a
	// dynamic client registration or its update (RFC 7591, RFC 7592).
	FnValidateRegistration Function = "validateRegistration"
)

// Call is one invocation of a function a script may define.
type Call struct {
	// Function is the top-level function to call, e.g. FnModifyResponse.
	Function Function
	// Args are plain JSON-like values (map[string]any, []any, string,
	// float64, int64, int, bool, nil). The runtime copies them into the
	// script; the caller's values are never changed.
	Args []any
	// Context is passed as the last argument, read-only for the script.
	// The runtime adds context.log(...) to it. Its values may be Lazy.
	// The runtime only reads Context, during the call; the caller must
	// not change it meanwhile.
	Context map[string]any
	// Logger receives context.log lines (with attribute script=<name>);
	// nil means slog.Default().
	Logger *slog.Logger
	// SafeFetchOnly lets context.fetch send only GET and HEAD, the safe
	// methods of RFC 9110 §9.2.1: set for calls whose answer is
	// discarded (a shadow candidate, a replay), which must change nothing
	// upstream (docs/scripts.md, "context.fetch").
	SafeFetchOnly bool
}

// Lazy is a Context value computed when a script first reads it, so that
// parts of the context most scripts never read (the request, the user)
// cost nothing. Value runs on the calling goroutine, inside the call and
// under its deadline, and may run once per script that reads it.
type Lazy interface {
	Value() any
}

// Result is what one Call produced.
type Result struct {
	// Defined is false when the script does not define Function; then
	// nothing ran and the other fields are zero.
	Defined bool
	// Return is the function's return value exported as a plain value
	// (bool, string, int64, float64, map[string]any, []any or nil;
	// undefined becomes nil).
	Return any
	// Args holds Call.Args as they stand after the call, exported as
	// plain values: this is how in-place edits come back.
	Args []any
	// Logs holds the lines the script wrote with context.log.
	Logs     []string
	Duration time.Duration
}

// Runtime compiles and runs scripts. Implementations are safe for
// concurrent use.
type Runtime interface {
	// Check compiles source and reports a *SyntaxError when it does not.
	Check(name, source string) error
	// Call runs call.Function of s. It returns a *ScriptError when the
	// script throws, runs past s.Timeout (or ctx's deadline), or recurses
	// too deep; a *SyntaxError when s does not compile.
	Call(ctx context.Context, s *Script, call *Call) (*Result, error)
}

// SyntaxError reports JavaScript that does not compile.
type SyntaxError struct {
	Line, Column int
	Message      string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("syntax error at line %d, column %d: %s", e.Line, e.Column, e.Message)
}

// FailureKind classifies a failed call (used for logs and metrics).
type FailureKind string

// Failure kinds.
const (
	FailureException     FailureKind = "exception"
	FailureTimeout       FailureKind = "timeout"
	FailureStackOverflow FailureKind = "stack_overflow"
	FailureWrongType     FailureKind = "wrong_type"
	FailureBusy          FailureKind = "busy"      // no runtime free before the deadline
	FailureMemory        FailureKind = "memory"    // allocated past its budget
	FailureCrash         FailureKind = "crash"     // the process running it died
	FailureCancelled     FailureKind = "cancelled" // the request ended (client gone, server shutting down), not the script's fault
	FailureTripped       FailureKind = "tripped"   // not run because its circuit breaker is open
)

// ScriptError reports a script call that failed at run time.
type ScriptError struct {
	Script   string
	Function Function
	Kind     FailureKind
	Message  string
}

func (e *ScriptError) Error() string {
	return fmt.Sprintf("script %s: %s in %s: %s", e.Script, e.Kind, e.Function, e.Message)
}
