package engine

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// maxCORSOrigins bounds a client's allowed_cors_origins.
const maxCORSOrigins = 100

// checkOrigins reports why a list of allowed_cors_origins may not be
// registered, or nil. Each must be an origin exactly as a browser sends
// it in the Origin header (RFC 6454 §6.2, §7): scheme://host[:port] in
// lower case, without a default port, a path (not even "/"), a query, a
// fragment or user information. Never allowed: "*" or any wildcard (each
// origin is listed), and "null", the opaque origin shared by sandboxed
// frames, local files and data: documents, which would let any of them
// in. An origin in another spelling could never match, so it is refused
// with the spelling to use.
func checkOrigins(list []string) error {
	if len(list) > maxCORSOrigins {
		return fmt.Errorf("at most %d origins", maxCORSOrigins)
	}
	for _, o := range list {
		if err := checkOrigin(o); err != nil {
			return err
		}
	}
	return nil
}

func checkOrigin(o string) error {
	switch {
	case o == "":
		return fmt.Errorf("an origin may not be empty")
	case o == "null":
		return fmt.Errorf(`"null" is the opaque origin of sandboxed frames and local files; it cannot be allowed`)
	case strings.Contains(o, "*"):
		return fmt.Errorf("%q: wildcards are not allowed; list each origin", o)
	case strings.ContainsAny(o, "?#"):
		return fmt.Errorf("%q has a query or fragment; an origin is scheme://host[:port]", o)
	}
	for i := 0; i < len(o); i++ {
		if o[i] >= 0x80 || o[i] <= ' ' {
			return fmt.Errorf("%q: write the host in ASCII (punycode), as browsers send it", o)
		}
	}
	u, err := url.Parse(o)
	if err != nil || u.Scheme == "" || u.Host == "" || u.Opaque != "" {
		return fmt.Errorf("%q is not an origin (scheme://host[:port])", o)
	}
	if u.User != nil {
		return fmt.Errorf("%q carries user information", o)
	}
	if u.Path != "" {
		return fmt.Errorf("%q has a path; an origin is scheme://host[:port]", o)
	}
	scheme := strings.ToLower(u.Scheme)
	switch scheme {
	case "file", "data", "javascript", "blob", "about":
		return fmt.Errorf("%q: %s documents have opaque origins", o, scheme)
	}
	host := strings.ToLower(u.Host)
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%q: the port must be 1 to 65535", o)
		}
		if scheme == "https" && n == 443 || scheme == "http" && n == 80 {
			host = strings.TrimSuffix(host, ":"+p)
		}
	}
	if canonical := scheme + "://" + host; canonical != o {
		return fmt.Errorf("%q is not written as browsers send it: %q", o, canonical)
	}
	return nil
}

// CORSOriginAllowed reports whether origin is in some client's
// allowed_cors_origins. The set is kept in memory with the discovery
// document (metadata.go): rebuilt after a local change to clients and
// after each Refresh, never read from the store per request.
func (e *Engine) CORSOriginAllowed(ctx context.Context, origin string) bool {
	if origin == "" || origin == "null" {
		return false
	}
	v, err := e.clientView(ctx)
	if err != nil {
		return false
	}
	_, ok := v.origins[origin]
	return ok
}
