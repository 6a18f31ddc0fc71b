// Package auth checks message authentication: SPF at MAIL FROM (RFC 7208,
// blitiri.com.ar/go/spf), DKIM signatures (RFC 6376) and the DMARC policy
// of the From domain (RFC 7489) at end of DATA (github.com/emersion/
// go-msgauth), and writes the results into one Authentication-Results
// header (RFC 8601). DMARC p=reject failing rejects (550 5.7.1), and
// p=quarantine tags; SPF and DKIM results add configurable scores.
package auth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"blitiri.com.ar/go/spf"
	"github.com/emersion/go-msgauth/authres"

	"github.com/raftmail/raftmail/filters"
)

// Resolver is the DNS the checks need (filters/resolver implements it).
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	LookupAddr(ctx context.Context, addr string) ([]string, error)
}

var _ spf.DNSResolver = Resolver(nil)

// Scores are added for each result.
type Scores struct {
	SPFPass, SPFFail, SPFSoftFail float64
	DKIMPass, DKIMFail            float64
	DMARCPass, DMARCFail          float64
}

// DefaultScores are SpamAssassin-like defaults.
var DefaultScores = Scores{SPFPass: -0.1, SPFFail: 2.0, SPFSoftFail: 1.0,
	DKIMPass: -0.1, DKIMFail: 1.0, DMARCPass: -0.5, DMARCFail: 3.0}

// Config configures the check.
type Config struct {
	Resolver Resolver
	// Hostname is the authserv-id of Authentication-Results (RFC 8601
	// §2.5), the frontend's host name.
	Hostname string
	// SPF, DKIM and DMARC enable each method (DMARC needs the other two).
	SPF, DKIM, DMARC bool
	// SPFFailReject refuses MAIL FROM when SPF fails (550 5.7.23, RFC
	// 7372); off by default (DMARC decides).
	SPFFailReject bool
	// DMARCIgnorePolicy only scores DMARC failures (no reject/tag).
	DMARCIgnorePolicy bool
	// MaxSignatures bounds the DKIM signatures verified (default 5).
	MaxSignatures int
	Scores        Scores
}

// Check is the SPF/DKIM/DMARC check.
type Check struct{ cfg Config }

var _ filters.Check = (*Check)(nil)

// New returns the check.
func New(cfg Config) (*Check, error) {
	if cfg.Resolver == nil {
		return nil, errors.New("auth: no resolver")
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "localhost"
	}
	if cfg.MaxSignatures <= 0 {
		cfg.MaxSignatures = 5
	}
	if cfg.Scores == (Scores{}) {
		cfg.Scores = DefaultScores
	}
	return &Check{cfg: cfg}, nil
}

// Name implements filters.Check.
func (c *Check) Name() string { return "auth" }

// NewState implements filters.Check.
func (c *Check) NewState(_ context.Context, info *filters.ConnInfo) (filters.State, error) {
	return &state{c: c, info: info}, nil
}

type state struct {
	filters.NopState
	c    *Check
	info *filters.ConnInfo

	mailFrom string
	spf      spf.Result // "" when not checked
	spfErr   error
}

// Inline implements filters.Inline: Mail (SPF) and Body (DKIM, DMARC)
// query DNS; the other stages do nothing.
func (*state) Inline(stage filters.Stage) bool {
	return stage != filters.StageMail && stage != filters.StageData
}

// skip reports whether the client is ours (trusted network or
// authenticated submission): its mail is not judged by SPF/DMARC.
func (s *state) skip() bool { return s.info.Trusted || s.info.Account != "" }

// Mail runs SPF on the MAIL FROM domain (the HELO name for a null
// sender, RFC 7208 §2.4).
func (s *state) Mail(ctx context.Context, m filters.Mail) filters.Verdict {
	s.mailFrom, s.spf, s.spfErr = m.From, "", nil
	if !s.c.cfg.SPF || s.skip() {
		return filters.Verdict{}
	}
	ip := net.IP(s.info.IP.Unmap().AsSlice())
	res, err := spf.CheckHostWithSender(ip, s.info.Helo, m.From, spf.WithContext(ctx), spf.WithResolver(s.c.cfg.Resolver))
	s.spf, s.spfErr = res, err
	if res == spf.Fail && s.c.cfg.SPFFailReject {
		return filters.Verdict{Action: filters.Reject, Code: 550, Enhanced: [3]int{5, 7, 23},
			Reason: "SPF validation failed", Err: fmt.Errorf("spf fail for %s from %s: %v", m.From, s.info.IP, err)}
	}
	return filters.Verdict{}
}

// Reset forgets the transaction's SPF result.
func (s *state) Reset() { s.mailFrom, s.spf, s.spfErr = "", "", nil }

// Body verifies DKIM, evaluates DMARC and writes Authentication-Results.
func (s *state) Body(ctx context.Context, m *filters.Message) filters.Verdict {
	if s.skip() {
		return filters.Verdict{}
	}
	var v filters.Verdict
	var results []authres.Result
	sc := s.c.cfg.Scores
	if s.spf != "" {
		results = append(results, &authres.SPFResult{Value: authres.ResultValue(s.spf), From: s.mailFrom, Helo: s.info.Helo})
		switch s.spf {
		case spf.Pass:
			v.Score += sc.SPFPass
		case spf.Fail:
			v.Score += sc.SPFFail
		case spf.SoftFail:
			v.Score += sc.SPFSoftFail
		}
	}
	var dkims []dkimResult
	if s.c.cfg.DKIM {
		var err error
		dkims, err = s.verifyDKIM(ctx, m)
		if err != nil {
			return filters.Failure(err)
		}
		for _, d := range dkims {
			results = append(results, &authres.DKIMResult{Value: d.value, Domain: d.domain, Reason: d.reason})
			switch d.value {
			case authres.ResultPass:
				v.Score += sc.DKIMPass
			case authres.ResultFail, authres.ResultPermError:
				v.Score += sc.DKIMFail
			}
		}
		if len(dkims) == 0 {
			results = append(results, &authres.DKIMResult{Value: authres.ResultNone})
		}
	}
	if s.c.cfg.DMARC {
		d := s.evalDMARC(ctx, m, dkims)
		if d.value != "" {
			results = append(results, &authres.DMARCResult{Value: d.value, From: d.from, Reason: d.reason})
		}
		switch {
		case d.value == authres.ResultPass:
			v.Score += sc.DMARCPass
		case d.value == authres.ResultFail:
			v.Score += sc.DMARCFail
			v.Err = fmt.Errorf("dmarc fail for %s (p=%s)", d.from, d.policy)
			if !s.c.cfg.DMARCIgnorePolicy {
				switch d.policy {
				case "reject":
					v.Action, v.Reason = filters.Reject, "Message rejected: DMARC policy of "+d.from
				case "quarantine":
					v.Action = filters.Tag
				}
			}
		}
	}
	v.Headers = append(v.Headers, filters.Header{Key: "Authentication-Results", Value: authres.Format(s.c.cfg.Hostname, results)})
	return v
}

// lower returns the lower-cased domain of an address, "" if none.
func domainOf(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return ""
	}
	return strings.ToLower(strings.Trim(addr[at+1:], ">. "))
}
