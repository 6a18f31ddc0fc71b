package outbound

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Failure is a diagnosis of a failed attempt, in SMTP terms: Code and
// Status (RFC 3463) say whether it is permanent (5xx) or temporary (4xx).
type Failure struct {
	Code   int
	Status string
	Msg    string
	MTA    string
}

func (f *Failure) Error() string { return fmt.Sprintf("%d %s %s", f.Code, f.Status, f.Msg) }

// Permanent reports whether retrying cannot help.
func (f *Failure) Permanent() bool { return f.Code >= 500 }

func permFail(status, format string, args ...any) *Failure {
	return &Failure{Code: 550, Status: status, Msg: fmt.Sprintf(format, args...)}
}

func tempFail(status, format string, args ...any) *Failure {
	return &Failure{Code: 451, Status: status, Msg: fmt.Sprintf(format, args...)}
}

// mxHost is one mail exchanger with its addresses.
type mxHost struct {
	Name  string
	Pref  uint16
	Addrs []netip.Addr
}

// route is where a domain's mail goes: hosts in the order to try them.
type route struct {
	Domain string
	Hosts  []mxHost
}

// resolver looks up MX, A and AAAA records through one DNS server.
type resolver struct {
	server   string
	timeout  time.Duration
	maxAddrs int
	self     string // our own host name: an MX naming it is a loop
}

// newResolver uses server ("host:port"), or the first server of
// /etc/resolv.conf when it is empty.
func newResolver(server string, timeout time.Duration, maxAddrs int, self string) (*resolver, error) {
	if server == "" {
		cc, err := dns.ClientConfigFromFile("/etc/resolv.conf")
		if err != nil || len(cc.Servers) == 0 {
			return nil, fmt.Errorf("no resolver given and /etc/resolv.conf unusable: %v", err)
		}
		server = net.JoinHostPort(cc.Servers[0], cc.Port)
	}
	if _, _, err := net.SplitHostPort(server); err != nil {
		return nil, fmt.Errorf("resolver %q: %w", server, err)
	}
	return &resolver{server: server, timeout: timeout, maxAddrs: maxAddrs, self: strings.ToLower(strings.TrimSuffix(self, "."))}, nil
}

var errNXDomain = errors.New("domain does not exist")

// query asks one question over UDP, falling back to TCP when the answer
// is truncated (RFC 1035 §4.2.1; a huge MX list arrives that way).
func (r *resolver) query(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.SetEdns0(4096, false)
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	c := &dns.Client{Net: "udp", Timeout: r.timeout}
	in, _, err := c.ExchangeContext(ctx, m, r.server)
	if err == nil && in.Truncated {
		c.Net = "tcp"
		in, _, err = c.ExchangeContext(ctx, m, r.server)
	}
	if err != nil {
		return nil, fmt.Errorf("dns %s %s: %w", dns.TypeToString[qtype], name, err)
	}
	switch in.Rcode {
	case dns.RcodeSuccess:
		return in.Answer, nil
	case dns.RcodeNameError:
		return nil, errNXDomain
	}
	return nil, fmt.Errorf("dns %s %s: %s", dns.TypeToString[qtype], name, dns.RcodeToString[in.Rcode])
}

// addrs returns the A and AAAA addresses of a host.
func (r *resolver) addrs(ctx context.Context, host string) ([]netip.Addr, error) {
	var out []netip.Addr
	var firstErr error
	for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
		rrs, err := r.query(ctx, host, qt)
		if err != nil {
			if firstErr == nil || errors.Is(firstErr, errNXDomain) {
				firstErr = err
			}
			continue
		}
		for _, rr := range rrs {
			switch a := rr.(type) {
			case *dns.A:
				if ip, ok := netip.AddrFromSlice(a.A.To4()); ok {
					out = append(out, ip)
				}
			case *dns.AAAA:
				if ip, ok := netip.AddrFromSlice(a.AAAA); ok {
					out = append(out, ip)
				}
			}
		}
	}
	if len(out) == 0 && firstErr != nil {
		return nil, firstErr
	}
	return out, nil
}

