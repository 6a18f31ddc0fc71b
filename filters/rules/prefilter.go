package rules

import (
	"regexp/syntax"
	"strings"
)

// requiredLiterals returns lower-cased strings of which any match of
// expr must contain at least one, or nil when no such set is found. Body
// rules are then skipped with a strings.Contains over the lower-cased
// text before the regexp runs: Go's case-insensitive matching over a
// whole message is the pipeline's largest cost (BenchmarkPipeline).
func requiredLiterals(expr string) []string {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return nil
	}
	lits := literals(re.Simplify())
	for _, l := range lits {
		if len(l) < 3 {
			return nil // too weak to be worth it
		}
	}
	return lits
}

func literals(re *syntax.Regexp) []string {
	switch re.Op {
	case syntax.OpLiteral:
		return []string{strings.ToLower(string(re.Rune))}
	case syntax.OpCapture, syntax.OpPlus:
		return literals(re.Sub[0])
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return literals(re.Sub[0])
		}
	case syntax.OpConcat:
		var best []string
		for _, sub := range re.Sub {
			if l := literals(sub); l != nil && minLen(l) > minLen(best) {
				best = l
			}
		}
		return best
	case syntax.OpAlternate:
		var all []string
		for _, sub := range re.Sub {
			l := literals(sub)
			if l == nil {
				return nil
			}
			all = append(all, l...)
		}
		return all
	}
	return nil
}

func minLen(ls []string) int {
	if len(ls) == 0 {
		return 0
	}
	m := len(ls[0])
	for _, l := range ls[1:] {
		m = min(m, len(l))
	}
	return m
}

// mayMatch reports whether lower (the lower-cased text) contains one of
// the rule's required literals (always true without any).
func (r *Rule) mayMatch(lower string) bool {
	if r.lits == nil {
		return true
	}
	for _, l := range r.lits {
		if strings.Contains(lower, l) {
			return true
		}
	}
	return false
}
