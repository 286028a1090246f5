// Package netguard is the guarded dialer of keyhook's outbound requests:
// the fetch of clients' jwks_uri (docs/client-auth.md) and scripts'
// context.fetch (docs/scripts.md). Whoever chooses those URLs is not the
// operator, so each connection is checked against server-side request
// forgery on the address actually dialled, after name resolution: a name
// that resolves (or is rebound) to a private, link-local, metadata or
// loopback address is refused as surely as the literal address.
//
// It depends on the standard library only, so that engine and scripts
// can both use it.
package netguard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// ErrAddressNotAllowed is why a connection was refused before it was
// made: the address dialled is one the Policy forbids.
var ErrAddressNotAllowed = errors.New("address not allowed")

// Policy says which addresses a Dialer may connect to. The zero value
// allows public unicast addresses only.
type Policy struct {
	// AllowLoopback allows 127.0.0.0/8 and ::1.
	AllowLoopback bool
	// AllowPrivate allows private (RFC 1918, fc00::/7), shared (RFC 6598)
	// and link-local (169.254.0.0/16, fe80::/10) addresses, which include
	// the cloud metadata addresses 169.254.169.254, fd00:ec2::254 and
	// 100.100.100.200, and the special-purpose blocks of RFC 6890 that
	// are not public (0.0.0.0/8, 192.0.0.0/24, 198.18.0.0/15, 240.0.0.0/4,
	// Teredo).
	AllowPrivate bool
	// LoopbackOnly allows loopback addresses and nothing else (plain
	// http: without TLS only a connection on this host is trusted).
	LoopbackOnly bool
}

var (
	// sharedAddressSpace is RFC 6598's carrier-grade NAT block; some
	// clouds serve instance metadata from it (100.100.100.200).
	sharedAddressSpace = netip.MustParsePrefix("100.64.0.0/10")
	// notPublic are special-purpose blocks (RFC 6890) that netip does not
	// classify and that must not be reachable by a public-only Policy.
	notPublic = []netip.Prefix{
		netip.MustParsePrefix("0.0.0.0/8"),      // "this network"; 0.0.0.0 reaches the host on Linux
		netip.MustParsePrefix("192.0.0.0/24"),   // IETF protocol assignments
		netip.MustParsePrefix("198.18.0.0/15"),  // benchmarking
		netip.MustParsePrefix("240.0.0.0/4"),    // reserved
		netip.MustParsePrefix("2001::/32"),      // Teredo: tunnels to an embedded IPv4 peer
		netip.MustParsePrefix("fec0::/10"),      // deprecated site-local
		netip.MustParsePrefix("100::/64"),       // discard-only
		netip.MustParsePrefix("2001:db8::/32"),  // documentation
		netip.MustParsePrefix("192.88.99.0/24"), // 6to4 relay anycast
	}
	// nat64 (RFC 6052) and sixToFour (RFC 3056) embed an IPv4 address,
	// which is judged in their place.
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
)

// Allows decides whether a connection to ip is allowed. Unspecified,
// multicast and broadcast addresses never are.
func (p Policy) Allows(ip netip.Addr) bool {
	ip = ip.Unmap() // ::ffff:10.0.0.1 is 10.0.0.1
	if ip.Is6() {
		b := ip.As16()
		switch {
		case nat64.Contains(ip):
			return p.Allows(netip.AddrFrom4([4]byte(b[12:16])))
		case sixToFour.Contains(ip):
			return p.Allows(netip.AddrFrom4([4]byte(b[2:6])))
		}
	}
	switch {
	case !ip.IsValid():
		return false
	case ip.IsLoopback():
		return p.AllowLoopback || p.LoopbackOnly
	case p.LoopbackOnly:
		return false
	case ip.IsUnspecified(), ip.IsMulticast(), ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return false
	case ip.IsPrivate(), ip.IsLinkLocalUnicast(), sharedAddressSpace.Contains(ip):
		return p.AllowPrivate
	}
	for _, n := range notPublic {
		if n.Contains(ip) {
			return p.AllowPrivate
		}
	}
	return ip.IsGlobalUnicast()
}

// LoopbackHost reports whether host names this machine: "localhost" or
// a loopback address literal.
func LoopbackHost(host string) bool {
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// Dialer connects only to addresses its Policy allows. Use its
// DialContext as an http.Transport's, with Proxy nil: a proxy would
// connect on our behalf, past the check.
type Dialer struct {
	Policy  Policy
	Timeout time.Duration
	// LookupNetIP, when set, resolves host names instead of the system
	// resolver (tests: a name that resolves to a private address). The
	// addresses it returns are checked like any other.
	LookupNetIP func(ctx context.Context, host string) ([]netip.Addr, error)
}

// control runs after name resolution, once per address tried: the
// address checked is the one connected to.
func (d *Dialer) control(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !d.Policy.Allows(ip) {
		return fmt.Errorf("%w: %s", ErrAddressNotAllowed, host)
	}
	return nil
}

// DialContext dials address as net.Dialer does, refusing any address the
// Policy forbids with an error wrapping ErrAddressNotAllowed.
func (d *Dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	nd := &net.Dialer{Timeout: d.Timeout, Control: d.control}
	if d.LookupNetIP == nil {
		return nd.DialContext(ctx, network, address)
	}
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nd.DialContext(ctx, network, address)
	}
	ips, err := d.LookupNetIP(ctx, host)
	if err != nil {
		return nil, err
	}
	var first error
	for _, ip := range ips {
		c, err := nd.DialContext(ctx, network, net.JoinHostPort(ip.String(), port))
		if err == nil {
			return c, nil
		}
		if first == nil {
			first = err
		}
	}
	if first == nil {
		first = fmt.Errorf("netguard: no address for %s", host)
	}
	return nil, first
}
