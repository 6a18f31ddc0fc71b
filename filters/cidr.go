package filters

import (
	"context"
	"fmt"
	"net/netip"
)

// DenyList refuses clients whose address is in one of its networks, at
// connect (RFC 5321 §3.1: 554 instead of the greeting). Trusted clients
// (Config.Trusted, the allow list) pass even if listed.
type DenyList struct {
	Networks []netip.Prefix
}

var _ Check = (*DenyList)(nil)

// ParsePrefixes parses addresses and CIDR networks ("192.0.2.7",
// "2001:db8::/32"); a bare address is a single-host network.
func ParsePrefixes(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("network %q: %w", s, err)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// Name implements Check.
func (d *DenyList) Name() string { return "denylist" }

// NewState implements Check.
func (d *DenyList) NewState(_ context.Context, conn *ConnInfo) (State, error) {
	return &denyState{d: d, conn: conn}, nil
}

type denyState struct {
	NopState
	d    *DenyList
	conn *ConnInfo
}

// Inline implements Inline: the lists are in memory.
func (*denyState) Inline(Stage) bool { return true }

func (s *denyState) Connect(context.Context) Verdict {
	if s.conn.Trusted {
		return Verdict{}
	}
	ip := s.conn.IP.Unmap()
	for _, p := range s.d.Networks {
		if p.Contains(ip) {
			return Verdict{Action: Reject, Reason: "Connection refused by policy", Err: fmt.Errorf("%s is in deny list %s", ip, p)}
		}
	}
	return Verdict{}
}
