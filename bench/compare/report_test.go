package compare

import (
	"image/png"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftmail/raftmail/bench"
)

// TestReportAndChart renders a report from made-up results: every table,
// the ratios against the peer and the ceiling, the target verdicts, and a
// PNG that decodes.
func TestReportAndChart(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Concurrencies: []int{1, 64}, LargeSize: 50 << 10, Mailboxes: 2, PerMailbox: 3, ReadClients: 2,
		SelectSize: 10, IdleConns: 5, Chart: filepath.Join(dir, "b.png"), Command: "raftmail bench compare --test"}
	r := newReport(cfg)
	rate := func(v float64) bench.Summary {
		return bench.Summary{Ops: int(v), Requests: int(v), PerSec: v, P50: time.Millisecond, P99: 2 * time.Millisecond, Max: 3 * time.Millisecond}
	}
	for _, p := range []string{"corpus", "50KB"} {
		for _, c := range cfg.Concurrencies {
			for sys, v := range map[string]float64{sysFE1: 1200, sysFE1Lean: 2100, sysFE2: 1300, sysLMTP: 1250, sysPostfix: 600, sysCeiling: 2400} {
				r.Results = append(r.Results, Result{Scenario: "smtp", Payload: p, Conc: c, System: sys, Summary: rate(v), CPUPer1000: 1.5})
			}
			r.Results = append(r.Results, Result{Scenario: "smtp", Payload: p, Conc: c, System: sysDelivered,
				Summary: bench.Summary{Ops: 300, PerSec: 300}, CPUPer1000: 6})
		}
	}
	for _, proto := range []string{"imap", "pop3"} {
		r.Results = append(r.Results, Result{Scenario: proto, Payload: "corpus", Conc: 2, System: sysFollower, Summary: rate(9000)},
			Result{Scenario: proto, Payload: "corpus", Conc: 2, System: sysDovecot, Summary: rate(6000)})
	}
	r.Results = append(r.Results, Result{Scenario: "select", System: sysFollower, First: time.Millisecond, Median: time.Millisecond},
		Result{Scenario: "idle", Conc: 5, System: sysFollower, PSSPerConnKB: 12})
	r.Finished = time.Now()
	md := filepath.Join(dir, "b.md")
	if err := r.WriteMarkdown(md); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteChart(cfg.Chart); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(md)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for _, want := range []string{
		"| 64 | **1200**/s", "| 2.00× | 4.00× | 0.50× | 0.96× |", // ÷ accept, ÷ delivered, ÷ ceiling, ÷ LMTP
		"≥ 3× Postfix→Dovecot delivered | 4.00× | met", "≥ 2× Postfix accept | 2.00× | met",
		"IMAP from a follower ≥ 1.5× Dovecot | 1.50× | met", "1.50 vs 6.00 (0.25×) | met",
		"SMTP ÷ LMTP ≥ 0.85), no content filters | 1.68× | met", "2,000 msgs/s of real mail at c=64, no content filters | 2100/s | met",
		"default content filters (rules, Bayes): SMTP ÷ LMTP ≥ 0.85 | 0.96× | met",
		"default content filters: ≥ 2,000 msgs/s at c=64 | 1200/s | **missed**",
		"a majority of three disks", "one local disk", "raftmail bench compare --test", "| 300 | 300 | 0.0 | — | — | — | — |",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	f, err := os.Open(cfg.Chart)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := png.Decode(f); err != nil {
		t.Errorf("chart: %v", err)
	}
}

// TestParseConfig: bad flags are refused with the flag's name; --large 0
// leaves the large messages out of the write loads instead of crashing.
func TestParseConfig(t *testing.T) {
	for _, args := range [][]string{{"--large", "-1"}, {"--concurrency", "0"}, {"--only", "writes,nap"}, {"--rounds", "0"}, {"--rounds", "20"}} {
		if _, err := parseConfig(args, io.Discard); err == nil || !strings.Contains(err.Error(), strings.TrimPrefix(args[0], "--")) {
			t.Errorf("%v: err %v, want one naming the flag", args, err)
		}
	}
	cfg, err := parseConfig([]string{"--large", "0"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.payloads(); len(got) != 1 || got[0] != "corpus" {
		t.Errorf("payloads with --large 0: %v, want [corpus]", got)
	}
	cfg, _ = parseConfig(nil, io.Discard)
	if got := cfg.payloads(); len(got) != 2 || got[1] != "50KB" {
		t.Errorf("default payloads: %v, want [corpus 50KB]", got)
	}
}
