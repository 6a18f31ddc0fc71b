package compare

import (
	"context"
	"testing"
	"time"

	"github.com/raftmail/raftmail/bench"
)

// TestPeer starts the Postfix + Dovecot instances as make bench configures
// them, sends mail through Postfix, waits for it in Dovecot's Maildirs and
// reads it back over IMAP and POP3. It skips where the packages (or root)
// are missing, as in CI.
func TestPeer(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	if miss := peerMissing(); miss != "" {
		t.Skip("peer: " + miss)
	}
	ctx := context.Background()
	users := bench.Users("user", "bench.test", "pw", 4)
	p, err := startPeer(ctx, t.TempDir(), []string{"bench.test"}, users, 10)
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop()
	msg := func(seq int64) []byte { return bench.Synthetic(2000, int(seq)) }
	s := bench.RunLMTP(ctx, bench.LMTPLoad{SMTP: true, Targets: []string{p.smtp}, Concurrency: 2, Total: 8, Message: msg,
		Rcpt: func(seq int64) string { return users[seq%4].User }})
	if s.Ops != 8 {
		t.Fatalf("postfix accepted %d of 8: %v", s.Ops, s)
	}
	// An unknown user is refused at RCPT.
	s = bench.RunLMTP(ctx, bench.LMTPLoad{SMTP: true, Targets: []string{p.smtp}, Concurrency: 1, Total: 1, Message: msg,
		Rcpt: func(int64) string { return "nobody@bench.test" }})
	if s.Errors["550"] != 1 {
		t.Errorf("unknown user: errors %v, want one 550", s.Errors)
	}
	if _, err := p.waitDelivered(ctx, "bench.test", 8, 20*time.Second); err != nil {
		t.Fatal(err, "\n", logTails(p.dir, "postfix.log", "dovecot/dovecot.log"))
	}
	read := bench.ReadLoad{Targets: []string{p.imap}, Concurrency: 2, Duration: 300 * time.Millisecond, Users: users}
	if s := bench.RunIMAP(ctx, read); s.Ops < 8 || len(s.Errors) > 0 {
		t.Errorf("imap: %v", s)
	}
	read.Targets = []string{p.pop3}
	if s := bench.RunPOP3(ctx, read); s.Ops < 8 || len(s.Errors) > 0 {
		t.Errorf("pop3: %v", s)
	}
	if cpu := cpuSeconds(p.pids()); cpu <= 0 {
		t.Errorf("peer CPU %v", cpu)
	}
}
