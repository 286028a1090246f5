package engine

import (
	"fmt"
	"net/url"
	"slices"
)

// Resource indicators (RFC 8707; docs/resource-indicators.md).
//
// A client registers the resources it may ask tokens for in
// allowed_resources. The authorization request names the resources the
// grant covers; the code carries them, and so does every refresh token of
// the grant, through rotations, so that a refresh may ask an access token
// for any one of them (RFC 8707 §2.2). An access token's aud is the
// resources it was asked for, or all those granted when the token request
// names none. Without any resource, aud stays the client's id.

const (
	// MaxAllowedResources bounds a client's allowed_resources.
	MaxAllowedResources = 100
	// MaxResourceParams bounds the resource parameters of one request.
	MaxResourceParams = 20
	// MaxResourceLength bounds one resource URI, in bytes.
	MaxResourceLength = 2048
)

// checkResourceURI reports why s cannot be a resource indicator: it must
// be an absolute URI (RFC 3986 §4.3) without a fragment (RFC 8707 §2),
// in ASCII, without spaces or control characters. A query is allowed: the
// RFC discourages it but admits that some resources need one.
func checkResourceURI(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("a resource may not be empty")
	case len(s) > MaxResourceLength:
		return fmt.Errorf("a resource is at most %d bytes", MaxResourceLength)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f {
			return fmt.Errorf("%q: a resource is a URI in ASCII without spaces or control characters", s)
		}
	}
	if slices.Contains([]byte(s), '#') {
		return fmt.Errorf("%q has a fragment; a resource may not (RFC 8707 §2)", s)
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" {
		return fmt.Errorf("%q is not an absolute URI (RFC 8707 §2)", s)
	}
	if u.Opaque == "" && u.Host == "" {
		return fmt.Errorf("%q has no host; write scheme://host/path, or a URN", s)
	}
	return nil
}

// checkAllowedResources reports why a client's allowed_resources may not
// be registered, or nil.
func checkAllowedResources(list []string) error {
	if len(list) > MaxAllowedResources {
		return fmt.Errorf("at most %d resources", MaxAllowedResources)
	}
	for i, r := range list {
		if err := checkResourceURI(r); err != nil {
			return err
		}
		if slices.Contains(list[:i], r) {
			return fmt.Errorf("%q is listed twice", r)
		}
	}
	return nil
}

// invalidTarget is the error of RFC 8707 §2: the resource asked for is
// invalid, unknown, not allowed or malformed.
func invalidTarget(format string, args ...any) *Error {
	return Errorf(CodeInvalidTarget, format, args...)
}

// requestedResources validates the resource parameters of a request by c:
// each well formed and in c's allowed_resources. The answer has no
// duplicates and keeps the request's order.
func requestedResources(c *Client, requested []string) ([]string, error) {
	if len(requested) == 0 {
		return nil, nil
	}
	if len(requested) > MaxResourceParams {
		return nil, invalidTarget("at most %d resource parameters", MaxResourceParams)
	}
	out := make([]string, 0, len(requested))
	for _, r := range requested {
		if err := checkResourceURI(r); err != nil {
			return nil, invalidTarget("%v", err)
		}
		if !slices.Contains(c.AllowedResources, r) {
			return nil, invalidTarget("resource %q is not allowed for this client", r)
		}
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out, nil
}

// narrowResources is the audience of an access token asked for with
// requested from a grant that covers granted (RFC 8707 §2.2): each one
// must be granted and still allowed for the client; none asked means all
// granted that are still allowed. A grant without resources takes none.
func narrowResources(c *Client, granted, requested []string) ([]string, error) {
	asked, err := requestedResources(c, requested)
	if err != nil {
		return nil, err
	}
	for _, r := range asked {
		if !slices.Contains(granted, r) {
			return nil, invalidTarget("resource %q was not granted at authorization", r)
		}
	}
	if len(asked) > 0 {
		return asked, nil
	}
	var out []string
	for _, r := range granted {
		if slices.Contains(c.AllowedResources, r) {
			out = append(out, r)
		}
	}
	if len(granted) > 0 && len(out) == 0 {
		return nil, invalidTarget("no resource of this grant is allowed for the client any more")
	}
	return out, nil
}
