// Package config reads the filters' configuration file (TOML) and builds
// a profile's pipeline from it: which checks run, their settings, their
// policy (on_hit, on_error, timeout, weight) and the profile's score
// thresholds. docs/filters.example.toml is the annotated reference, and a
// test loads it so it cannot rot. The frontend rebuilds its pipeline from
// the file on SIGHUP and swaps it atomically.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Duration is a time.Duration written as a string ("5s", "1m30s").
type Duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	d.Duration = v
	return err
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Config is the whole file.
type Config struct {
	// Resolver is the DNS server (host:port) of the DNS-based checks
	// (dnsbl, auth); empty disables them.
	Resolver   string   `toml:"resolver"`
	DNSTimeout Duration `toml:"dns_timeout"`
	// Hostname is the authserv-id of Authentication-Results (default:
	// the frontend's host name).
	Hostname string `toml:"hostname"`
	// Trusted client networks skip client checks (CIDRs).
	Trusted     []string `toml:"trusted"`
	Timeout     Duration `toml:"timeout"`
	BodyTimeout Duration `toml:"body_timeout"`

	Profiles map[string]Profile `toml:"profiles"`
	Checks   Checks             `toml:"checks"`
}

// Profile is one frontend profile ("mx", "submission").
type Profile struct {
	// Checks run in this order (see Checks for the names).
	Checks []string `toml:"checks"`
	// TagScore tags (Junk) at or above it; RejectScore rejects. 0: off.
	TagScore    float64 `toml:"tag_score"`
	RejectScore float64 `toml:"reject_score"`
	// Weights override the checks' weights in this profile.
	Weights map[string]float64 `toml:"weights"`
}

// Policy is what every check section may set.
type Policy struct {
	OnHit   string   `toml:"on_hit"`   // default | reject | tag | ignore
	OnError string   `toml:"on_error"` // tempfail | accept
	Timeout Duration `toml:"timeout"`
	Weight  float64  `toml:"weight"`
}

// Checks holds each check's section.
type Checks struct {
	DNSBL  DNSBL  `toml:"dnsbl"`
	Auth   Auth   `toml:"auth"`
	Rules  Rules  `toml:"rules"`
	Bayes  Bayes  `toml:"bayes"`
	ClamAV ClamAV `toml:"clamav"`
}

// DNSBL is [checks.dnsbl].
type DNSBL struct {
	Policy
	Zones []Zone `toml:"zones"`
}

// Zone is one [[checks.dnsbl.zones]].
type Zone struct {
	Zone   string            `toml:"zone"`
	Score  float64           `toml:"score"`
	Reject bool              `toml:"reject"`
	Codes  map[string]string `toml:"codes"`
}

// Auth is [checks.auth].
type Auth struct {
	Policy
	SPF               *bool `toml:"spf"`
	DKIM              *bool `toml:"dkim"`
	DMARC             *bool `toml:"dmarc"`
	SPFFailReject     bool  `toml:"spf_fail_reject"`
	DMARCIgnorePolicy bool  `toml:"dmarc_ignore_policy"`
}

// Rules is [checks.rules].
type Rules struct {
	Policy
	// Files are rule files (filters/rules format).
	Files []string `toml:"files"`
	// Builtin adds the built-in rules (default true).
	Builtin *bool `toml:"builtin"`
}

// Bayes is [checks.bayes].
type Bayes struct {
	Policy
	SpamCutoff float64  `toml:"spam_cutoff"`
	HamCutoff  float64  `toml:"ham_cutoff"`
	SpamScore  float64  `toml:"spam_score"`
	HamScore   float64  `toml:"ham_score"`
	MinTrained uint64   `toml:"min_trained"`
	CacheTTL   Duration `toml:"cache_ttl"`
}

// ClamAV is [checks.clamav].
type ClamAV struct {
	Policy
	// Addr is clamd's address ("unix:/path" or "host:port"); empty: the
	// Debian socket when clamd answers there, else the check is off.
	Addr string `toml:"addr"`
}

// CheckNames are the checks a profile may list.
var CheckNames = []string{"dnsbl", "auth", "rules", "bayes", "clamav"}

// Default is the configuration used without a file: mx runs every check
// (the DNS ones only once a resolver is set, clamav only where clamd is
// found), tags at 5 and rejects at 15; submission runs clamav only.
func Default() *Config {
	return &Config{
		Profiles: map[string]Profile{
			"mx":         {Checks: []string{"dnsbl", "auth", "rules", "bayes", "clamav"}, TagScore: 5, RejectScore: 15},
			"submission": {Checks: []string{"clamav"}},
		},
		Checks: Checks{DNSBL: DNSBL{Policy: Policy{OnError: "accept"}}},
	}
}

// Parse reads a configuration.
func Parse(data []byte, name string) (*Config, error) {
	c := &Config{}
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(c)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		sort.Strings(keys)
		return nil, fmt.Errorf("%s: unknown keys: %s", name, strings.Join(keys, ", "))
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return c, nil
}

// Load reads a configuration file.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("filters config: %w", err)
	}
	return Parse(b, path)
}

// Validate checks names and policies.
func (c *Config) Validate() error {
	if len(c.Profiles) == 0 {
		return errors.New("no [profiles]")
	}
	for name, p := range c.Profiles {
		for _, ch := range p.Checks {
			if !known(ch) {
				return fmt.Errorf("profile %s: unknown check %q (known: %s)", name, ch, strings.Join(CheckNames, ", "))
			}
		}
		for ch := range p.Weights {
			if !known(ch) {
				return fmt.Errorf("profile %s: weight for unknown check %q", name, ch)
			}
		}
		if p.RejectScore > 0 && p.TagScore > 0 && p.RejectScore < p.TagScore {
			return fmt.Errorf("profile %s: reject_score %v below tag_score %v", name, p.RejectScore, p.TagScore)
		}
	}
	for name, p := range map[string]Policy{"dnsbl": c.Checks.DNSBL.Policy, "auth": c.Checks.Auth.Policy,
		"rules": c.Checks.Rules.Policy, "bayes": c.Checks.Bayes.Policy, "clamav": c.Checks.ClamAV.Policy} {
		if _, err := p.policy(); err != nil {
			return fmt.Errorf("checks.%s: %w", name, err)
		}
	}
	for i, z := range c.Checks.DNSBL.Zones {
		if z.Zone == "" {
			return fmt.Errorf("checks.dnsbl.zones[%d]: no zone", i)
		}
	}
	return nil
}

func known(name string) bool {
	for _, n := range CheckNames {
		if n == name {
			return true
		}
	}
	return false
}
