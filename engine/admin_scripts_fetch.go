package engine

import (
	"github.com/keyhook/keyhook/hooks/netguard"
)

// checkAllowedHosts validates a script's allowed_hosts: the hosts its
// context.fetch may reach (docs/scripts.md). Each entry is a host name, a
// "*.suffix" wildcard or a public (or loopback) IP literal; no scheme,
// port or path.
func checkAllowedHosts(hosts []string) error {
	if len(hosts) > netguard.MaxAllowedHosts {
		return fieldError("allowed_hosts", "must list at most %d hosts", netguard.MaxAllowedHosts)
	}
	for i, h := range hosts {
		if err := netguard.CheckHostPattern(h); err != nil {
			return fieldError("allowed_hosts", "entry %d (%q): %v", i, h, err)
		}
	}
	return nil
}
