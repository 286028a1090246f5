package netguard

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// MaxAllowedHosts bounds a script's allowed_hosts (docs/scripts.md).
const MaxAllowedHosts = 64

// CheckHostPattern validates one entry of an allow-list of hosts: an exact
// host name ("api.example.com"), a wildcard "*.example.com" (any name
// under example.com, not example.com itself), or an IP address literal
// that Policy{AllowLoopback: true} allows (a private, link-local or
// metadata address is refused; loopback needs the server's permission
// when fetching). No scheme, port, path or user info.
func CheckHostPattern(p string) error {
	switch {
	case p == "":
		return errors.New("must not be empty")
	case len(p) > 253:
		return errors.New("must be at most 253 characters")
	case strings.Contains(p, "://"):
		return errors.New("must be a host, without a scheme")
	case strings.ContainsAny(p, "/?#@"):
		return errors.New("must be a host, without a path or user info")
	case p != strings.ToLower(p):
		return errors.New("must be lower case")
	}
	if ip, err := netip.ParseAddr(strings.Trim(p, "[]")); err == nil {
		if ip.Zone() != "" || !(Policy{AllowLoopback: true}).Allows(ip) {
			return fmt.Errorf("%s is a private, link-local or special-purpose address", p)
		}
		return nil
	}
	if strings.Contains(p, ":") {
		return errors.New("must be a host, without a port")
	}
	name := p
	if rest, ok := strings.CutPrefix(p, "*."); ok {
		if !strings.Contains(rest, ".") {
			return errors.New("a wildcard needs a suffix of at least two labels (*.example.com)")
		}
		name = rest
	}
	for _, label := range strings.Split(name, ".") {
		if !hostLabel(label) {
			return fmt.Errorf("%q is not a host name (letters, digits and hyphens; wildcards only as a leading *.)", p)
		}
	}
	return nil
}

func hostLabel(l string) bool {
	if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for _, c := range []byte(l) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// HostAllowed reports whether host (a URL's host without port, any case,
// IPv6 without brackets) matches one of patterns (see CheckHostPattern).
func HostAllowed(host string, patterns []string) bool {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "" {
		return false
	}
	for _, p := range patterns {
		p = strings.Trim(p, "[]")
		if suffix, ok := strings.CutPrefix(p, "*."); ok {
			if strings.HasSuffix(host, "."+suffix) {
				return true
			}
		} else if host == p {
			return true
		}
	}
	return false
}
