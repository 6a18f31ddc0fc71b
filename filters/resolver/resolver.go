// Package resolver is the DNS client of the filters: queries go to one
// configurable server (so tests run a real DNS server on 127.0.0.1) with
// github.com/miekg/dns, answers are cached for their TTL (negative answers
// for the SOA minimum, RFC 2308 §5), and every lookup honours its context,
// so a server that never answers costs at most the caller's deadline.
// Errors are *net.DNSError, as the net package returns, so SPF, DKIM and
// DMARC libraries classify them (IsNotFound, temporary) as they expect.
package resolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Config configures a Resolver.
type Config struct {
	// Server is the resolver's address, host:port (default: the first
	// nameserver of /etc/resolv.conf).
	Server string
	// Timeout bounds one query (default 2s); a context deadline that
	// comes first wins.
	Timeout time.Duration
	// MaxEntries bounds the cache (default 100,000 answers).
	MaxEntries int
	// MinTTL and MaxTTL clamp how long answers are cached (defaults 5s and
	// 1h); NegTTL is used for negative answers without SOA (default 60s).
	MinTTL, MaxTTL, NegTTL time.Duration
}

// Resolver is a caching DNS client, safe for concurrent use.
type Resolver struct {
	cfg    Config
	client *dns.Client
	tcp    *dns.Client

	mu    sync.Mutex
	cache map[cacheKey]cacheEntry
}

type cacheKey struct {
	name  string
	qtype uint16
}

type cacheEntry struct {
	rrs   []dns.RR
	rcode int
	exp   time.Time
}

// New returns a resolver.
func New(cfg Config) (*Resolver, error) {
	if cfg.Server == "" {
		cc, err := dns.ClientConfigFromFile("/etc/resolv.conf")
		if err != nil || len(cc.Servers) == 0 {
			return nil, fmt.Errorf("resolver: no server configured and none in /etc/resolv.conf: %v", err)
		}
		cfg.Server = net.JoinHostPort(cc.Servers[0], cc.Port)
	}
	if _, _, err := net.SplitHostPort(cfg.Server); err != nil {
		cfg.Server = net.JoinHostPort(cfg.Server, "53")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 100_000
	}
	if cfg.MinTTL <= 0 {
		cfg.MinTTL = 5 * time.Second
	}
	if cfg.MaxTTL <= 0 {
		cfg.MaxTTL = time.Hour
	}
	if cfg.NegTTL <= 0 {
		cfg.NegTTL = time.Minute
	}
	return &Resolver{cfg: cfg, client: &dns.Client{Net: "udp", UDPSize: 4096},
		tcp: &dns.Client{Net: "tcp"}, cache: make(map[cacheKey]cacheEntry)}, nil
}

// Server returns the address queried.
func (r *Resolver) Server() string { return r.cfg.Server }

// Query returns the answer records of type qtype for name (cached). A
// name that does not exist is a *net.DNSError with IsNotFound.
func (r *Resolver) Query(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	fqdn := dns.Fqdn(strings.ToLower(name))
	key := cacheKey{fqdn, qtype}
	now := time.Now()
	r.mu.Lock()
	e, ok := r.cache[key]
	r.mu.Unlock()
	if !ok || !now.Before(e.exp) {
		var err error
		e, err = r.exchange(ctx, fqdn, qtype)
		if err != nil {
			return nil, err
		}
		r.put(key, e)
	}
	switch e.rcode {
	case dns.RcodeSuccess:
		return e.rrs, nil
	case dns.RcodeNameError:
		return nil, &net.DNSError{Err: "no such host", Name: name, Server: r.cfg.Server, IsNotFound: true}
	}
	return nil, &net.DNSError{Err: "server answered " + dns.RcodeToString[e.rcode], Name: name, Server: r.cfg.Server, IsTemporary: true}
}

func (r *Resolver) exchange(ctx context.Context, fqdn string, qtype uint16) (cacheEntry, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout) // the earlier of the two deadlines
	defer cancel()
	m := new(dns.Msg)
	m.SetQuestion(fqdn, qtype)
	m.SetEdns0(4096, false)
	in, _, err := r.client.ExchangeContext(ctx, m, r.cfg.Server)
	if err == nil && in.Truncated {
		in, _, err = r.tcp.ExchangeContext(ctx, m, r.cfg.Server)
	}
	if err != nil {
		var ne net.Error
		timeout := errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
		return cacheEntry{}, &net.DNSError{Err: err.Error(), Name: fqdn, Server: r.cfg.Server, IsTimeout: timeout, IsTemporary: true}
	}
	e := cacheEntry{rcode: in.Rcode}
	ttl := r.cfg.NegTTL
	if in.Rcode == dns.RcodeSuccess {
		for _, rr := range in.Answer {
			if rr.Header().Rrtype == qtype {
				e.rrs = append(e.rrs, rr)
			}
		}
	}
	if len(e.rrs) > 0 {
		ttl = r.cfg.MaxTTL
		for _, rr := range e.rrs {
			ttl = min(ttl, time.Duration(rr.Header().Ttl)*time.Second)
		}
	} else {
		for _, rr := range in.Ns {
			if soa, ok := rr.(*dns.SOA); ok {
				ttl = time.Duration(min(soa.Minttl, soa.Hdr.Ttl)) * time.Second
			}
		}
	}
	if in.Rcode != dns.RcodeSuccess && in.Rcode != dns.RcodeNameError {
		ttl = r.cfg.MinTTL // SERVFAIL and the like: retry soon
	}
	e.exp = time.Now().Add(max(r.cfg.MinTTL, min(ttl, r.cfg.MaxTTL)))
	return e, nil
}

func (r *Resolver) put(key cacheKey, e cacheEntry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.cache) >= r.cfg.MaxEntries {
		now := time.Now()
		for k, v := range r.cache {
			if !now.Before(v.exp) {
				delete(r.cache, k)
			}
		}
		if len(r.cache) >= r.cfg.MaxEntries {
			clear(r.cache)
		}
	}
	r.cache[key] = e
}

// LookupTXT returns the TXT records of name, each record's strings
// joined (RFC 7208 §3.3).
func (r *Resolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	rrs, err := r.Query(ctx, name, dns.TypeTXT)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		out = append(out, strings.Join(rr.(*dns.TXT).Txt, ""))
	}
	return out, nil
}

// LookupIPAddr returns the A and AAAA addresses of host.
func (r *Resolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	var out []net.IPAddr
	var firstErr error
	for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
		rrs, err := r.Query(ctx, host, qt)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		for _, rr := range rrs {
			switch a := rr.(type) {
			case *dns.A:
				out = append(out, net.IPAddr{IP: a.A})
			case *dns.AAAA:
				out = append(out, net.IPAddr{IP: a.AAAA})
			}
		}
	}
	if len(out) == 0 && firstErr != nil {
		return nil, firstErr
	}
	return out, nil
}

// LookupMX returns the MX records of name.
func (r *Resolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	rrs, err := r.Query(ctx, name, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	out := make([]*net.MX, 0, len(rrs))
	for _, rr := range rrs {
		mx := rr.(*dns.MX)
		out = append(out, &net.MX{Host: mx.Mx, Pref: mx.Preference})
	}
	return out, nil
}

// LookupAddr returns the PTR names of an address.
func (r *Resolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	rev, err := dns.ReverseAddr(addr)
	if err != nil {
		return nil, &net.DNSError{Err: err.Error(), Name: addr}
	}
	rrs, err := r.Query(ctx, rev, dns.TypePTR)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		out = append(out, rr.(*dns.PTR).Ptr)
	}
	return out, nil
}
