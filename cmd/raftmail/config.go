package main

import (
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Configuration files (docs/config.md): "raftmail node --config node.toml"
// and "raftmail frontend --config frontend.toml". A file is flat TOML whose
// keys are the command's flag names (dashes or underscores), so every flag
// has a key and the flag's -h text documents it. Precedence: a flag on the
// command line, then the file, then the environment (RAFTMAIL_TOKEN), then
// the built-in default.

// parseWithConfig registers --config on fs, parses args, then sets each
// flag not given on the command line from the file.
func parseWithConfig(fs *flag.FlagSet, args []string) error {
	path := fs.String("config", "", "TOML configuration file; its keys are these flags' names, and flags given here win")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" {
		return nil
	}
	return applyConfigFile(fs, *path)
}

// applyConfigFile reads path and sets the flags of fs not set already.
// Unknown keys, tables and values of the wrong kind are errors: a typo in
// a configuration file must not go unnoticed.
func applyConfigFile(fs *flag.FlagSet, path string) error {
	var values map[string]any
	if _, err := toml.DecodeFile(path, &values); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		name := strings.ReplaceAll(k, "_", "-")
		f := fs.Lookup(name)
		if f == nil || name == "config" {
			return fmt.Errorf("config %s: unknown key %q (keys are the flags of this command)", path, k)
		}
		if given[name] {
			continue
		}
		strs, err := configStrings(values[k])
		if err != nil {
			return fmt.Errorf("config %s: key %q: %w", path, k, err)
		}
		if len(strs) > 1 {
			if _, ok := f.Value.(*stringList); !ok {
				return fmt.Errorf("config %s: key %q takes one value, not a list", path, k)
			}
		}
		for _, s := range strs {
			if err := fs.Set(name, s); err != nil {
				return fmt.Errorf("config %s: key %q: %w", path, k, err)
			}
		}
	}
	return nil
}

// configStrings turns a TOML value into the flag text(s) it stands for.
func configStrings(v any) ([]string, error) {
	switch x := v.(type) {
	case string:
		return []string{x}, nil
	case bool:
		return []string{strconv.FormatBool(x)}, nil
	case int64:
		return []string{strconv.FormatInt(x, 10)}, nil
	case float64:
		return []string{strconv.FormatFloat(x, 'g', -1, 64)}, nil
	case time.Duration:
		return []string{x.String()}, nil
	case []any:
		var out []string
		for _, e := range x {
			s, err := configStrings(e)
			if err != nil {
				return nil, err
			}
			out = append(out, s...)
		}
		return out, nil
	}
	return nil, fmt.Errorf("unsupported value %v (%T): use a string, number, boolean or list", v, v)
}
