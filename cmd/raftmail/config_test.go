package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// flagNames runs "raftmail CMD -h" and returns its flag names.
func flagNames(t *testing.T, cmd string) []string {
	t.Helper()
	out, _ := exec.Command(binary, cmd, "-h").CombinedOutput()
	var names []string
	for _, m := range regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`).FindAllStringSubmatch(string(out), -1) {
		names = append(names, m[1])
	}
	if len(names) < 10 {
		t.Fatalf("%s -h listed %d flags:\n%s", cmd, len(names), out)
	}
	return names
}

// TestExampleConfigsCoverEveryFlag: the commented examples in docs/ have a
// key (set or commented out) for every flag, so they cannot fall behind.
func TestExampleConfigsCoverEveryFlag(t *testing.T) {
	for cmd, file := range map[string]string{"node": "node.example.toml", "frontend": "frontend.example.toml"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "docs", file))
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range flagNames(t, cmd) {
			if name == "config" {
				continue
			}
			if !regexp.MustCompile(`(?m)^#? ?` + regexp.QuoteMeta(name) + ` = `).Match(b) {
				t.Errorf("docs/%s has no key %q (flag --%s of raftmail %s): add it, set or commented", file, name, name, cmd)
			}
		}
	}
}

func TestNodeConfigFileAndFlagPrecedence(t *testing.T) {
	f, err := parseNodeFlags([]string{"--config", filepath.Join("..", "..", "docs", "node.example.toml"), "--id", "n7"})
	if err != nil {
		t.Fatalf("load docs/node.example.toml: %v", err)
	}
	if f.cfg.ID != "n7" {
		t.Errorf("id = %q: the command-line flag must win over the file", f.cfg.ID)
	}
	if f.cfg.RaftAddr != "10.0.0.1:7000" || f.ops.metricsAddr != "10.0.0.1:9100" || len(f.cfg.Join) != 2 {
		t.Errorf("file values not applied: raft %q metrics %q join %v", f.cfg.RaftAddr, f.ops.metricsAddr, f.cfg.Join)
	}
	if f.ops.tls.ca != "/etc/raftmail/tls/ca.pem" || f.cfg.CommitTimeout != 30*time.Second {
		t.Errorf("cluster-ca %q commit-timeout %v", f.ops.tls.ca, f.cfg.CommitTimeout)
	}
}

func TestFrontendConfigFile(t *testing.T) {
	f, err := parseFrontendFlags([]string{"--config", filepath.Join("..", "..", "docs", "frontend.example.toml")})
	if err != nil {
		t.Fatalf("load docs/frontend.example.toml: %v", err)
	}
	if len(f.nodes) != 3 || f.profile != "mx" || f.ops.httpAddr != "0.0.0.0:9101" || f.proxyFrom != "10.0.0.250/32" {
		t.Errorf("file values not applied: nodes %v profile %q http %q proxy %q", f.nodes, f.profile, f.ops.httpAddr, f.proxyFrom)
	}
}

func TestConfigFileErrors(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"unknown key": "id = \"n1\"\nbogus = 1\n",
		"bad value":   "id = \"n1\"\ncommit-timeout = \"soon\"\n",
		"list":        "id = [\"a\", \"b\"]\n",
		"table":       "[raft]\naddr = \"x\"\n",
		"syntax":      "id = \n",
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".toml")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := parseNodeFlags([]string{"--config", p}); err == nil {
			t.Errorf("%s: loaded without error", name)
		}
	}
	for _, args := range [][]string{{"--lmtp-max-conns-per-ip", "-1"}, {"--imap-max-conns", "-5"}} {
		if _, err := parseNodeFlags(append([]string{"--id", "n1"}, args...)); err == nil || !strings.Contains(err.Error(), args[0]) {
			t.Errorf("%v: err %v, want one naming the flag", args, err)
		}
	}
	if f, err := parseNodeFlags([]string{"--id", "n1", "--lmtp-max-conns-per-ip", "300"}); err != nil || f.lmtpMaxConnsPerIP != 300 {
		t.Errorf("--lmtp-max-conns-per-ip 300: %v, %d", err, f.lmtpMaxConnsPerIP)
	}
	// Underscores work like dashes.
	p := filepath.Join(dir, "ok.toml")
	if err := os.WriteFile(p, []byte("id = \"n1\"\nready_max_lag = 5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := parseNodeFlags([]string{"--config", p})
	if err != nil || f.ops.readyLag != 5 {
		t.Fatalf("underscore key: %v, ready lag %d", err, f.ops.readyLag)
	}
}
