package web_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/keyhook/keyhook/engine"
)

// openAPIDoc is the part of an OpenAPI document these tests read.
type openAPIDoc struct {
	OpenAPI string `json:"openapi"`
	Servers []struct {
		URL string `json:"url"`
	} `json:"servers"`
	Paths      map[string]map[string]json.RawMessage `json:"paths"`
	Components struct {
		Schemas map[string]struct {
			Properties map[string]json.RawMessage `json:"properties"`
		} `json:"schemas"`
		SecuritySchemes map[string]struct {
			Flows struct {
				ClientCredentials struct {
					Scopes map[string]string `json:"scopes"`
				} `json:"clientCredentials"`
			} `json:"flows"`
		} `json:"securitySchemes"`
	} `json:"components"`
}

type openAPIOperation struct {
	OperationID string                     `json:"operationId"`
	Security    *[]map[string][]string     `json:"security"`
	Responses   map[string]json.RawMessage `json:"responses"`
	RequestBody *struct {
		Content map[string]json.RawMessage `json:"content"`
	} `json:"requestBody"`
}

var openAPIMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// servedOpenAPI fetches /admin/v1/openapi.json without a token.
func servedOpenAPI(t *testing.T, h *harness) (*openAPIDoc, []byte) {
	t.Helper()
	r := h.call("", http.MethodGet, "/admin/v1/openapi.json", nil)
	if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
		t.Fatalf("GET /admin/v1/openapi.json: %d %q %.200s", r.status, r.header.Get("Content-Type"), r.body)
	}
	var doc openAPIDoc
	if err := json.Unmarshal(r.body, &doc); err != nil {
		t.Fatalf("the document is not JSON: %v", err)
	}
	return &doc, r.body
}

var pathParam = regexp.MustCompile(`\{[^}]+\}|:[^/]+`)

