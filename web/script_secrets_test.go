package web_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/keyhook/keyhook/engine"
)

// reverse is s backwards: the probe scripts below answer their secrets
// reversed, which redaction does not recognise (docs/scripts.md), so the
// tests can see what a script was given.
func reverse(s string) string {
	r := []rune(s)
	slices.Reverse(r)
	return string(r)
}

// probeSecrets dry-runs probe of the stored script name and returns its
// secrets as the script saw them.
func probeSecrets(t *testing.T, h *harness, name string) map[string]string {
	t.Helper()
	r := h.admin(http.MethodPost, "/scripts/"+name+"/test", map[string]any{"function": "probe", "args": []any{}})
	res, ok := r.json["result"].(map[string]any)
	if r.status != http.StatusOK || !ok {
		t.Fatalf("probe: %d %s", r.status, r.body)
	}
	out := map[string]string{}
	for k, v := range res {
		out[k] = reverse(v.(string))
	}
	return out
}

const probeSource = "function modifyResponse(r, c) { return true; }\n" +
	"function probe(c) { var o = {}; for (var k in c.secrets) o[k] = c.secrets[k].split('').reverse().join(''); return o; }"

// TestScriptSecretsAdmin checks that script secrets are write-only: every
// answer names them with (set) and never carries a value; a PUT without
// secrets keeps them, a PUT with secrets replaces them ((set) keeps one),
// a PATCH merges (null removes one).
func TestScriptSecretsAdmin(t *testing.T) {
	h := newHarness(t)
	values := []string{"sk-live-4f9a8e7d6c5b", "other-secret-1a2b3c", "third-secret-9z8y7x", "fourth-secret-6w5v4u"}
	doc := func(extra map[string]any) map[string]any {
		d := map[string]any{"type": "introspection", "source": probeSource}
		for k, v := range extra {
			d[k] = v
		}
		return d
	}
	steps := []struct {
		name       string
		method     string
		path       string
		body       any
		status     int
		wantAnswer map[string]any // the answer's secrets; nil: not checked
		want       map[string]string
	}{
		{"create", http.MethodPost, "/scripts", doc(map[string]any{"name": "vault",
			"secrets": map[string]string{"api_key": values[0], "other": values[1]}}),
			http.StatusCreated, map[string]any{"api_key": "(set)", "other": "(set)"},
			map[string]string{"api_key": values[0], "other": values[1]}},
		{"get", http.MethodGet, "/scripts/vault", nil, http.StatusOK, map[string]any{"api_key": "(set)", "other": "(set)"},
			map[string]string{"api_key": values[0], "other": values[1]}},
		{"put without secrets keeps them", http.MethodPut, "/scripts/vault", doc(map[string]any{"level": 7}),
			http.StatusOK, map[string]any{"api_key": "(set)", "other": "(set)"},
			map[string]string{"api_key": values[0], "other": values[1]}},
		{"put with secrets replaces them, (set) keeps one", http.MethodPut, "/scripts/vault",
			doc(map[string]any{"secrets": map[string]string{"api_key": "(set)", "new": values[2]}}),
			http.StatusOK, map[string]any{"api_key": "(set)", "new": "(set)"},
			map[string]string{"api_key": values[0], "new": values[2]}},
		{"patch null removes one", http.MethodPatch, "/scripts/vault", map[string]any{"secrets": map[string]any{"new": nil}},
			http.StatusOK, map[string]any{"api_key": "(set)"}, map[string]string{"api_key": values[0]}},
		{"patch sets one", http.MethodPatch, "/scripts/vault", map[string]any{"secrets": map[string]any{"api_key": values[3]}},
			http.StatusOK, map[string]any{"api_key": "(set)"}, map[string]string{"api_key": values[3]}},
		{"patch without secrets keeps them", http.MethodPatch, "/scripts/vault", map[string]any{"level": 9},
			http.StatusOK, map[string]any{"api_key": "(set)"}, map[string]string{"api_key": values[3]}},
		{"create with a reference", http.MethodPost, "/scripts", doc(map[string]any{"name": "ref",
			"secrets": map[string]string{"k": "(set)"}}), http.StatusBadRequest, nil, nil},
		{"a reference to nothing", http.MethodPut, "/scripts/vault", doc(map[string]any{"secrets": map[string]string{"nope": "(set)"}}),
			http.StatusBadRequest, nil, map[string]string{"api_key": values[3]}},
		{"an empty value", http.MethodPut, "/scripts/vault", doc(map[string]any{"secrets": map[string]string{"api_key": ""}}),
			http.StatusBadRequest, nil, map[string]string{"api_key": values[3]}},
		{"a bad name", http.MethodPut, "/scripts/vault", doc(map[string]any{"secrets": map[string]string{"a b": "x"}}),
			http.StatusBadRequest, nil, map[string]string{"api_key": values[3]}},
		{"put with no secrets clears them", http.MethodPut, "/scripts/vault", doc(map[string]any{"secrets": map[string]string{}}),
			http.StatusOK, map[string]any{}, map[string]string{}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			r := h.admin(st.method, st.path, st.body)
			if r.status != st.status {
				t.Fatalf("%s %s: %d %s", st.method, st.path, r.status, r.body)
			}
			for _, v := range values {
				if bytes.Contains(r.body, []byte(v)) {
					t.Fatalf("the answer carries a secret value: %s", r.body)
				}
			}
			if st.wantAnswer != nil {
				got, _ := r.json["secrets"].(map[string]any)
				if got == nil {
					got = map[string]any{}
				}
				if !jsonEqual(got, st.wantAnswer) {
					t.Errorf("answer's secrets %v, want %v", got, st.wantAnswer)
				}
			}
			if st.want != nil {
				if got := probeSecrets(t, h, "vault"); !jsonEqual(got, st.want) {
					t.Errorf("the script sees %v, want %v", got, st.want)
				}
			}
		})
	}
	for _, path := range []string{"/scripts", "/scripts/vault"} {
		if r := h.admin(http.MethodGet, path, nil); bytes.Contains(r.body, []byte(values[3])) {
			t.Errorf("GET %s carries a secret value: %s", path, r.body)
		}
	}
}

