package bayes

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/raftmail/raftmail/filters/mimetext"
)

func TestTrimPunct(t *testing.T) {
	for _, w := range []string{"", "-", "!!", "'quoted'", "--free!!!", "a-b", "-'!x!'-", "x", "!-'"} {
		if got, want := trimPunct(w), strings.Trim(w, "-'!"); got != want {
			t.Errorf("trimPunct(%q) = %q, want %q", w, got, want)
		}
	}
}

// testTexts are parsed corpus messages plus one built to reach every
// branch: more distinct words than the cap, non-ASCII words, runs over
// 24 bytes, punctuation to trim, mixed case.
func testTexts(t testing.TB, perClass int) []*mimetext.Text {
	var b strings.Builder
	b.WriteString("Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= MANY Words!\r\nX-Mailer: Büro-Mail 2.0\r\n\r\n")
	for i := range 2 * maxTokens {
		fmt.Fprintf(&b, "Word%05d word%05d --naïve!! '%s' ÆØÅ-€uro %s\r\n", i, i/2, strings.Repeat("x", 20+i%40), "https://h.example/p")
	}
	texts := []*mimetext.Text{mimetext.Parse([]byte(b.String()), mimetext.Limits{MaxText: 1 << 20})}
	for _, class := range []string{"ham", "spam"} {
		names, _ := filepath.Glob(filepath.Join("..", "..", "..", "shared", "corpus", class, "*.eml"))
		for i, n := range names {
			if i == perClass {
				break
			}
			raw, err := os.ReadFile(n)
			if err != nil {
				t.Fatal(err)
			}
			texts = append(texts, mimetext.Parse(raw, mimetext.Limits{}))
		}
	}
	return texts
}

// TestTokenizeMatchesReference: the rewritten tokenizer gives exactly the
// tokens of the reference (tokens_ref_test.go), cap included, so trained
// counts keep matching.
func TestTokenizeMatchesReference(t *testing.T) {
	texts := testTexts(t, 300)
	over := 0
	for i, txt := range texts {
		got, want := Tokenize(txt), refTokenize(txt)
		if !slices.Equal(got, want) {
			t.Fatalf("text %d: %d tokens, the reference %d (first difference at %d)", i, len(got), len(want), firstDiff(got, want))
		}
		if len(slices.Compact(slices.Sorted(slices.Values(rawTokens(txt))))) > maxTokens {
			over++
		}
	}
	if over == 0 {
		t.Fatal("no text went over the token cap: that path is untested")
	}
	t.Logf("%d texts, %d over the cap", len(texts), over)
}

func firstDiff(a, b []Token) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func BenchmarkTokenize(b *testing.B) {
	texts := testTexts(b, 250)[1:]
	if len(texts) == 0 {
		b.Skip("no corpus")
	}
	b.Run("now", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			Tokenize(texts[i%len(texts)])
		}
	})
	b.Run("reference", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			refTokenize(texts[i%len(texts)])
		}
	})
}