// TestOpenAPIMatchesRoutes: the document served at
// /admin/v1/openapi.json is the embedded web/openapi.json, OpenAPI
// 3.1; every admin route the server registers is in it with the same
// method, and every operation in it is registered; OPTIONS on each
// path allows exactly its methods; each operation has responses, and
// each that needs a token says which scopes and answers 401 and 403.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	h := newHarness(t)
	doc, served := servedOpenAPI(t, h)
	file, err := os.ReadFile("openapi.json")
	if err != nil || !bytes.Equal(file, served) {
		t.Fatalf("the served document is not web/openapi.json (%v)", err)
	}
	if !regexp.MustCompile(`^3\.1\.\d+$`).MatchString(doc.OpenAPI) {
		t.Fatalf("openapi = %q, want 3.1.x", doc.OpenAPI)
	}
	if len(doc.Servers) != 1 || doc.Servers[0].URL != "/admin/v1" {
		t.Fatalf("servers = %+v, want /admin/v1", doc.Servers)
	}
	scopes := doc.Components.SecuritySchemes["keyhook"].Flows.ClientCredentials.Scopes

	documented := map[string]bool{}
	ids := map[string]bool{}
	for path, item := range doc.Paths {
		params := pathParam.FindAllString(path, -1)
		var declared []string
		if raw, ok := item["parameters"]; ok {
			var ps []struct{ Name, In string }
			_ = json.Unmarshal(raw, &ps)
			for _, p := range ps {
				declared = append(declared, "{"+p.Name+"}")
			}
		}
		if !slices.Equal(params, declared) {
			t.Errorf("%s declares path parameters %v", path, declared)
		}
		for m, raw := range item {
			if m == "parameters" {
				continue
			}
			if !slices.Contains(openAPIMethods, m) {
				t.Errorf("%s has a member %q", path, m)
				continue
			}
			key := strings.ToUpper(m) + " " + pathParam.ReplaceAllString("/admin/v1"+path, "{}")
			documented[key] = true
			var op openAPIOperation
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatalf("%s: %v", key, err)
			}
			if op.OperationID == "" || ids[op.OperationID] {
				t.Errorf("%s: operationId %q missing or not unique", key, op.OperationID)
			}
			ids[op.OperationID] = true
			if len(op.Responses) == 0 {
				t.Errorf("%s has no responses", key)
			}
			area := routeAreas[strings.ToUpper(m)+" /admin/v1"+pathParam.ReplaceAllStringFunc(path, func(p string) string {
				switch {
				case p == "{number}":
					return ":number"
				case strings.HasPrefix(path, "/clients"), strings.HasPrefix(path, "/registration-tokens"):
					return ":id"
				}
				return ":name"
			})]
			if op.Security == nil {
				t.Errorf("%s: no security (use [] for none)", key)
				continue
			}
			if area == "" {
				if len(*op.Security) != 0 {
					t.Errorf("%s needs no token but its security is %v", key, *op.Security)
				}
				continue
			}
			need := "keyhook:" + area + ".write"
			if m == "get" {
				need = "keyhook:" + area + ".read"
			}
			want := []map[string][]string{{"keyhook": {"keyhook:admin"}}, {"keyhook": {need}}}
			if area == "admin" { // keyhook:admin only
				need, want = "keyhook:admin", want[:1]
			}
			if !reflect.DeepEqual(*op.Security, want) {
				t.Errorf("%s: security %v, want %v", key, *op.Security, want)
			}
			if scopes[need] == "" {
				t.Errorf("%s: scope %s is not in the security scheme", key, need)
			}
			for _, code := range []string{"401", "403"} {
				if _, ok := op.Responses[code]; !ok {
					t.Errorf("%s has no %s response", key, code)
				}
			}
			if m == "patch" {
				if op.RequestBody == nil || op.RequestBody.Content["application/merge-patch+json"] == nil {
					t.Errorf("%s: no application/merge-patch+json body", key)
				}
				if _, ok := op.Responses["415"]; !ok {
					t.Errorf("%s has no 415 response", key)
				}
			}
			if op.RequestBody != nil {
				if _, ok := op.Responses["400"]; !ok {
					t.Errorf("%s takes a body but has no 400 response", key)
				}
			}
			if strings.Contains(path, "{") {
				if _, ok := op.Responses["404"]; !ok {
					t.Errorf("%s has no 404 response", key)
				}
			}
		}
	}

	registered := map[string]bool{}
	for _, rt := range h.srv.Config.Handler.(*echo.Echo).Routes() {
		if strings.HasPrefix(rt.Path, "/admin/v1/") {
			registered[rt.Method+" "+pathParam.ReplaceAllString(rt.Path, "{}")] = true
		}
	}
	for key := range registered {
		if !documented[key] {
			t.Errorf("route %s is not in web/openapi.json", key)
		}
	}
	for key := range documented {
		if !registered[key] {
			t.Errorf("web/openapi.json has %s, which the server does not register", key)
		}
	}

	// echo answers OPTIONS itself with the path's methods: they are the
	// document's (HEAD is not served, so it is documented nowhere).
	for path, item := range doc.Paths {
		var want []string
		for m := range item {
			if m != "parameters" {
				want = append(want, strings.ToUpper(m))
			}
		}
		want = append(want, http.MethodOptions)
		sort.Strings(want)
		probe := pathParam.ReplaceAllString("/admin/v1"+path, "probe")
		r := h.call("", http.MethodOptions, probe, nil)
		var got []string
		for _, m := range strings.Split(r.header.Get("Allow"), ",") {
			got = append(got, strings.TrimSpace(m))
		}
		sort.Strings(got)
		if r.status != http.StatusNoContent || !slices.Equal(got, want) {
			t.Errorf("OPTIONS %s: %d Allow %v, want %v", probe, r.status, got, want)
		}
	}
}