// TestScriptSecretsRedacted runs hostile scripts that try to leak their
// secrets through the server log (context.log, exceptions), a dry run's
// answer, an export and the database file (with a KEK), in both isolation
// modes: none of them may carry a value.
func TestScriptSecretsRedacted(t *testing.T) {
	const secret = "sk-live-8d7c6b5a4f3e"
	const quoted = `pa"ss\word-2b3c4d` // JSON escapes it inside a string
	for _, isolation := range []string{"process", "inline"} {
		t.Run(isolation, func(t *testing.T) {
			var logs syncBuffer
			kek, _ := engine.ParseKEK(engine.NewKEK())
			dir := t.TempDir()
			h := newHarness(t, withKEK(kek), withDSN("sqlite:"+filepath.Join(dir, "keyhook.db")),
				withLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
			secrets := map[string]string{"api_key": secret, "quoted": quoted}
			h.createScript(introspectionScript("leaky", `context.log("key", context.secrets.api_key, context.secrets);
				context.log("quoted", context.secrets.quoted);
				response.leaked = context.secrets.api_key;
				return true;`, map[string]any{"isolation": isolation, "secrets": secrets}))
			h.createScript(introspectionScript("thrower", `throw new Error("no luck with " + context.secrets.api_key);`,
				map[string]any{"isolation": isolation, "secrets": secrets, "level": 200}))
			h.createClient(map[string]any{"client_id": "victim", "client_secret": "victim-secret",
				"introspection_scripts": []string{"leaky", "thrower"}})
			tok := h.mustToken("victim", "victim-secret", "").AccessToken
			// Inherent: what a script puts in an answer is its own doing.
			if got := h.introspect(tok)["leaked"]; got != secret {
				t.Fatalf("introspection: leaked = %v", got)
			}

			dry := h.admin(http.MethodPost, "/scripts/leaky/test", map[string]any{"args": []any{map[string]any{"active": true}}})
			dryThrow := h.admin(http.MethodPost, "/scripts/thrower/test", map[string]any{"args": []any{map[string]any{"active": true}}})
			unsaved := h.admin(http.MethodPost, "/scripts/unsaved/test", map[string]any{
				"source":  "function modifyResponse(r, c) { c.log(c.secrets.tmp); r.tmp = c.secrets.tmp; return c.secrets.tmp; }",
				"secrets": map[string]string{"tmp": "unsaved-secret-77aa"}, "args": []any{map[string]any{}}})
			export, err := h.eng.Export(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			exported, _ := json.Marshal(export)
			h.store.Close()
			var file []byte
			for _, f := range []string{"keyhook.db", "keyhook.db-wal"} {
				b, _ := os.ReadFile(filepath.Join(dir, f))
				file = append(file, b...)
			}

			for _, c := range []struct {
				where string
				text  string
				want  []string
			}{
				{"server log", logs.String(), []string{"key [secret] {", `api_key\":\"[secret]`, "quoted [secret]", "no luck with [secret]"}},
				{"dry run", string(dry.body), []string{`"leaked":"[secret]"`, `key [secret]`}},
				{"dry run error", string(dryThrow.body), []string{"no luck with [secret]"}},
				{"dry run of unsaved source", string(unsaved.body), []string{`"result":"[secret]"`, `"tmp":"[secret]"`, `"logs":["[secret]"]`}},
				{"export", string(exported), []string{`"secrets":{"api_key":"(set)","quoted":"(set)"}`}},
				{"database file", string(file), []string{"kek1:"}},
			} {
				for _, v := range []string{secret, quoted, jsonEscaped(quoted), jsonEscaped(jsonEscaped(quoted)), "unsaved-secret-77aa"} {
					if strings.Contains(c.text, v) {
						t.Errorf("the %s carries the secret %q:\n%s", c.where, v, c.text)
					}
				}
				for _, w := range c.want {
					if !strings.Contains(c.text, w) {
						t.Errorf("the %s lacks %q:\n%s", c.where, w, c.text)
					}
				}
			}
		})
	}
}

// TestScriptSecretsImportKeepsStored checks that importing an export,
// whose secrets are (set) references, keeps the stored values.
func TestScriptSecretsImportKeepsStored(t *testing.T) {
	h := newHarness(t)
	h.createScript(map[string]any{"name": "vault", "type": "introspection", "source": probeSource,
		"secrets": map[string]string{"api_key": "kept-secret-5e6f"}})
	export, err := h.eng.Export(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.eng.Import(t.Context(), export); err != nil {
		t.Fatalf("import: %v", err)
	}
	if got := probeSecrets(t, h, "vault"); got["api_key"] != "kept-secret-5e6f" {
		t.Fatalf("after import the script sees %v", got)
	}
}

// jsonEscaped is s as it stands inside a JSON string.
func jsonEscaped(s string) string {
	b, _ := json.Marshal(s)
	return string(b[1 : len(b)-1])
}

// TestScriptSecretsSealedWhenAKEKArrives checks that secrets stored
// without a KEK are sealed in place at the first start with one (the
// script keeps its values), as the keys are (docs/keys.md).
func TestScriptSecretsSealedWhenAKEKArrives(t *testing.T) {
	const secret = "stored-before-kek-6d5c4b"
	dir := t.TempDir()
	dsn := "sqlite:" + filepath.Join(dir, "keyhook.db")
	dbFile := func() string {
		var all []byte
		for _, f := range []string{"keyhook.db", "keyhook.db-wal"} {
			b, _ := os.ReadFile(filepath.Join(dir, f))
			all = append(all, b...)
		}
		return string(all)
	}
	before := newHarness(t, withDSN(dsn))
	before.createScript(map[string]any{"name": "vault", "type": "introspection", "source": probeSource,
		"secrets": map[string]string{"api_key": secret}})
	if k := before.eng.UnencryptedKeys(); k.KEK || !k.Unencrypted() {
		t.Fatalf("without a KEK: %+v", k)
	}
	before.store.Close()
	if !strings.Contains(dbFile(), "clear:"+secret) {
		t.Fatal("without a KEK the secret is not stored as the test expects")
	}

	kek, _ := engine.ParseKEK(engine.NewKEK())
	after := newHarness(t, withDSN(dsn), withKEK(kek))
	if k := after.eng.UnencryptedKeys(); len(k.PlainScriptSecrets) != 0 {
		t.Errorf("after the start with a KEK, scripts with secrets in the clear: %v", k.PlainScriptSecrets)
	}
	if got := probeSecrets(t, after, "vault"); got["api_key"] != secret {
		t.Errorf("after sealing the script sees %v", got)
	}
	after.store.Close()
	if strings.Contains(dbFile(), secret) {
		t.Error("the secret is still in the database file in the clear")
	}
}
