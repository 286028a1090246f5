package engine

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// checkRedirectURI reports why u may not be registered as a redirect URI,
// or nil. Allowed are:
//   - https URIs with a host (RFC 9700 §2.1, RFC 6749 §3.1.2.1);
//   - http on a loopback address: an IPv4 127/8 or IPv6 ::1 literal, or
//     "localhost" (RFC 8252 §7.3, §8.3);
//   - private-use schemes in reverse domain name form, such as
//     com.example.app:/cb (RFC 8252 §7.1; §8.4 lets a server refuse
//     schemes without a period, which keeps out javascript:, vbscript:,
//     blob:, about: and whatever a browser may one day run).
//
// Never allowed: javascript:, data: and file: (named for clarity; none
// has a period), a fragment, even an empty one (RFC 6749 §3.1.2), and
// user information (RFC 3986 §3.2.1), which would make one registered
// URI look like another host to a reader.
func checkRedirectURI(u string) error {
	if strings.Contains(u, "#") {
		return fmt.Errorf("%q has a fragment", u)
	}
	p, err := url.Parse(u)
	if err != nil || !p.IsAbs() {
		return fmt.Errorf("%q is not an absolute URI", u)
	}
	scheme := strings.ToLower(p.Scheme)
	if p.User != nil {
		return fmt.Errorf("%q carries user information", u)
	}
	switch {
	case scheme == "javascript" || scheme == "data" || scheme == "file":
		return fmt.Errorf("%q: the %s scheme is not allowed", u, scheme)
	case scheme == "https":
		if p.Hostname() == "" {
			return fmt.Errorf("%q has no host", u)
		}
	case scheme == "http":
		host := p.Hostname()
		if ip := net.ParseIP(host); !strings.EqualFold(host, "localhost") && (ip == nil || !ip.IsLoopback()) {
			return fmt.Errorf("%q: http is allowed only on a loopback address; use https", u)
		}
	case strings.Contains(scheme, "."):
		// A private-use scheme (RFC 8252 §7.1).
	default:
		return fmt.Errorf("%q: use https, http on a loopback address, or a private-use scheme such as com.example.app:", u)
	}
	return nil
}
