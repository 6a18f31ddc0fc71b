// Package dnsbl checks the client IP against DNS block lists (DNSBL) and
// allow lists (DNSWL) at connect: the address's reversed octets (IPv4) or
// nibbles (IPv6) under each zone, an A query, and a 127.0.0.x answer
// meaning "listed" with a per-zone code meaning (RFC 5782 §2).
package dnsbl

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"

	"github.com/miekg/dns"

	"github.com/raftmail/raftmail/filters"
)

// Zone is one list.
type Zone struct {
	// Zone is the list's DNS zone, e.g. "zen.spamhaus.org".
	Zone string
	// Score is added for a listing (negative for an allow list).
	Score float64
	// Reject refuses the connection on a listing (554 5.7.1 at connect).
	Reject bool
	// Codes maps the answers that count to their meaning, e.g.
	// "127.0.0.2": "sbl". Empty: any 127.0.0.0/8 answer counts
	// (RFC 5782 §2.1); other answers are ignored either way.
	Codes map[string]string
}

// Resolver is the DNS the check needs (filters/resolver implements it).
type Resolver interface {
	Query(ctx context.Context, name string, qtype uint16) ([]dns.RR, error)
}

// Check is the DNSBL/DNSWL check.
type Check struct {
	zones []Zone
	res   Resolver
}

var _ filters.Check = (*Check)(nil)

// New returns a check of the zones.
func New(res Resolver, zones []Zone) (*Check, error) {
	if res == nil {
		return nil, errors.New("dnsbl: no resolver")
	}
	for i, z := range zones {
		if z.Zone == "" {
			return nil, fmt.Errorf("dnsbl: zone %d has no name", i)
		}
		zones[i].Zone = strings.Trim(strings.ToLower(z.Zone), ".")
	}
	return &Check{zones: zones, res: res}, nil
}

// Name implements filters.Check.
func (c *Check) Name() string { return "dnsbl" }

// NewState implements filters.Check.
func (c *Check) NewState(_ context.Context, info *filters.ConnInfo) (filters.State, error) {
	return &state{c: c, info: info}, nil
}

type state struct {
	filters.NopState
	c    *Check
	info *filters.ConnInfo
}

// Inline implements filters.Inline: only Connect works (DNS queries), and
// the connect stage is never inline.
func (*state) Inline(filters.Stage) bool { return true }

type hit struct {
	zone    Zone
	meaning string
}

// Connect looks the client up in every zone concurrently.
func (s *state) Connect(ctx context.Context) filters.Verdict {
	ip := s.info.IP.Unmap()
	if s.info.Trusted || !ip.IsValid() || len(s.c.zones) == 0 {
		return filters.Verdict{}
	}
	rev := Reverse(ip)
	hits := make([]*hit, len(s.c.zones))
	errs := make([]error, len(s.c.zones))
	var wg sync.WaitGroup
	for i, z := range s.c.zones {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hits[i], errs[i] = s.lookup(ctx, rev, z)
		}()
	}
	wg.Wait()
	var v filters.Verdict
	var listed []string
	failed := 0
	for i, h := range hits {
		if errs[i] != nil {
			failed++
			continue
		}
		if h == nil {
			continue
		}
		listed = append(listed, h.zone.Zone+"="+h.meaning)
		v.Score += h.zone.Score
		if h.zone.Reject && v.Action != filters.Reject {
			v.Action, v.Reason = filters.Reject, fmt.Sprintf("Client host [%s] blocked using %s", ip, h.zone.Zone)
		}
	}
	sort.Strings(listed)
	if len(listed) > 0 {
		v.Headers = append(v.Headers, filters.Header{Key: "X-DNSBL", Value: strings.Join(listed, ", ")})
		v.Err = fmt.Errorf("%s listed: %s", ip, strings.Join(listed, ", "))
	}
	if failed == len(s.c.zones) && failed > 0 {
		return filters.Failure(fmt.Errorf("every zone failed: %w", errors.Join(errs...)))
	}
	return v
}

func (s *state) lookup(ctx context.Context, rev string, z Zone) (*hit, error) {
	rrs, err := s.c.res.Query(ctx, rev+"."+z.Zone, dns.TypeA)
	var de *net.DNSError
	if errors.As(err, &de) && de.IsNotFound {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", z.Zone, err)
	}
	for _, rr := range rrs {
		a, ok := rr.(*dns.A)
		if !ok || a.A.To4() == nil || a.A.To4()[0] != 127 {
			continue
		}
		code := a.A.String()
		if len(z.Codes) == 0 {
			return &hit{zone: z, meaning: code}, nil
		}
		if m, ok := z.Codes[code]; ok {
			return &hit{zone: z, meaning: m}, nil
		}
	}
	return nil, nil
}

// Reverse returns the DNSBL query label of an address: "4.3.2.1" for
// 1.2.3.4, and 32 reversed nibbles for IPv6 (RFC 5782 §2.1, §2.4).
func Reverse(ip netip.Addr) string {
	ip = ip.Unmap()
	if ip.Is4() {
		b := ip.As4()
		return fmt.Sprintf("%d.%d.%d.%d", b[3], b[2], b[1], b[0])
	}
	b := ip.As16()
	const hexd = "0123456789abcdef"
	out := make([]byte, 0, 63)
	for i := 15; i >= 0; i-- {
		if len(out) > 0 {
			out = append(out, '.')
		}
		out = append(out, hexd[b[i]&0xf], '.', hexd[b[i]>>4])
	}
	return string(out)
}
