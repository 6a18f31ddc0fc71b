package rules

import (
	_ "embed"
	"strings"
)

//go:embed default.rules
var defaultRules string

// Default returns the built-in rule set (default.rules), used when a
// configuration names no rule files.
func Default() []Rule {
	rs, err := Parse(strings.NewReader(defaultRules), "default.rules")
	if err != nil {
		panic("rules: built-in default.rules: " + err.Error()) // a build defect, caught by the tests
	}
	return rs
}
