package bayes

import (
	"strings"
	"testing"
)

func TestTrimPunct(t *testing.T) {
	for _, w := range []string{"", "-", "!!", "'quoted'", "--free!!!", "a-b", "-'!x!'-", "x", "!-'"} {
		if got, want := trimPunct(w), strings.Trim(w, "-'!"); got != want {
			t.Errorf("trimPunct(%q) = %q, want %q", w, got, want)
		}
	}
}
