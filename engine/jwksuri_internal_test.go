package engine

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

func TestJWKSAddrAllowed(t *testing.T) {
	for _, tc := range []struct {
		addr                       string
		allowPrivate, loopbackOnly bool
		want                       bool
	}{
		{"127.0.0.1", false, false, true},
		{"127.8.9.10", false, true, true},
		{"::1", false, true, true},
		{"::ffff:127.0.0.1", false, true, true},
		{"93.184.215.14", false, false, true},
		{"2606:4700::1", false, false, true},
		{"93.184.215.14", false, true, false}, // plain http is loopback only
		{"10.1.2.3", false, false, false},
		{"10.1.2.3", true, false, true},
		{"172.16.0.1", false, false, false},
		{"192.168.0.1", false, false, false},
		{"::ffff:192.168.0.1", false, false, false},
		{"100.100.100.200", false, false, false},
		{"100.100.100.200", true, false, true},
		{"169.254.169.254", false, false, false},
		{"169.254.169.254", true, false, true},
		{"fe80::1", false, false, false},
		{"fd00:ec2::254", false, false, false},
		{"fd00:ec2::254", true, false, true},
		{"0.0.0.0", true, false, false},
		{"::", true, false, false},
		{"224.0.0.1", true, false, false},
		{"ff02::1", true, false, false},
		{"255.255.255.255", true, false, false},
		{"10.1.2.3", true, true, false},
	} {
		if got := jwksAddrAllowed(netip.MustParseAddr(tc.addr), tc.allowPrivate, tc.loopbackOnly); got != tc.want {
			t.Errorf("jwksAddrAllowed(%s, allowPrivate=%v, loopbackOnly=%v) = %v, want %v", tc.addr, tc.allowPrivate, tc.loopbackOnly, got, tc.want)
		}
	}
}

// TestJWKSDialGuard calls the fetcher's HTTP clients directly, past the
// URL check, so that only the dialer's Control hook, which sees the
// resolved address, stands between them and the target.
func TestJWKSDialGuard(t *testing.T) {
	f := newJWKSFetcher(JWKSURIConfig{Timeout: 2 * time.Second}, time.Now)
	for _, tc := range []struct {
		name, url string
		plain     bool
	}{
		{"metadata over https", "https://169.254.169.254/latest/meta-data", false},
		{"private over https", "https://10.0.0.1/jwks", false},
		{"unique local over https", "https://[fd00::1]/jwks", false},
		{"public over plain http", "http://93.184.215.14/jwks", true},
		{"private over plain http", "http://192.168.1.1/jwks", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := f.https
			if tc.plain {
				c = f.http
			}
			resp, err := c.Get(tc.url)
			if err == nil {
				resp.Body.Close()
			}
			if !errors.Is(err, ErrAddressNotAllowed) {
				t.Fatalf("err = %v, want the address guard", err)
			}
		})
	}
}
