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

// maxLanguage bounds the strings finiteLanguage enumerates.
const maxLanguage = 64

// finiteLanguage returns every string expr matches when that set is
// finite and small (literals, concatenations, alternations, optional
// parts), with whether the literals are case-folded (all of them, or
// none: a mix returns ok false). A match of such a rule anywhere in a
// text is then a substring search, with no regexp run: the default body
// rules are all of this shape, and Go's case-insensitive matching over
// whole messages cost a sixth of the pipeline (BenchmarkPipeline).
func finiteLanguage(expr string) (lang []string, fold, ok bool) {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return nil, false, false
	}
	l := language{}
	lang, ok = l.of(re.Simplify())
	if !ok || (l.folded && l.exact) {
		return nil, false, false
	}
	if l.folded {
		for i, s := range lang {
			for _, r := range s {
				if r >= 0x80 {
					return nil, false, false // lower-casing matches ASCII folding only
				}
			}
			lang[i] = strings.ToLower(s)
		}
	}
	return lang, l.folded, true
}

// language enumerates a finite regexp language; folded and exact record
// whether case-insensitive and case-sensitive letters occur.
type language struct{ folded, exact bool }

func (l *language) of(re *syntax.Regexp) ([]string, bool) {
	switch re.Op {
	case syntax.OpEmptyMatch:
		return []string{""}, true
	case syntax.OpLiteral:
		s := string(re.Rune)
		if strings.ToLower(s) != strings.ToUpper(s) {
			if re.Flags&syntax.FoldCase != 0 {
				l.folded = true
			} else {
				l.exact = true
			}
		}
		return []string{s}, true
	case syntax.OpCapture:
		return l.of(re.Sub[0])
	case syntax.OpQuest:
		sub, ok := l.of(re.Sub[0])
		return append([]string{""}, sub...), ok && len(sub) < maxLanguage
	case syntax.OpAlternate:
		var all []string
		for _, sub := range re.Sub {
			s, ok := l.of(sub)
			if !ok || len(all)+len(s) > maxLanguage {
				return nil, false
			}
			all = append(all, s...)
		}
		return all, true
	case syntax.OpConcat:
		out := []string{""}
		for _, sub := range re.Sub {
			s, ok := l.of(sub)
			if !ok || len(out)*len(s) > maxLanguage {
				return nil, false
			}
			next := make([]string, 0, len(out)*len(s))
			for _, a := range out {
				for _, b := range s {
					next = append(next, a+b)
				}
			}
			out = next
		}
		return out, true
	}
	return nil, false
}

// foldSafe reports whether lower-casing text agrees with the regexp's
// case folding of ASCII letters: ſ folds to s but does not lower-case to
// it, İ lower-cases to i but does not fold to it. (Two substring searches:
// strings.ContainsAny decodes every rune for a non-ASCII set, 3x slower.)
func foldSafe(text string) bool {
	return !strings.Contains(text, "\u017f") && !strings.Contains(text, "\u0130")
}

// containsAny reports whether text contains one of the strings.
func containsAny(text string, lang []string) bool {
	for _, s := range lang {
		if strings.Contains(text, s) {
			return true
		}
	}
	return false
}
