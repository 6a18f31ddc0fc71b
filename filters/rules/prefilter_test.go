package rules

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/raftmail/raftmail/filters/mimetext"
)

// TestFiniteLanguage: the substring search stands in for the regexp only
// where the two agree. Every default body rule takes the fast path, and
// over the real corpus (and texts built to trip folding) each rule's
// verdict by substring search equals its regexp's.
func TestFiniteLanguage(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []string // nil: no finite language
		fold bool
	}{
		{`viagra|cialis`, []string{"viagra", "cialis"}, false},
		{`(?i)click here (?:now|today)`, []string{"click here now", "click here today"}, true},
		{`(?i)transfer of (?:the )?funds`, []string{"transfer of funds", "transfer of the funds"}, true},
		{`a\*b`, []string{"a*b"}, false},
		{`\bviagra\b`, nil, false},                                   // word boundaries are not substrings
		{`vi.gra`, nil, false},                                       // any character
		{`(?i)a(?-i)b`, nil, false},                                  // folded and exact letters mixed
		{`(?i)café`, nil, false},                                     // non-ASCII under folding
		{`(?:a|b|c|d)(?:a|b|c|d)(?:a|b|c|d)(?:a|b|c|d)`, nil, false}, // 256 strings: too many
	} {
		got, fold, ok := finiteLanguage(tc.expr)
		if (tc.want == nil) != !ok {
			t.Errorf("%s: ok %v, language %q", tc.expr, ok, got)
			continue
		}
		if ok && (!slices.Equal(sortedCopy(got), sortedCopy(tc.want)) || fold != tc.fold) {
			t.Errorf("%s: language %q fold %v, want %q fold %v", tc.expr, got, fold, tc.want, tc.fold)
		}
	}

	var texts []string
	for _, class := range []string{"ham", "spam"} {
		names, _ := filepath.Glob(filepath.Join("..", "..", "..", "shared", "corpus", class, "*.eml"))
		for _, n := range names {
			raw, err := os.ReadFile(n)
			if err != nil {
				t.Fatal(err)
			}
			txt := mimetext.Parse(raw, mimetext.Limits{})
			texts = append(texts, txt.Subject+"\n"+txt.Body())
		}
	}
	texts = append(texts, "VIAGRA", "ViAgRa", "unſubscribe", "next of \u212ain", "Click Here İmmediately", "click here now")
	hits := 0
	for _, r := range Default() {
		if r.Kind != Body {
			continue
		}
		if r.lang == nil {
			t.Errorf("default rule %s has no finite language; it would run its regexp on every message", r.Name)
			continue
		}
		for _, text := range texts {
			lower := strings.ToLower(text)
			var fast bool
			switch {
			case !r.fold:
				fast = containsAny(text, r.lang)
			case foldSafe(text):
				fast = containsAny(lower, r.lang)
			default:
				continue // Body falls back to the regexp
			}
			if slow := r.Re.MatchString(text); fast != slow {
				t.Errorf("rule %s on %.60q: substring search %v, regexp %v", r.Name, text, fast, slow)
			}
			if fast {
				hits++
			}
		}
	}
	if hits == 0 {
		t.Error("no default body rule matched any text: the comparison proved nothing")
	}
	t.Logf("%d texts, %d rule hits", len(texts), hits)
}

func sortedCopy(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}