// resolve finds where mail for domain goes. RFC 5321 §5.1: MX records by
// preference (equal ones shuffled), else the domain's own address
// (implicit MX); RFC 7505: a null MX ("0 .") refuses mail. NXDOMAIN and a
// null MX fail permanently, a failing resolver temporarily. Hosts at or
// after our own name in preference are dropped (mail would loop).
func (r *resolver) resolve(ctx context.Context, domain string) (*route, *Failure) {
	if !ValidDomain(domain) {
		return nil, permFail("5.1.2", "malformed recipient domain %q", domain)
	}
	if ip, ok := addressLiteral(domain); ok {
		return &route{Domain: domain, Hosts: []mxHost{{Name: domain, Addrs: []netip.Addr{ip}}}}, nil
	}
	rrs, err := r.query(ctx, domain, dns.TypeMX)
	if errors.Is(err, errNXDomain) {
		return nil, permFail("5.1.2", "domain %s does not exist (NXDOMAIN)", domain)
	}
	if err != nil {
		return nil, tempFail("4.4.3", "cannot resolve %s: %v", domain, err)
	}
	var mxs []*dns.MX
	for _, rr := range rrs {
		if mx, ok := rr.(*dns.MX); ok {
			mxs = append(mxs, mx)
		}
	}
	if len(mxs) == 1 && mxs[0].Mx == "." {
		return nil, &Failure{Code: 556, Status: "5.1.10", Msg: fmt.Sprintf("domain %s accepts no mail (null MX, RFC 7505)", domain)}
	}
	if len(mxs) == 0 {
		return r.implicit(ctx, domain)
	}
	return r.hosts(ctx, domain, mxs)
}

// implicit is the fallback to the domain's own A/AAAA (RFC 5321 §5.1).
func (r *resolver) implicit(ctx context.Context, domain string) (*route, *Failure) {
	ips, err := r.addrs(ctx, domain)
	switch {
	case errors.Is(err, errNXDomain):
		return nil, permFail("5.1.2", "domain %s does not exist", domain)
	case err != nil:
		return nil, tempFail("4.4.3", "cannot resolve %s: %v", domain, err)
	case len(ips) == 0:
		return nil, permFail("5.1.2", "domain %s has no MX and no address", domain)
	}
	return &route{Domain: domain, Hosts: []mxHost{{Name: domain, Addrs: trim(ips, r.maxAddrs)}}}, nil
}

func (r *resolver) hosts(ctx context.Context, domain string, mxs []*dns.MX) (*route, *Failure) {
	rand.Shuffle(len(mxs), func(i, j int) { mxs[i], mxs[j] = mxs[j], mxs[i] })
	slices.SortStableFunc(mxs, func(a, b *dns.MX) int { return int(a.Preference) - int(b.Preference) })
	for i, mx := range mxs {
		if strings.EqualFold(strings.TrimSuffix(mx.Mx, "."), r.self) {
			mxs = mxs[:i] // RFC 5321 §5.1: only MXs preferred over ourselves
			if len(mxs) == 0 {
				return nil, permFail("5.4.6", "mail for %s loops back to myself", domain)
			}
			break
		}
	}
	rt := &route{Domain: domain}
	budget := r.maxAddrs
	var lastErr error
	for _, mx := range mxs {
		if budget <= 0 {
			break
		}
		name := strings.TrimSuffix(mx.Mx, ".")
		if !ValidDomain(name) {
			continue
		}
		ips, err := r.addrs(ctx, name)
		if err != nil {
			lastErr = err
			budget-- // a lookup costs like an address: bounds a huge MX list
			continue
		}
		ips = trim(ips, budget)
		budget -= len(ips)
		if len(ips) > 0 {
			rt.Hosts = append(rt.Hosts, mxHost{Name: name, Pref: mx.Preference, Addrs: ips})
		}
	}
	if len(rt.Hosts) == 0 {
		return nil, tempFail("4.4.4", "no usable address for any MX of %s (last error: %v)", domain, lastErr)
	}
	return rt, nil
}

func trim(ips []netip.Addr, n int) []netip.Addr {
	if len(ips) > n {
		return ips[:max(n, 0)]
	}
	return ips
}

// ValidDomain checks RFC 5321 §4.1.2 Domain syntax (LDH labels) or an
// address literal.
func ValidDomain(d string) bool {
	if _, ok := addressLiteral(d); ok {
		return true
	}
	if d == "" || len(d) > 253 {
		return false
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c >= 0x80) {
				return false
			}
		}
	}
	return true
}

// addressLiteral parses "[192.0.2.1]" or "[IPv6:2001:db8::1]" (RFC 5321
// §4.1.3).
func addressLiteral(d string) (netip.Addr, bool) {
	if len(d) < 3 || d[0] != '[' || d[len(d)-1] != ']' {
		return netip.Addr{}, false
	}
	s := d[1 : len(d)-1]
	if len(s) > 5 && strings.EqualFold(s[:5], "IPv6:") {
		ip, err := netip.ParseAddr(s[5:])
		return ip, err == nil && ip.Is6()
	}
	ip, err := netip.ParseAddr(s)
	return ip, err == nil && ip.Is4()
}
