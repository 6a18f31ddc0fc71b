package filters_test

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/raftmail/raftmail/filters"
	"github.com/raftmail/raftmail/filters/bayes"
	"github.com/raftmail/raftmail/filters/config"
	"github.com/raftmail/raftmail/filters/mimetext"
	"github.com/raftmail/raftmail/filters/resolver/dnstest"
)

// BenchmarkPipeline measures messages/s through the whole local mx
// pipeline: DNSBL and SPF/DKIM/DMARC (DNS answers cached after the first
// round, from a real DNS server on 127.0.0.1), the built-in rules and
// Bayes (counts from an in-memory model trained on the corpus, as a warm
// frontend cache would answer), over real mail from ../shared/corpus.
// clamd is excluded (measured separately: it is a network round trip
// and clamd's own CPU). Run with -cpu 1 for the per-core figure:
//
//	go test ./filters -run '^$' -bench Pipeline -cpu 1 -benchtime 5000x
func BenchmarkPipeline(b *testing.B) {
	dir := filepath.Join("..", "..", "shared", "corpus")
	var msgs [][]byte
	for _, class := range []string{"ham", "spam"} {
		names, _ := filepath.Glob(filepath.Join(dir, class, "*.eml"))
		sort.Strings(names)
		for _, n := range names {
			raw, err := os.ReadFile(n)
			if err != nil {
				b.Fatal(err)
			}
			msgs = append(msgs, raw)
		}
	}
	if len(msgs) == 0 {
		b.Skipf("no corpus at %s", dir)
	}
	model := bayes.NewMemory()
	for i, raw := range msgs {
		if i%3 != 0 { // train on two thirds, like the accuracy test
			model.Train(bayes.Tokenize(mimetext.Parse(raw, mimetext.Limits{})), i >= len(msgs)-500)
		}
	}
	dns := dnstest.Start(b)
	dns.Add(b, `sender.test. 300 IN TXT "v=spf1 ip4:192.0.2.0/24 -all"`)
	c := config.Default()
	c.Resolver = dns.Addr
	c.Checks.DNSBL.Zones = []config.Zone{{Zone: "bl.test", Score: 3}, {Zone: "wl.test", Score: -2}}
	p, names, err := c.Build("mx", config.Deps{Logger: quiet, Bayes: model, Hostname: "mx.test",
		ClamdProbe: func(string) bool { return false }})
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("checks: %v, %d corpus messages", names, len(msgs))
	ctx := context.Background()
	ip := netip.MustParseAddr("192.0.2.7")
	run := func(raw []byte) filters.Verdict {
		s, _ := p.Connect(ctx, &filters.ConnInfo{ID: "b", IP: ip, Profile: "mx"})
		defer s.Close()
		s.Helo(ctx, "client.sender.test")
		s.Mail(ctx, filters.Mail{From: "someone@sender.test"})
		s.Rcpt(ctx, filters.Rcpt{To: "alice@example.test", Account: "alice@example.test"})
		return s.Data(ctx, &filters.Message{From: "someone@sender.test", Rcpts: []string{"alice@example.test"},
			Body: filters.BytesBody(raw)})
	}
	for _, raw := range msgs[:20] { // warm the DNS cache
		run(raw)
	}
	var bytesIn int64
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	for i := 0; i < b.N; i++ {
		raw := msgs[i%len(msgs)]
		bytesIn += int64(len(raw))
		run(raw)
	}
	el, cpu := time.Since(start), cpuTime()-cpu0
	b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
	// Per CPU-second of this process: the per-core figure, independent of
	// other load on a shared machine.
	b.ReportMetric(float64(b.N)/cpu.Seconds(), "msgs/cpu-s")
	b.SetBytes(bytesIn / int64(b.N))
}

// cpuTime is the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
