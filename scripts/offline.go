package scripts

// Offline tests: a script's functions run on fixtures, with no server, on
// this package's Runtime and its limits (keyhook script test;
// docs/scripts.md, "Testing scripts offline").

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/keyhook/keyhook/hooks"
)

// Bounds of a fixture's timeout_ms: those of a stored script's
// (docs/scripts.md, "Storing and binding scripts").
const (
	fixtureDefaultTimeout = 100 * time.Millisecond
	fixtureMaxTimeoutMS   = 5000
)

// Fixture is one NAME.test.json: a call of one function of a script and
// what it must do.
type Fixture struct {
	// Path is the file it was read from.
	Path     string         `json:"-"`
	Function hooks.Function `json:"function"`
	Args     []any          `json:"args"`
	// Context is what the script gets as context, as docs/scripts.md
	// ("context") describes it; config and secrets come from it and
	// Secrets, and log is added by the runtime.
	Context   map[string]any    `json:"context"`
	Secrets   map[string]string `json:"secrets,omitempty"`
	TimeoutMS int64             `json:"timeout_ms,omitempty"`
	Expect    Expectation       `json:"expect"`
}

// Expectation is what a fixture's call must do. Result and ArgsAfter are
// raw so that an absent field (not checked) differs from null.
type Expectation struct {
	Result    json.RawMessage `json:"result,omitempty"`
	ArgsAfter json.RawMessage `json:"args_after,omitempty"`
	// Error, when set, is a substring of the error the call must fail
	// with; when absent or null the call must succeed.
	Error *string `json:"error"`
	// Logs, when set, are the exact context.log lines.
	Logs *[]string `json:"logs,omitempty"`
}

// contextFields are the fields of context a fixture may give
// (docs/scripts.md, "context"); secrets come from the fixture's own
// secrets, log and fetch from the runtime.
var contextFields = map[string]bool{
	"phase": true, "client": true, "caller": true, "token": true, "user": true, "request": true, "config": true, "registration": true,
}

var functionName = regexp.MustCompile(`^[A-Za-z_$][A-Za-z0-9_$]{0,63}$`)

// ReadFixture reads and validates the fixture at path: an unknown field,
// anywhere, is an error naming the file and the field.
func ReadFixture(path string) (*Fixture, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var f Fixture
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%s: more than one JSON value", path)
	}
	f.Path = path
	if err := f.validate(); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return &f, nil
}

func (f *Fixture) validate() error {
	if !functionName.MatchString(string(f.Function)) {
		return errors.New(`"function" must be a JavaScript function name`)
	}
	if f.Args == nil {
		f.Args = []any{}
	}
	if f.Context == nil {
		f.Context = map[string]any{}
	}
	for k := range f.Context {
		if !contextFields[k] {
			return fmt.Errorf(`unknown field "context.%s" (context has phase, client, caller, token, user, request and config; secrets are the fixture's "secrets")`, k)
		}
	}
	if cfg, ok := f.Context["config"]; ok && cfg != nil {
		m, ok := cfg.(map[string]any)
		if !ok {
			return errors.New(`"context.config" must be an object of strings`)
		}
		for k, v := range m {
			if _, ok := v.(string); !ok {
				return fmt.Errorf(`"context.config.%s" must be a string, as a script's config is`, k)
			}
		}
	}
	if f.TimeoutMS != 0 && (f.TimeoutMS < 1 || f.TimeoutMS > fixtureMaxTimeoutMS) {
		return fmt.Errorf(`"timeout_ms" must be between 1 and %d`, fixtureMaxTimeoutMS)
	}
	if f.Expect.Error == nil {
		if f.Expect.Result == nil {
			return errors.New(`"expect.result" is needed when no error is expected`)
		}
		if f.Expect.ArgsAfter == nil {
			return errors.New(`"expect.args_after" is needed when no error is expected`)
		}
	}
	for _, raw := range []json.RawMessage{f.Expect.Result, f.Expect.ArgsAfter} {
		if raw != nil && !json.Valid(raw) {
			return errors.New(`"expect" holds invalid JSON`)
		}
	}
	if f.Expect.ArgsAfter != nil && string(f.Expect.ArgsAfter) != "null" {
		var a []any
		if json.Unmarshal(f.Expect.ArgsAfter, &a) != nil {
			return errors.New(`"expect.args_after" must be an array`)
		}
	}
	return nil
}

