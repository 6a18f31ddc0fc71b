package main

import (
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
)

// TestAPICommandWords: admin and cluster share their flag parsing, each
// with its own minimum of words and its own usage; too few words print
// the usage (flag.ErrHelp) and an unknown word is named, both before any
// request is made (the API address here answers nothing).
func TestAPICommandWords(t *testing.T) {
	const api = "--api=http://127.0.0.1:1"
	for _, tc := range []struct {
		name string
		run  func([]string, io.Writer) error
		args []string
		want string // "" for flag.ErrHelp
	}{
		{"admin, no words", runAdmin, []string{api}, ""},
		{"admin, one word", runAdmin, []string{api, "user"}, ""},
		{"admin, unknown", runAdmin, []string{api, "frob", "x"}, `unknown admin command "frob"`},
		{"cluster, no words", runCluster, []string{api}, ""},
		{"cluster, unknown", runCluster, []string{api, "frob"}, `unknown cluster command "frob"`},
	} {
		err := tc.run(tc.args, io.Discard)
		switch {
		case tc.want == "" && !errors.Is(err, flag.ErrHelp):
			t.Errorf("%s: %v, want the usage", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}
