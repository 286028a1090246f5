package web

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/keyhook/keyhook/engine"
)

// mergePatchType is the media type of a JSON merge patch (RFC 7396 §4).
const mergePatchType = "application/merge-patch+json"

// unsupportedPatchError is a PATCH body in a format the server does not
// apply: 415 with Accept-Patch naming the one it does (RFC 5789 §2.2,
// §3.1).
type unsupportedPatchError struct{ contentType string }

func (e *unsupportedPatchError) Error() string {
	return fmt.Sprintf("Content-Type: %s is not a JSON merge patch; send %s (RFC 7396)", e.contentType, mergePatchType)
}

// mergePatch applies patch to target as RFC 7396 §2 defines it: a patch
// that is not an object replaces the target; an object's members replace
// the target's members of the same name, null removes one, and objects
// merge recursively. Values are what encoding/json decodes into any
// (use json.Number to keep numbers exact); target may be changed in
// place.
func mergePatch(target, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	t, ok := target.(map[string]any)
	if !ok {
		t = map[string]any{}
	}
	for k, v := range p {
		if v == nil {
			delete(t, k)
			continue
		}
		t[k] = mergePatch(t[k], v)
	}
	return t
}

// decodeAny decodes one JSON value with numbers kept as json.Number.
func decodeAny(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, engine.Errorf(engine.CodeInvalidRequest, "body: more than one JSON value")
	}
	return v, nil
}

// readMergePatch reads a PATCH body: a JSON merge patch (RFC 7396), sent
// as application/merge-patch+json, application/json or without a
// Content-Type, that is a JSON object. Each member is checked as a PUT
// body of type T would be (decodeStrict), so an unknown member is 400
// naming it even when its value is null.
func readMergePatch[T any](c echo.Context) (map[string]any, error) {
	if ct := c.Request().Header.Get(echo.HeaderContentType); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != mergePatchType && mt != echo.MIMEApplicationJSON) {
			return nil, &unsupportedPatchError{contentType: ct}
		}
	}
	body, err := io.ReadAll(c.Request().Body)
	if err != nil {
		return nil, err // over the route's limit: 413
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, engine.Errorf(engine.CodeInvalidRequest, "body: a JSON merge patch (an object) is required")
	}
	v, err := decodeAny(body)
	if err != nil {
		if named := decodeStrict(bytes.NewReader(body), new(T)); named != nil {
			return nil, named // says where the syntax error is
		}
		return nil, engine.Errorf(engine.CodeInvalidRequest, "body: %v", err)
	}
	patch, ok := v.(map[string]any)
	if !ok {
		return nil, engine.Errorf(engine.CodeInvalidRequest, "body: a JSON merge patch must be an object (RFC 7396); use PUT to replace the whole record")
	}
	if err := decodeStrict(bytes.NewReader(body), new(T)); err != nil {
		return nil, err
	}
	return patch, nil
}

// applyMergePatch merges patch into cur's JSON representation and
// decodes the result as strictly as a PUT body.
func applyMergePatch[T any](cur *T, patch map[string]any) (*T, error) {
	raw, err := json.Marshal(cur)
	if err != nil {
		return nil, err
	}
	target, err := decodeAny(raw)
	if err != nil {
		return nil, err
	}
	merged, err := json.Marshal(mergePatch(target, patch))
	if err != nil {
		return nil, err
	}
	out := new(T)
	if err := decodeStrict(bytes.NewReader(merged), out); err != nil {
		return nil, err
	}
	return out, nil
}

// patchResource serves PATCH on one admin record: read it (404 when
// absent), merge the patch into it and hand the result to replace, the
// very function PUT calls, so that a patch meets every rule a PUT meets,
// delegation included (engine/admin_delegation.go). fix, when not nil,
// adjusts the patch first.
//
// Write does not imply read (docs/admin-security.md): a token that holds
// neither keyhook:admin nor the area's .read scope gets back only the
// members its patch named, as stored, with the record's identifier and
// a secret the server generated, never the rest of the record.
func patchResource[T any](c echo.Context, area, idMember string, fix func(map[string]any),
	read func() (*T, error), replace func(*T) (*T, error)) error {
	patch, err := readMergePatch[T](c)
	if err != nil {
		return err
	}
	if fix != nil {
		fix(patch)
	}
	cur, err := read()
	if err != nil {
		return err
	}
	doc, err := applyMergePatch(cur, patch)
	if err != nil {
		return err
	}
	out, err := replace(doc)
	if err != nil {
		return err
	}
	noStore(c)
	if mayRead(c, area) {
		return c.JSON(http.StatusOK, out)
	}
	raw, err := json.Marshal(out)
	if err != nil {
		return err
	}
	full, err := decodeAny(raw)
	if err != nil {
		return err
	}
	m, _ := full.(map[string]any)
	answer := project(m, patch)
	for _, k := range []string{idMember, "client_secret"} {
		if v, ok := m[k]; ok {
			answer[k] = v
		}
	}
	return c.JSON(http.StatusOK, answer)
}

// project keeps of result the members that patch names, recursing into
// objects that both hold.
func project(result, patch map[string]any) map[string]any {
	out := map[string]any{}
	for k, pv := range patch {
		rv, ok := result[k]
		if !ok {
			continue
		}
		pm, pok := pv.(map[string]any)
		rm, rok := rv.(map[string]any)
		if pok && rok {
			out[k] = project(rm, pm)
			continue
		}
		out[k] = rv
	}
	return out
}

// mayRead reports whether the request's admin token may read area.
func mayRead(c echo.Context, area string) bool {
	scope, _ := c.Get(ctxAdminScope).(string)
	for _, sc := range strings.Fields(scope) {
		if sc == engine.AdminScope || sc == "keyhook:"+area+".read" {
			return true
		}
	}
	return false
}

// janssenRunIntrospection is Janssen's name for
// run_introspection_script_before_jwt_creation. PUT ORs the two names;
// in a patch that names only Janssen's, its value is the new setting,
// false included.
func janssenRunIntrospection(patch map[string]any) {
	const janssen, ours = "run_introspection_script_before_access_token_as_jwt_creation_and_include_claims",
		"run_introspection_script_before_jwt_creation"
	v, ok := patch[janssen]
	if _, both := patch[ours]; !ok || both {
		return
	}
	delete(patch, janssen)
	patch[ours] = v
}