// Fixtures finds the fixtures of the script at path: BASENAME.test.json
// and every BASENAME.*.test.json beside it, in name order.
func Fixtures(path string) ([]string, error) {
	dir, base := filepath.Dir(path), strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	one := filepath.Join(dir, base+".test.json")
	var found []string
	if _, err := os.Stat(one); err == nil {
		found = append(found, one)
	}
	more, err := filepath.Glob(filepath.Join(dir, globEscape(base)+".*.test.json"))
	if err != nil {
		return nil, err
	}
	sort.Strings(more)
	return append(found, more...), nil
}

func globEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`)
	return r.Replace(s)
}

// Difference is one path where what a call did is not what its fixture
// expects, e.g. args_after[0].realmName. Expected or Got is absent when
// the path exists on one side only.
type Difference struct {
	Path     string `json:"path"`
	Expected any    `json:"expected"`
	Got      any    `json:"got"`
	Missing  bool   `json:"missing,omitempty"`    // expected, not there
	Extra    bool   `json:"unexpected,omitempty"` // there, not expected
}

func (d Difference) String() string {
	switch {
	case d.Missing:
		return fmt.Sprintf("%s: expected %s, missing", d.Path, jsonText(d.Expected))
	case d.Extra:
		return fmt.Sprintf("%s: not expected, got %s", d.Path, jsonText(d.Got))
	}
	return fmt.Sprintf("%s: expected %s, got %s", d.Path, jsonText(d.Expected), jsonText(d.Got))
}

func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// FixtureReport is what one fixture's call did and how it differs from
// the expectation.
type FixtureReport struct {
	Fixture    string       `json:"fixture"`
	Function   string       `json:"function"`
	Passed     bool         `json:"passed"`
	Result     any          `json:"result"`
	ArgsAfter  []any        `json:"args_after"`
	Error      *string      `json:"error"`
	Logs       []string     `json:"logs"`
	DurationMS float64      `json:"duration_ms"`
	Failures   []string     `json:"failures"`
	Diff       []Difference `json:"diff"`
}

// OfflineScript is the script at path as the server would run it,
// named for its file: name.js is script "name".
func OfflineScript(path, source string, isolation hooks.Isolation) *hooks.Script {
	sum := sha256.Sum256([]byte(source))
	return &hooks.Script{
		Name:      strings.TrimSuffix(filepath.Base(path), filepath.Ext(path)),
		Kind:      hooks.KindIntrospection,
		Source:    source,
		Enabled:   true,
		Isolation: isolation,
		Timeout:   fixtureDefaultTimeout,
		Version:   "offline:" + hex.EncodeToString(sum[:8]),
	}
}

// RunFixture calls f's function of s on rt, as the server calls it
// (hooks.Runtime.Call, with s's isolation and limits and the fixture's
// timeout_ms), and compares what it did with f.Expect.
func RunFixture(ctx context.Context, rt hooks.Runtime, s *hooks.Script, f *Fixture) *FixtureReport {
	cp := *s
	cp.Secrets = f.Secrets
	if f.TimeoutMS > 0 {
		cp.Timeout = time.Duration(f.TimeoutMS) * time.Millisecond
	}
	hctx := make(map[string]any, len(f.Context)+2)
	for k, v := range f.Context {
		hctx[k] = v
	}
	cfg, _ := hctx["config"].(map[string]any)
	if cfg == nil {
		cfg = map[string]any{}
	}
	hctx["config"] = cfg
	cp.Config = make(map[string]string, len(cfg))
	for k, v := range cfg {
		cp.Config[k], _ = v.(string)
	}
	secrets := make(map[string]any, len(f.Secrets))
	for k, v := range f.Secrets {
		secrets[k] = v
	}
	hctx["secrets"] = secrets

	rep := &FixtureReport{Fixture: f.Path, Function: string(f.Function), Logs: []string{},
		Failures: []string{}, Diff: []Difference{}}
	res, err := rt.Call(ctx, &cp, &hooks.Call{Function: f.Function, Args: f.Args, Context: hctx,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if res != nil && res.Logs != nil {
		rep.Logs = res.Logs
	}
	if err == nil && !res.Defined {
		err = fmt.Errorf("the script does not define %s", f.Function)
	}
	if err != nil {
		msg := err.Error()
		rep.Error = &msg
	} else {
		rep.Result, rep.ArgsAfter = asJSON(res.Return), asJSONSlice(res.Args)
		rep.DurationMS = float64(res.Duration.Microseconds()) / 1000
	}
	if rep.ArgsAfter == nil {
		rep.ArgsAfter = []any{}
	}

	want := f.Expect
	switch {
	case want.Error == nil && rep.Error != nil:
		rep.Failures = append(rep.Failures, "unexpected error: "+*rep.Error)
	case want.Error != nil && rep.Error == nil:
		rep.Failures = append(rep.Failures, fmt.Sprintf("expected an error containing %q, the call succeeded", *want.Error))
	case want.Error != nil && !strings.Contains(*rep.Error, *want.Error):
		rep.Failures = append(rep.Failures, fmt.Sprintf("expected an error containing %q, got: %s", *want.Error, *rep.Error))
	}
	if rep.Error == nil {
		if want.Result != nil {
			rep.Diff = append(rep.Diff, diff("result", decodeRaw(want.Result), rep.Result)...)
		}
		if want.ArgsAfter != nil {
			rep.Diff = append(rep.Diff, diff("args_after", decodeRaw(want.ArgsAfter), asJSON(rep.ArgsAfter))...)
		}
	}
	if want.Logs != nil {
		rep.Diff = append(rep.Diff, diff("logs", asJSON(*want.Logs), asJSON(rep.Logs))...)
	}
	rep.Passed = len(rep.Failures) == 0 && len(rep.Diff) == 0
	return rep
}

// asJSON gives v as encoding/json decodes it (float64 numbers, []any,
// map[string]any), so that expected and got values compare by value.
func asJSON(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	var out any
	_ = json.Unmarshal(b, &out)
	return out
}

func asJSONSlice(v []any) []any {
	if v == nil {
		return nil
	}
	out, _ := asJSON(v).([]any)
	return out
}

func decodeRaw(raw json.RawMessage) any {
	var v any
	_ = json.Unmarshal(raw, &v)
	return v
}

// diff lists the paths where got differs from want, depth first, in key
// order.
func diff(path string, want, got any) []Difference {
	wm, wok := want.(map[string]any)
	gm, gok := got.(map[string]any)
	if wok && gok {
		keys := make([]string, 0, len(wm)+len(gm))
		for k := range wm {
			keys = append(keys, k)
		}
		for k := range gm {
			if _, ok := wm[k]; !ok {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		var out []Difference
		for _, k := range keys {
			p := path + "." + k
			if !identifier.MatchString(k) {
				p = path + "[" + strconv.Quote(k) + "]"
			}
			wv, inW := wm[k]
			gv, inG := gm[k]
			switch {
			case !inG:
				out = append(out, Difference{Path: p, Expected: wv, Missing: true})
			case !inW:
				out = append(out, Difference{Path: p, Got: gv, Extra: true})
			default:
				out = append(out, diff(p, wv, gv)...)
			}
		}
		return out
	}
	wa, wok := want.([]any)
	ga, gok := got.([]any)
	if wok && gok {
		var out []Difference
		for i := 0; i < max(len(wa), len(ga)); i++ {
			p := fmt.Sprintf("%s[%d]", path, i)
			switch {
			case i >= len(ga):
				out = append(out, Difference{Path: p, Expected: wa[i], Missing: true})
			case i >= len(wa):
				out = append(out, Difference{Path: p, Got: ga[i], Extra: true})
			default:
				out = append(out, diff(p, wa[i], ga[i])...)
			}
		}
		return out
	}
	if reflect.DeepEqual(want, got) {
		return nil
	}
	return []Difference{{Path: path, Expected: want, Got: got}}
}

var identifier = regexp.MustCompile(`^[A-Za-z_$][A-Za-z0-9_$]*$`)
