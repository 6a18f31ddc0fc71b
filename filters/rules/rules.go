// Package rules is a SpamAssassin-like rule filter: regular expressions
// on header fields, on the decoded text of the message (HTML stripped) and
// on its URLs, each adding a score when it matches.
//
// File format, one rule a line ('#' starts a comment line):
//
//	header NAME Header-Name /regexp/flags SCORE [description]
//	body   NAME /regexp/flags SCORE [description]
//	uri    NAME /regexp/flags SCORE [description]
//
// flags: i (case-insensitive), m (multi-line), s (dot matches newline).
// A '/' inside the regexp is written '\/'. Regexps are Go's RE2 syntax,
// so matching is linear in the input: no rule can hang on a hostile
// message.
package rules

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/textproto"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/raftmail/raftmail/filters"
	"github.com/raftmail/raftmail/filters/mimetext"
)

// Kind is what a rule matches.
type Kind string

// Rule kinds.
const (
	Header Kind = "header"
	Body   Kind = "body"
	URI    Kind = "uri"
)

// Rule is one parsed rule.
type Rule struct {
	Kind        Kind
	Name        string
	Header      string // canonical header name (Header rules)
	Re          *regexp.Regexp
	Score       float64
	Description string
	lits        []string // see requiredLiterals (Body rules)
	// lang, when set, is every string Re matches (finiteLanguage), lower
	// case when fold (Body rules).
	lang []string
	fold bool
}

// Parse reads rules from r; name labels errors.
func Parse(r io.Reader, name string) ([]Rule, error) {
	var out []Rule
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	seen := map[string]bool{}
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		rule, err := parseLine(line)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, n, err)
		}
		if seen[rule.Name] {
			return nil, fmt.Errorf("%s:%d: rule %s defined twice", name, n, rule.Name)
		}
		seen[rule.Name] = true
		out = append(out, rule)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}

// ParseFiles reads and concatenates rule files.
func ParseFiles(paths ...string) ([]Rule, error) {
	var all []Rule
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("rules: %w", err)
		}
		rs, err := Parse(f, p)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("rules: %w", err)
		}
		all = append(all, rs...)
	}
	return all, nil
}

func parseLine(line string) (Rule, error) {
	kind, rest := cut(line)
	name, rest := cut(rest)
	r := Rule{Kind: Kind(kind), Name: name}
	switch r.Kind {
	case Header:
		var h string
		h, rest = cut(rest)
		if h == "" {
			return r, fmt.Errorf("header rule %s names no header", name)
		}
		r.Header = textproto.CanonicalMIMEHeaderKey(h)
	case Body, URI:
	default:
		return r, fmt.Errorf("unknown rule kind %q", kind)
	}
	if name == "" || !strings.HasPrefix(rest, "/") {
		return r, fmt.Errorf("rule %s: want /regexp/", name)
	}
	re, rest, err := parseRegexp(rest)
	if err != nil {
		return r, fmt.Errorf("rule %s: %w", name, err)
	}
	r.Re = re
	if r.Kind == Body {
		r.lits = requiredLiterals(re.String())
		r.lang, r.fold, _ = finiteLanguage(re.String())
	}
	score, desc := cut(rest)
	if r.Score, err = strconv.ParseFloat(score, 64); err != nil {
		return r, fmt.Errorf("rule %s: score %q: %w", name, score, err)
	}
	r.Description = desc
	return r, nil
}

func cut(s string) (string, string) {
	s = strings.TrimSpace(s)
	i := strings.IndexAny(s, " \t")
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimSpace(s[i:])
}

// parseRegexp reads "/re/flags" from the start of s.
func parseRegexp(s string) (*regexp.Regexp, string, error) {
	var b strings.Builder
	i := 1
	for ; i < len(s); i++ {
		c := s[i]
		if c == '\\' && i+1 < len(s) && s[i+1] == '/' {
			b.WriteByte('/')
			i++
			continue
		}
		if c == '/' {
			break
		}
		b.WriteByte(c)
	}
	if i >= len(s) {
		return nil, "", fmt.Errorf("unterminated regexp")
	}
	rest := s[i+1:]
	flags, rest := "", rest
	for len(rest) > 0 && strings.ContainsRune("ims", rune(rest[0])) {
		flags += rest[:1]
		rest = rest[1:]
	}
	expr := b.String()
	if flags != "" {
		expr = "(?" + flags + ")" + expr
	}
	re, err := regexp.Compile(expr)
	return re, rest, err
}

// Check is the rules filter.
type Check struct{ rules []Rule }

var _ filters.Check = (*Check)(nil)

// New returns a check of rules.
func New(rules []Rule) *Check { return &Check{rules: rules} }

// Name implements filters.Check.
func (c *Check) Name() string { return "rules" }

// NewState implements filters.Check.
func (c *Check) NewState(context.Context, *filters.ConnInfo) (filters.State, error) {
	return state{c: c}, nil
}

type state struct {
	filters.NopState
	c *Check
}

// Inline implements filters.Inline: the rules only compute, and stop when
// ctx ends.
func (state) Inline(filters.Stage) bool { return true }

// Body matches every rule; hits add their scores and are named in
// X-Spam-Rules.
func (s state) Body(ctx context.Context, m *filters.Message) filters.Verdict {
	txt, err := mimetext.FromMessage(m)
	if err != nil {
		return filters.Failure(err)
	}
	var body, lower string
	var safe bool
	var v filters.Verdict
	var hits []string
	for i := range s.c.rules {
		r := &s.c.rules[i]
		if ctx.Err() != nil {
			return filters.Failure(ctx.Err())
		}
		matched := false
		switch r.Kind {
		case Header:
			for _, val := range txt.Header.Values(r.Header) {
				if r.Re.MatchString(mimetext.DecodeHeader(val)) {
					matched = true
					break
				}
			}
		case Body:
			if body == "" {
				body = txt.Subject + "\n" + txt.Body()
				lower = strings.ToLower(body)
				safe = foldSafe(body)
			}
			switch {
			case r.lang != nil && !r.fold:
				matched = containsAny(body, r.lang)
			case r.lang != nil && safe:
				matched = containsAny(lower, r.lang)
			default:
				matched = r.mayMatch(lower) && r.Re.MatchString(body)
			}
		case URI:
			for _, u := range txt.URLs {
				if r.Re.MatchString(u) {
					matched = true
					break
				}
			}
		}
		if matched {
			v.Score += r.Score
			hits = append(hits, r.Name)
		}
	}
	if len(hits) > 0 {
		v.Headers = []filters.Header{{Key: "X-Spam-Rules", Value: strings.Join(hits, ",")}}
		v.Err = fmt.Errorf("rules hit: %s", strings.Join(hits, ","))
	}
	return v
}