// jsonNames are the JSON member names of a struct type's fields.
func jsonNames(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// pendingClientMembers are Client schema members documented before the
// admin API reads them on this branch; each is accepted or refused as
// unknown, nothing else.
var pendingClientMembers = map[string]bool{"allowed_cors_origins": true}

// TestOpenAPISchemasMatchDocs: the schemas' properties are the members
// the admin API reads and writes (the JSON names of engine.ClientDoc,
// ScriptDoc, UserDoc and Properties), and each is accepted by the API,
// while a made-up member is 400 naming it; so the schemas cannot drift
// from the code.
func TestOpenAPISchemasMatchDocs(t *testing.T) {
	h := newHarness(t)
	doc, _ := servedOpenAPI(t, h)
	h.createScript(introspectionScript("probe", `return true;`, nil))
	h.admin(http.MethodPost, "/users", map[string]any{"username": "probe", "password": "probe-pw"})
	h.admin(http.MethodPost, "/trusted-issuers", map[string]any{"name": "probe", "issuer": "https://probe.example", "jwks_uri": "https://probe.example/jwks"})
	for _, tc := range []struct {
		schema string
		typ    reflect.Type
		path   string
		method string
		base   map[string]any
	}{
		{"Client", reflect.TypeFor[engine.ClientDoc](), "/clients", http.MethodPost, map[string]any{}},
		{"Script", reflect.TypeFor[engine.ScriptDoc](), "/scripts/probe", http.MethodPut,
			map[string]any{"type": "introspection", "source": "function modifyResponse(r) { return true }"}},
		{"User", reflect.TypeFor[engine.UserDoc](), "/users/probe", http.MethodPut, map[string]any{}},
		{"TrustedIssuer", reflect.TypeFor[engine.TrustedIssuerDoc](), "/trusted-issuers/probe", http.MethodPut,
			map[string]any{"issuer": "https://probe.example", "jwks_uri": "https://probe.example/jwks"}},
		{"Config", reflect.TypeFor[engine.Properties](), "/config", http.MethodPut, map[string]any{}},
		{"RegistrationToken", reflect.TypeFor[engine.RegistrationTokenDoc](), "/registration-tokens", http.MethodPost, map[string]any{}},
	} {
		t.Run(tc.schema, func(t *testing.T) {
			var inSchema []string
			for name := range doc.Components.Schemas[tc.schema].Properties {
				inSchema = append(inSchema, name)
			}
			sort.Strings(inSchema)
			inCode := jsonNames(tc.typ)
			for _, name := range inCode {
				if !slices.Contains(inSchema, name) {
					t.Errorf("%s has no property %s, which the admin API reads", tc.schema, name)
				}
			}
			for _, name := range inSchema {
				if !slices.Contains(inCode, name) && !(tc.schema == "Client" && pendingClientMembers[name]) {
					t.Errorf("%s has property %s, which the admin API does not read", tc.schema, name)
				}
			}
			cur := h.admin(http.MethodGet, tc.path, nil)
			for _, name := range append(inSchema, "made_up_member") {
				body := map[string]any{name: json.RawMessage("null")}
				if tc.schema == "Config" {
					body[name] = cur.json[name] // null is no value for a property
				}
				for k, v := range tc.base {
					body[k] = v
				}
				r := h.admin(tc.method, tc.path, body)
				desc := r.str("error_description")
				unknown := r.status == http.StatusBadRequest && strings.HasPrefix(desc, name+": unknown")
				switch {
				case name == "made_up_member":
					if !unknown {
						t.Errorf("%s %s with a made-up member: %d %s, want 400 naming it", tc.method, tc.path, r.status, r.body)
					}
				case unknown && !pendingClientMembers[name]:
					t.Errorf("%s %s refuses %s of the %s schema: %s", tc.method, tc.path, name, tc.schema, r.body)
				case !unknown && r.status >= 300 && name != "client_id":
					t.Errorf("%s %s with %s: %d %s", tc.method, tc.path, name, r.status, r.body)
				}
			}
		})
	}
}
