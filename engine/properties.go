package engine

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/keyhook/keyhook/hooks"
)

// Properties are the server properties (GET/PUT /admin/v1/config). A value is
// immutable once published: the engine swaps whole *Properties.
type Properties struct {
	IntrospectionSkipAuthorization           bool   `json:"introspection_skip_authorization"`
	IntrospectionScriptBackwardCompatibility bool   `json:"introspection_script_backward_compatibility"`
	IntrospectionRequiredScope               string `json:"introspection_required_scope"`
	AccessTokenLifetime                      int64  `json:"access_token_lifetime"`
	RefreshTokenLifetime                     int64  `json:"refresh_token_lifetime"`
	IDTokenLifetime                          int64  `json:"id_token_lifetime"`
	AuthorizationCodeLifetime                int64  `json:"authorization_code_lifetime"`
	AccessTokenSigningAlg                    string `json:"access_token_signing_alg"`
}

// DefaultProperties are the properties' default values.
func DefaultProperties() *Properties {
	return &Properties{
		AccessTokenLifetime:       300,
		RefreshTokenLifetime:      1209600,
		IDTokenLifetime:           3600,
		AuthorizationCodeLifetime: 60,
		AccessTokenSigningAlg:     "RS256",
	}
}

// SigningAlgs are the JWS algorithms keyhook signs with.
var SigningAlgs = []string{"RS256", "PS256", "ES256", "EdDSA"}

// propertyCheck validates one property's JSON value.
type propertyCheck func(raw json.RawMessage) error

var propertyChecks = map[string]propertyCheck{
	"introspection_skip_authorization":            isBool,
	"introspection_script_backward_compatibility": isBool,
	"introspection_required_scope":                isString(nil),
	"access_token_lifetime":                       isLifetime,
	"refresh_token_lifetime":                      isLifetime,
	"id_token_lifetime":                           isLifetime,
	"authorization_code_lifetime":                 isLifetime,
	"access_token_signing_alg":                    isString(SigningAlgs),
}

func isBool(raw json.RawMessage) error {
	var b bool
	if json.Unmarshal(raw, &b) != nil {
		return fmt.Errorf("must be true or false")
	}
	return nil
}

// isLifetime accepts whole seconds from 1 to 10 years. A larger value
// would overflow time.Duration (or, near it, make every token expire on
// arrival and lock the admin API out).
func isLifetime(raw json.RawMessage) error {
	var n int64
	if json.Unmarshal(raw, &n) != nil || !validLifetime(n) {
		return fmt.Errorf("must be whole seconds from 1 to %d (10 years)", hooks.MaxLifetimeSeconds)
	}
	return nil
}

// validLifetime reports whether n seconds is a lifetime the server
// accepts from its admin API (scripts' answers are checked the same way,
// see hooks.LifetimeSeconds).
func validLifetime(n int64) bool { return n >= 1 && n <= hooks.MaxLifetimeSeconds }

func isString(allowed []string) propertyCheck {
	return func(raw json.RawMessage) error {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return fmt.Errorf("must be a string")
		}
		if allowed != nil && !slices.Contains(allowed, s) {
			return fmt.Errorf("must be one of %s", strings.Join(allowed, ", "))
		}
		return nil
	}
}

// ValidateProperties checks a partial update: every name must be a known
// property with a value of the right type, or null, which resets it to
// its default (as a JSON merge patch would, RFC 7396; decodeProperties
// reads a stored null as absent). The error names the property.
func ValidateProperties(patch map[string]json.RawMessage) error {
	names := make([]string, 0, len(patch))
	for name := range patch {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		check, ok := propertyChecks[name]
		if !ok {
			return Errorf(CodeInvalidRequest, "%s: unknown property", name)
		}
		if string(bytes.TrimSpace(patch[name])) == "null" {
			continue
		}
		if err := check(patch[name]); err != nil {
			return Errorf(CodeInvalidRequest, "%s: %v", name, err)
		}
	}
	return nil
}

// decodeProperties lays stored values over the defaults. Values that no
// longer validate are ignored so that a bad row never stops the server.
func decodeProperties(stored map[string]string) *Properties {
	p := DefaultProperties()
	merged := map[string]json.RawMessage{}
	base, _ := json.Marshal(p)
	_ = json.Unmarshal(base, &merged)
	for name, v := range stored {
		if check, ok := propertyChecks[name]; ok && check(json.RawMessage(v)) == nil {
			merged[name] = json.RawMessage(v)
		}
	}
	all, _ := json.Marshal(merged)
	_ = json.Unmarshal(all, p)
	return p
}
