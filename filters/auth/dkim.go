package auth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"strings"

	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-msgauth/dmarc"

	"github.com/raftmail/raftmail/filters"
	"github.com/raftmail/raftmail/filters/mimetext"
)

type dkimResult struct {
	value  authres.ResultValue
	domain string
	reason string
}

// verifyDKIM checks every DKIM-Signature (at most MaxSignatures). A
// message whose header does not parse has no verifiable signature
// (dkim=permerror); only a failure to read the spool is an error.
func (s *state) verifyDKIM(ctx context.Context, m *filters.Message) ([]dkimResult, error) {
	r, err := m.Body.Open()
	if err != nil {
		return nil, fmt.Errorf("open body: %w", err)
	}
	defer r.Close()
	lookup := func(name string) ([]string, error) { return s.c.cfg.Resolver.LookupTXT(ctx, name) }
	verifs, err := dkim.VerifyWithOptions(r, &dkim.VerifyOptions{LookupTXT: lookup, MaxVerifications: s.c.cfg.MaxSignatures})
	if err != nil && !errors.Is(err, dkim.ErrTooManySignatures) {
		return []dkimResult{{value: authres.ResultPermError, reason: "unparsable message"}}, nil
	}
	out := make([]dkimResult, 0, len(verifs))
	for _, v := range verifs {
		d := dkimResult{value: authres.ResultPass, domain: v.Domain}
		switch {
		case v.Err == nil:
		case dkim.IsTempFail(v.Err):
			d.value, d.reason = authres.ResultTempError, v.Err.Error()
		case dkim.IsPermFail(v.Err):
			d.value, d.reason = authres.ResultPermError, v.Err.Error()
		default:
			d.value, d.reason = authres.ResultFail, v.Err.Error()
		}
		out = append(out, d)
	}
	return out, nil
}

type dmarcResult struct {
	value  authres.ResultValue
	from   string
	policy string
	reason string
}

// evalDMARC applies RFC 7489 §3.1 and §6.6: the RFC5322.From domain's
// policy (or its organizational domain's), passing when SPF or DKIM
// passes for an aligned domain. The organizational domain is taken as the
// last two labels (no public suffix list: a known simplification).
func (s *state) evalDMARC(ctx context.Context, m *filters.Message, dkims []dkimResult) dmarcResult {
	var from string
	// The header as the content checks parsed it (once per message,
	// shared with rules and Bayes).
	if txt, err := mimetext.FromMessage(m); err == nil {
		if addrs, err := mail.ParseAddressList(txt.Header.Get("From")); err == nil && len(addrs) == 1 {
			from = domainOf(addrs[0].Address)
		}
	}
	if from == "" {
		return dmarcResult{value: authres.ResultPermError, reason: "no single From address"}
	}
	lookup := func(name string) ([]string, error) { return s.c.cfg.Resolver.LookupTXT(ctx, name) }
	org := orgDomain(from)
	rec, err := dmarc.LookupWithOptions(from, &dmarc.LookupOptions{LookupTXT: lookup})
	sub := false
	if errors.Is(err, dmarc.ErrNoPolicy) && org != from {
		rec, err = dmarc.LookupWithOptions(org, &dmarc.LookupOptions{LookupTXT: lookup})
		sub = true
	}
	switch {
	case errors.Is(err, dmarc.ErrNoPolicy) || isNotFound(err):
		return dmarcResult{value: authres.ResultNone, from: from}
	case dmarc.IsTempFail(err):
		return dmarcResult{value: authres.ResultTempError, from: from, reason: err.Error()}
	case err != nil:
		return dmarcResult{value: authres.ResultPermError, from: from, reason: err.Error()}
	}
	aligned := func(d string, mode dmarc.AlignmentMode) bool {
		d = strings.ToLower(d)
		if mode == dmarc.AlignmentStrict {
			return d == from
		}
		return orgDomain(d) == org
	}
	pass := s.spf == "pass" && aligned(domainOrHelo(s.mailFrom, s.info.Helo), rec.SPFAlignment)
	for _, d := range dkims {
		if d.value == authres.ResultPass && aligned(d.domain, rec.DKIMAlignment) {
			pass = true
		}
	}
	if pass {
		return dmarcResult{value: authres.ResultPass, from: from}
	}
	policy := string(rec.Policy)
	if sub && rec.SubdomainPolicy != "" {
		policy = string(rec.SubdomainPolicy)
	}
	return dmarcResult{value: authres.ResultFail, from: from, policy: policy}
}

func isNotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

func domainOrHelo(mailFrom, helo string) string {
	if d := domainOf(mailFrom); d != "" {
		return d
	}
	return strings.ToLower(helo)
}

// orgDomain approximates the organizational domain (RFC 7489 §3.2) as the
// last two labels.
func orgDomain(d string) string {
	labels := strings.Split(strings.Trim(d, "."), ".")
	if len(labels) <= 2 {
		return strings.Join(labels, ".")
	}
	return strings.Join(labels[len(labels)-2:], ".")
}
