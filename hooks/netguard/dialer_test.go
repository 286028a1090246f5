package netguard_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/keyhook/keyhook/hooks/netguard"
)

func TestPolicyAllows(t *testing.T) {
	public := netguard.Policy{}
	loopback := netguard.Policy{AllowLoopback: true}
	private := netguard.Policy{AllowPrivate: true}
	for _, tc := range []struct {
		addr   string
		policy netguard.Policy
		want   bool
	}{
		{"93.184.215.14", public, true},
		{"2606:4700::1", public, true},
		{"127.0.0.1", public, false},
		{"::1", public, false},
		{"::ffff:127.0.0.1", public, false},
		{"127.0.0.1", loopback, true},
		{"::1", loopback, true},
		{"10.0.0.1", public, false},
		{"10.0.0.1", loopback, false},
		{"10.0.0.1", private, true},
		{"169.254.169.254", public, false},
		{"fd00:ec2::254", public, false},
		{"100.100.100.200", public, false},
		{"fe80::1", public, false},
		{"0.0.0.0", private, false},
		{"::", private, false},
		{"0.1.2.3", public, false},
		{"240.0.0.1", public, false},
		{"198.18.0.1", public, false},
		{"2001::1", public, false},
		// NAT64 and 6to4 addresses are judged by the IPv4 address they embed.
		{"64:ff9b::a00:1", public, false},     // 10.0.0.1
		{"64:ff9b::a9fe:a9fe", public, false}, // 169.254.169.254
		{"64:ff9b::5db8:d70e", public, true},  // 93.184.215.14
		{"2002:7f00:1::1", public, false},     // 127.0.0.1
		{"2002:a9fe:a9fe::1", public, false},  // 169.254.169.254
		{"224.0.0.1", private, false},
		{"255.255.255.255", private, false},
		{"93.184.215.14", netguard.Policy{LoopbackOnly: true}, false},
		{"127.0.0.1", netguard.Policy{LoopbackOnly: true}, true},
	} {
		if got := tc.policy.Allows(netip.MustParseAddr(tc.addr)); got != tc.want {
			t.Errorf("%+v.Allows(%s) = %v, want %v", tc.policy, tc.addr, got, tc.want)
		}
	}
}

// TestDialerChecksTheResolvedAddress dials names that a test resolver
// points at forbidden addresses: the dialled address is what is checked.
func TestDialerChecksTheResolvedAddress(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	names := map[string][]netip.Addr{
		"loopback.test": {netip.MustParseAddr("127.0.0.1")},
		"metadata.test": {netip.MustParseAddr("169.254.169.254")},
		"private.test":  {netip.MustParseAddr("10.0.0.1")},
	}
	lookup := func(_ context.Context, host string) ([]netip.Addr, error) { return names[host], nil }
	for _, tc := range []struct {
		name, host string
		policy     netguard.Policy
		wantErr    bool
	}{
		{"loopback refused", "loopback.test", netguard.Policy{}, true},
		{"loopback allowed", "loopback.test", netguard.Policy{AllowLoopback: true}, false},
		{"metadata refused", "metadata.test", netguard.Policy{AllowLoopback: true}, true},
		{"private refused", "private.test", netguard.Policy{AllowLoopback: true}, true},
		{"literal refused", "127.0.0.1", netguard.Policy{}, true},
		{"localhost refused", "localhost", netguard.Policy{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &netguard.Dialer{Policy: tc.policy, Timeout: time.Second}
			if tc.host != "localhost" {
				d.LookupNetIP = lookup
			}
			c, err := d.DialContext(context.Background(), "tcp", net.JoinHostPort(tc.host, port))
			if c != nil {
				c.Close()
			}
			if tc.wantErr != (err != nil) || (err != nil && !errors.Is(err, netguard.ErrAddressNotAllowed)) {
				t.Fatalf("dial %s: %v, want refused=%v", tc.host, err, tc.wantErr)
			}
		})
	}
}

func TestCheckHostPattern(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		ok      bool
	}{
		{"api.example.com", true},
		{"*.example.com", true},
		{"localhost", true},
		{"93.184.215.14", true},
		{"127.0.0.1", true},
		{"::1", true},
		{"", false},
		{"https://api.example.com", false},
		{"api.example.com/path", false},
		{"api.example.com:443", false},
		{"user@api.example.com", false},
		{"API.example.com", false},
		{"*", false},
		{"*.com", false},
		{"a.*.example.com", false},
		{"10.0.0.1", false},
		{"169.254.169.254", false},
		{"fd00:ec2::254", false},
		{"[fd00:ec2::254]", false},
		{"100.100.100.200", false},
		{"0.0.0.0", false},
		{"-bad.example.com", false},
		{"exa mple.com", false},
	} {
		if err := netguard.CheckHostPattern(tc.pattern); (err == nil) != tc.ok {
			t.Errorf("CheckHostPattern(%q) = %v, want ok=%v", tc.pattern, err, tc.ok)
		}
	}
}

func TestHostAllowed(t *testing.T) {
	patterns := []string{"api.example.com", "*.example.org", "127.0.0.1", "::1"}
	for _, tc := range []struct {
		host string
		want bool
	}{
		{"api.example.com", true},
		{"API.Example.COM.", true},
		{"www.api.example.com", false},
		{"example.com", false},
		{"a.example.org", true},
		{"a.b.example.org", true},
		{"example.org", false},
		{"evilexample.org", false},
		{"127.0.0.1", true},
		{"::1", true},
		{"127.0.0.2", false},
		{"", false},
	} {
		if got := netguard.HostAllowed(tc.host, patterns); got != tc.want {
			t.Errorf("HostAllowed(%q) = %v, want %v", tc.host, got, tc.want)
		}
	}
}
