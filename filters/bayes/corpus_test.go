package bayes_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/raftmail/raftmail/filters/bayes"
	"github.com/raftmail/raftmail/filters/mimetext"
)

// corpusDir is ../shared/corpus relative to the project root.
func corpusDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join("..", "..", "..", "shared", "corpus")
	if _, err := os.Stat(filepath.Join(dir, "ham")); err != nil {
		t.Skipf("corpus not found at %s: %v", dir, err)
	}
	return dir
}

func corpusFiles(t testing.TB, dir, class string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, class, "*.eml"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no messages in %s/%s: %v", dir, class, err)
	}
	sort.Strings(names)
	return names
}

func tokensOf(t testing.TB, path string) []bayes.Token {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bayes.Tokenize(mimetext.Parse(raw, mimetext.Limits{}))
}

// heldOut reports whether the i-th message is in the evaluation third
// (every third message: the split is deterministic and mixes easy and hard
// ham).
func heldOut(i int) bool { return i%3 == 2 }

// TestCorpusAccuracy trains on two thirds of ../shared/corpus and
// classifies the held-out third: at least 95% of spam must be caught and
// at most 1% of ham flagged at the check's default cutoff.
func TestCorpusAccuracy(t *testing.T) {
	dir := corpusDir(t)
	m := bayes.NewMemory()
	type sample struct {
		path string
		spam bool
		toks []bayes.Token
	}
	var test []sample
	for _, class := range []string{"spam", "ham"} {
		for i, p := range corpusFiles(t, dir, class) {
			toks := tokensOf(t, p)
			if heldOut(i) {
				test = append(test, sample{p, class == "spam", toks})
				continue
			}
			m.Train(toks, class == "spam")
		}
	}
	cutoff := bayes.DefaultSpamCutoff
	var spam, caught, ham, fp, unsure int
	for _, s := range test {
		tot, cs, _ := m.Counts(context.Background(), s.toks)
		prob, _ := bayes.Classify(tot, cs, bayes.Params{})
		if s.spam {
			spam++
			if prob >= cutoff {
				caught++
			}
		} else {
			ham++
			if prob >= cutoff {
				fp++
				t.Logf("false positive %.3f %s", prob, filepath.Base(s.path))
			}
		}
		if prob > bayes.DefaultHamCutoff && prob < cutoff {
			unsure++
		}
	}
	recall := 100 * float64(caught) / float64(spam)
	fpRate := 100 * float64(fp) / float64(ham)
	precision := 100 * float64(caught) / float64(max(1, caught+fp))
	// Printed (not only logged) so the figures show in a plain go test run.
	fmt.Printf("bayes corpus: held out %d spam, %d ham; cutoff %.2f: spam caught %.1f%% (%d/%d), ham false positives %.2f%% (%d/%d), precision %.1f%%, unsure %d\n",
		spam, ham, cutoff, recall, caught, spam, fpRate, fp, ham, precision, unsure)
	if recall < 95 {
		t.Errorf("spam caught %.1f%% < 95%%", recall)
	}
	if fpRate > 1 {
		t.Errorf("ham false positives %.2f%% > 1%%", fpRate)
	}
}
