package config

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/raftmail/raftmail/filters"
	"github.com/raftmail/raftmail/filters/auth"
	"github.com/raftmail/raftmail/filters/bayes"
	"github.com/raftmail/raftmail/filters/clamav"
	"github.com/raftmail/raftmail/filters/dnsbl"
	"github.com/raftmail/raftmail/filters/resolver"
	"github.com/raftmail/raftmail/filters/rules"
)

// Deps are what the configuration cannot say: the process's logger and
// host name, the frontend's own cheap checks, and the Bayes model (shared
// across reloads so its cache survives).
type Deps struct {
	Logger   *slog.Logger
	Hostname string
	// Trusted networks from flags, added to the file's.
	Trusted []netip.Prefix
	// Cheap checks run first (deny list, rate limits, size).
	Cheap []filters.Configured
	// Bayes supplies token counts; nil turns the bayes check off.
	Bayes bayes.Model
	// ClamdProbe overrides the Debian socket probe (tests).
	ClamdProbe func(addr string) bool
	// Observer counts verdicts (metrics); nil: none.
	Observer filters.VerdictObserver
}

func (p Policy) policy() (filters.Policy, error) {
	var out filters.Policy
	switch p.OnHit {
	case "", "default":
	case "reject":
		out.OnHit = filters.HitReject
	case "tag":
		out.OnHit = filters.HitTag
	case "ignore":
		out.OnHit = filters.HitIgnore
	default:
		return out, fmt.Errorf("on_hit %q: want default, reject, tag or ignore", p.OnHit)
	}
	switch p.OnError {
	case "", "tempfail":
	case "accept":
		out.OnError = filters.ErrorAccept
	default:
		return out, fmt.Errorf("on_error %q: want tempfail or accept", p.OnError)
	}
	out.Timeout, out.Weight = p.Timeout.Duration, p.Weight
	return out, nil
}

// Build returns the profile's pipeline and the names of the checks it
// runs (a listed check whose prerequisite is missing is left out with a
// log line: DNS checks without a resolver, bayes without a model, clamav
// without clamd).
func (c *Config) Build(profile string, d Deps) (*filters.Pipeline, []string, error) {
	prof, ok := c.Profiles[profile]
	if !ok {
		return nil, nil, fmt.Errorf("no profile %q in the filters configuration", profile)
	}
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	log := d.Logger.With("component", "filters", "profile", profile)
	trusted, err := filters.ParsePrefixes(c.Trusted)
	if err != nil {
		return nil, nil, fmt.Errorf("trusted: %w", err)
	}
	var res *resolver.Resolver
	if c.Resolver != "" {
		if res, err = resolver.New(resolver.Config{Server: c.Resolver, Timeout: c.DNSTimeout.Duration}); err != nil {
			return nil, nil, err
		}
	}
	checks := append([]filters.Configured(nil), d.Cheap...)
	var names []string
	for _, name := range prof.Checks {
		ck, pol, err := c.build(name, res, d)
		if err != nil {
			return nil, nil, fmt.Errorf("check %s: %w", name, err)
		}
		if ck == nil {
			log.Info("filter check off", "check", name, "why", pol.why)
			continue
		}
		fp, _ := pol.p.policy() // validated
		if w, ok := prof.Weights[name]; ok {
			fp.Weight = w
		}
		checks = append(checks, filters.With(ck, fp))
		names = append(names, name)
	}
	p := filters.New(filters.Config{Trusted: append(trusted, d.Trusted...), Timeout: c.Timeout.Duration,
		BodyTimeout: c.BodyTimeout.Duration, TagScore: prof.TagScore, RejectScore: prof.RejectScore, Logger: d.Logger,
		Observer: d.Observer}, checks...)
	return p, names, nil
}

type builtPolicy struct {
	p   Policy
	why string // why the check is off
}

func (c *Config) build(name string, res *resolver.Resolver, d Deps) (filters.Check, builtPolicy, error) {
	ch := &c.Checks
	switch name {
	case "dnsbl":
		if res == nil || len(ch.DNSBL.Zones) == 0 {
			return nil, builtPolicy{why: "no resolver or no zones configured"}, nil
		}
		zones := make([]dnsbl.Zone, len(ch.DNSBL.Zones))
		for i, z := range ch.DNSBL.Zones {
			zones[i] = dnsbl.Zone{Zone: z.Zone, Score: z.Score, Reject: z.Reject, Codes: z.Codes}
		}
		ck, err := dnsbl.New(res, zones)
		return ck, builtPolicy{p: ch.DNSBL.Policy}, err
	case "auth":
		if res == nil {
			return nil, builtPolicy{why: "no resolver configured"}, nil
		}
		host := c.Hostname
		if host == "" {
			host = d.Hostname
		}
		on := func(b *bool) bool { return b == nil || *b }
		ck, err := auth.New(auth.Config{Resolver: res, Hostname: host, SPF: on(ch.Auth.SPF), DKIM: on(ch.Auth.DKIM),
			DMARC: on(ch.Auth.DMARC), SPFFailReject: ch.Auth.SPFFailReject, DMARCIgnorePolicy: ch.Auth.DMARCIgnorePolicy})
		return ck, builtPolicy{p: ch.Auth.Policy}, err
	case "rules":
		rs, err := rules.ParseFiles(ch.Rules.Files...)
		if err != nil {
			return nil, builtPolicy{}, err
		}
		if ch.Rules.Builtin == nil || *ch.Rules.Builtin {
			rs = append(rules.Default(), rs...)
		}
		return rules.New(rs), builtPolicy{p: ch.Rules.Policy}, nil
	case "bayes":
		if d.Bayes == nil {
			return nil, builtPolicy{why: "no token source (no nodes)"}, nil
		}
		ck, err := bayes.New(bayes.Config{Model: d.Bayes, SpamCutoff: ch.Bayes.SpamCutoff, HamCutoff: ch.Bayes.HamCutoff,
			SpamScore: ch.Bayes.SpamScore, HamScore: ch.Bayes.HamScore, MinTrained: ch.Bayes.MinTrained})
		return ck, builtPolicy{p: ch.Bayes.Policy}, err
	case "clamav":
		addr := ch.ClamAV.Addr
		if addr == "" {
			probe := d.ClamdProbe
			if probe == nil {
				probe = pingClamd
			}
			if !probe("unix:" + clamav.DebianSocket) {
				return nil, builtPolicy{why: "no addr configured and no clamd on " + clamav.DebianSocket}, nil
			}
			addr = "unix:" + clamav.DebianSocket
		}
		ck, err := clamav.New(clamav.Config{Addr: addr, Timeout: ch.ClamAV.Timeout.Duration})
		return ck, builtPolicy{p: ch.ClamAV.Policy}, err
	}
	return nil, builtPolicy{}, fmt.Errorf("unknown check")
}

func pingClamd(addr string) bool {
	cl, err := clamav.NewClient(clamav.Config{Addr: addr, Timeout: time.Second})
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return cl.Ping(ctx) == nil
}
