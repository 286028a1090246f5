package main

import (
	"io"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/keyhook/keyhook/engine"
)

// parseServe parses keyhook serve's command line args with the
// environment env, as the serve command does before it serves.
func parseServe(args []string, env map[string]string) (*options, error) {
	o := defaultOptions()
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	serveFlags(fs, o)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return o, finishServeOptions(o, fs, mapEnv(env))
}

// mapEnv is an environment of the variables in m.
func mapEnv(m map[string]string) lookupEnv {
	return func(name string) (string, bool) { v, ok := m[name]; return v, ok }
}

// TestAuthLimitFlags: the authentication limits' flags and environment
// variables (docs/auth-limits.md); out-of-range values are refused.
func TestAuthLimitFlags(t *testing.T) {
	o, err := parseServe(nil, nil)
	if err != nil || o.hashMemoryMB != 128 || o.hashWaitMS != 2000 || o.loginFailures != 5 || o.clientAuthFailures != 5 ||
		o.backoffMaxSeconds != 300 || len(o.trustedProxies) != 0 {
		t.Fatalf("defaults %+v %v", o, err)
	}
	env := map[string]string{"KEYHOOK_TRUSTED_PROXIES": "10.0.0.0/8, 2001:db8::/32", "KEYHOOK_LOGIN_FAILURES": "0"}
	o, err = parseServe([]string{"--client-auth-failures", "9"}, env)
	if err != nil || o.loginFailures != 0 || o.clientAuthFailures != 9 ||
		o.trustedProxies[1] != netip.MustParsePrefix("2001:db8::/32") {
		t.Fatalf("env %+v %v", o, err)
	}
	if th := throttle(0, 60); th.Free >= 0 || th.MaxBackoff != time.Minute {
		t.Fatalf("0 must turn the throttle off: %+v", th)
	}
	for _, args := range [][]string{
		{"--password-hash-memory-mb", "8"}, {"--password-hash-wait-ms", "0"}, {"--login-failures", "-1"},
		{"--client-auth-failures", "x"}, {"--auth-backoff-max-seconds", "0"}, {"--trusted-proxies", "10.0.0.1"},
	} {
		t.Run(args[0]+"="+args[1], func(t *testing.T) {
			if _, err := parseServe(args, nil); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// TestDeviceFlowFlags: --device-code-seconds and
// --device-poll-interval-seconds (docs/device-flow.md) default to the
// engine's 600 s and 5 s, read their environment variables, and refuse
// values out of range.
func TestDeviceFlowFlags(t *testing.T) {
	for _, c := range []struct {
		args         []string
		env          map[string]string
		life, period int // 0: refused
	}{
		{nil, nil, 600, 5},
		{[]string{"--device-code-seconds", "900", "--device-poll-interval-seconds", "2"}, nil, 900, 2},
		{nil, map[string]string{"KEYHOOK_DEVICE_CODE_SECONDS": "120", "KEYHOOK_DEVICE_POLL_INTERVAL_SECONDS": "10"}, 120, 10},
		{[]string{"--device-code-seconds", "59"}, nil, 0, 0},
		{[]string{"--device-code-seconds", "3601"}, nil, 0, 0},
		{[]string{"--device-poll-interval-seconds", "0"}, nil, 0, 0},
		{[]string{"--device-poll-interval-seconds", "61"}, nil, 0, 0},
	} {
		o, err := parseServe(c.args, c.env)
		switch {
		case c.life == 0 && err == nil:
			t.Errorf("%v %v: accepted", c.args, c.env)
		case c.life != 0 && (err != nil || o.deviceCodeSeconds != c.life || o.devicePollSeconds != c.period):
			t.Errorf("%v %v: %v, %v; want %d %d", c.args, c.env, o, err, c.life, c.period)
		}
	}
}

// TestDeviceMaxPerClientFlag: --device-max-per-client (docs/device-flow.md)
// defaults to the engine's 1000, reads its environment variable, and
// refuses values out of range.
func TestDeviceMaxPerClientFlag(t *testing.T) {
	for _, c := range []struct {
		args []string
		env  map[string]string
		want int // 0: refused
	}{
		{nil, nil, engine.DefaultMaxDeviceGrantsPerClient},
		{[]string{"--device-max-per-client", "5000"}, nil, 5000},
		{nil, map[string]string{"KEYHOOK_DEVICE_MAX_PER_CLIENT": "7"}, 7},
		{[]string{"--device-max-per-client", "0"}, nil, 0},
		{[]string{"--device-max-per-client", "1000001"}, nil, 0},
	} {
		o, err := parseServe(c.args, c.env)
		switch {
		case c.want == 0 && err == nil:
			t.Errorf("%v %v: accepted", c.args, c.env)
		case c.want != 0 && (err != nil || o.deviceMaxPerClient != c.want):
			t.Errorf("%v %v: %v, %v; want %d", c.args, c.env, o, err, c.want)
		}
	}
}

// TestLoginSessionFlag: --login-session-seconds (docs/browser-flow.md)
// defaults to the engine's 12 hours, reads its environment variable, and
// refuses values outside 60 s to 30 days.
func TestLoginSessionFlag(t *testing.T) {
	for _, c := range []struct {
		args []string
		env  map[string]string
		want int // 0: refused
	}{
		{nil, nil, int(engine.DefaultSessionLifetime / time.Second)},
		{[]string{"--login-session-seconds", "600"}, nil, 600},
		{nil, map[string]string{"KEYHOOK_LOGIN_SESSION_SECONDS": "3600"}, 3600},
		{[]string{"--login-session-seconds", "900"}, map[string]string{"KEYHOOK_LOGIN_SESSION_SECONDS": "3600"}, 900},
		{[]string{"--login-session-seconds", "59"}, nil, 0},
		{[]string{"--login-session-seconds", "2592001"}, nil, 0},
		{nil, map[string]string{"KEYHOOK_LOGIN_SESSION_SECONDS": "forever"}, 0},
	} {
		o, err := parseServe(c.args, c.env)
		switch {
		case c.want == 0 && err == nil:
			t.Errorf("%v %v: accepted", c.args, c.env)
		case c.want != 0 && (err != nil || o.loginSessionSeconds != c.want):
			t.Errorf("%v %v: %v, %v; want %d", c.args, c.env, o, err, c.want)
		}
	}
}

// TestPARFlags: --par-lifetime-seconds, --par-max-per-client and
// --require-pushed-authorization-requests (docs/par.md) default to the
// engine's values, read their environment variables and refuse values
// out of range.
func TestPARFlags(t *testing.T) {
	for _, c := range []struct {
		args              []string
		env               map[string]string
		lifetime, perClnt int // 0: refused
		require           bool
	}{
		{nil, nil, int(engine.DefaultPushedRequestLifetime / time.Second), engine.DefaultMaxPushedRequestsPerClient, false},
		{[]string{"--par-lifetime-seconds", "90", "--par-max-per-client", "5", "--require-pushed-authorization-requests"}, nil, 90, 5, true},
		{nil, map[string]string{"KEYHOOK_PAR_LIFETIME_SECONDS": "600", "KEYHOOK_REQUIRE_PUSHED_AUTHORIZATION_REQUESTS": "true"}, 600, 1000, true},
		{[]string{"--par-lifetime-seconds", "4"}, nil, 0, 0, false},
		{[]string{"--par-lifetime-seconds", "601"}, nil, 0, 0, false},
		{[]string{"--par-max-per-client", "0"}, nil, 0, 0, false},
	} {
		o, err := parseServe(c.args, c.env)
		switch {
		case c.lifetime == 0 && err == nil:
			t.Errorf("%v %v: accepted", c.args, c.env)
		case c.lifetime != 0 && (err != nil || o.parLifetimeSeconds != c.lifetime || o.parMaxPerClient != c.perClnt || o.requirePAR != c.require):
			t.Errorf("%v %v: %+v, %v", c.args, c.env, o, err)
		}
	}
}

// TestOpenRegistrationFlags: --open-registration is off by default; it,
// --open-registration-scope and --open-registrations-per-address
// (docs/registration.md) read their environment variables, and the
// per-address count is bounded.
func TestOpenRegistrationFlags(t *testing.T) {
	for _, c := range []struct {
		args    []string
		env     map[string]string
		open    bool
		scope   string
		perAddr int // 0: refused
	}{
		{nil, nil, false, "", engine.DefaultOpenRegistrationsPerAddress},
		{[]string{"--open-registration", "--open-registration-scope", "openid profile", "--open-registrations-per-address", "3"}, nil, true, "openid profile", 3},
		{nil, map[string]string{"KEYHOOK_OPEN_REGISTRATION": "true", "KEYHOOK_OPEN_REGISTRATION_SCOPE": "profile",
			"KEYHOOK_OPEN_REGISTRATIONS_PER_ADDRESS": "7"}, true, "profile", 7},
		{[]string{"--open-registrations-per-address", "0"}, nil, false, "", 0},
	} {
		o, err := parseServe(c.args, c.env)
		switch {
		case c.perAddr == 0 && err == nil:
			t.Errorf("%v %v: accepted", c.args, c.env)
		case c.perAddr != 0 && (err != nil || o.openRegistration != c.open || o.openRegistrationScope != c.scope ||
			o.openRegistrationsPerAddr != c.perAddr):
			t.Errorf("%v %v: %+v, %v", c.args, c.env, o, err)
		}
	}
}

// TestSoftwareStatementKeys: --software-statement-jwks reads a JWK Set
// and refuses a file that is missing or holds none.
func TestSoftwareStatementKeys(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	writeFile(t, good, `{"keys":[{"kty":"EC","crv":"P-256","kid":"v1","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}`)
	empty := filepath.Join(dir, "empty.json")
	writeFile(t, empty, `{"keys":[]}`)
	if set, err := loadStatementKeys(good); err != nil || len(set.Keys) != 1 || set.Keys[0].KeyID != "v1" {
		t.Fatalf("good: %v, %v", set, err)
	}
	if set, err := loadStatementKeys(""); err != nil || set != nil {
		t.Fatalf("none: %v, %v", set, err)
	}
	for _, p := range []string{empty, filepath.Join(dir, "missing.json")} {
		if _, err := loadStatementKeys(p); err == nil {
			t.Errorf("%s accepted", p)
		}
	}
}
