package compare

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/raftmail/raftmail/bench"
)

// selectRuns is how many times SELECT is timed after the first.
const selectRuns = 5

// selectBig fills one mailbox with SelectSize small messages on both
// systems (raftmail over LMTP; Dovecot's Maildir written directly, which
// is what its LMTP would leave, to keep the run short) and times SELECT
// INBOX on a follower and on Dovecot: the first one (Dovecot builds its
// index then) and the median of the next selectRuns.
func (r *runner) selectBig(ctx context.Context) error {
	if r.cfg.SelectSize == 0 {
		return nil
	}
	users := bench.Users("big", selectDomain, password, 1)
	msg := func(seq int64) []byte { return bench.Synthetic(1000, int(seq)) }
	start := time.Now()
	stop := r.tick("raftmail SELECT mailbox fill")
	s := bench.RunLMTP(ctx, bench.LMTPLoad{Targets: r.rm.lmtpAddrs(), Concurrency: 96, Total: r.cfg.SelectSize,
		Message: msg, Rcpt: func(int64) string { return users[0].User }})
	stop()
	if s.Ops != r.cfg.SelectSize {
		return fmt.Errorf("raftmail fill: %d of %d committed (errors %s)", s.Ops, r.cfg.SelectSize, s.ErrorString())
	}
	r.logf("raftmail: %d messages into one mailbox in %v (%.0f/s)", s.Ops, time.Since(start).Round(time.Millisecond), s.PerSec)
	_, follower, err := r.rm.leaderFollower(ctx)
	if err != nil {
		return err
	}
	if err := r.timeSelect(sysFollower, r.rm.nodes[follower].imap, users[0]); err != nil {
		return err
	}
	if r.peer == nil {
		return nil
	}
	start = time.Now()
	if err := fillMaildir(filepath.Join(r.peer.dir, "mail", selectDomain, "big0", "Maildir"), r.cfg.SelectSize, msg); err != nil {
		return err
	}
	r.logf("dovecot: %d messages written into one Maildir in %v", r.cfg.SelectSize, time.Since(start).Round(time.Millisecond))
	return r.timeSelect(sysDovecot, r.peer.imap, users[0])
}

// tick logs a line every 10 s until stopped, so long phases show life.
func (r *runner) tick(what string) (stop func()) {
	done := make(chan struct{})
	start := time.Now()
	go func() {
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				r.logf("%s: %v…", what, time.Since(start).Round(time.Second))
			}
		}
	}()
	return func() { close(done) }
}

func (r *runner) timeSelect(sys, addr string, u bench.Cred) error {
	var times []time.Duration
	var n uint32
	for i := 0; i <= selectRuns; i++ {
		conn, c, err := bench.DialIMAP(addr, u, 5*time.Minute)
		if err != nil {
			return fmt.Errorf("%s login: %w", sys, err)
		}
		start := time.Now()
		data, err := c.Select("INBOX", nil).Wait()
		d := time.Since(start)
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		_ = c.Logout().Wait()
		_ = c.Close()
		if err != nil {
			return fmt.Errorf("%s SELECT: %w", sys, err)
		}
		n = data.NumMessages
		times = append(times, d)
	}
	rest := slices.Clone(times[1:])
	slices.Sort(rest)
	r.add(Result{Scenario: "select", Conc: 1, System: sys, First: times[0], Median: rest[len(rest)/2],
		Note: fmt.Sprintf("%d messages", n)})
	return nil
}

// fillMaildir writes n messages into a Maildir's cur/ as Dovecot's own
// delivery would name them, owned by the mail user.
func fillMaildir(dir string, n int, msg func(int64) []byte) error {
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return err
		}
	}
	base := time.Now().Unix()
	for i := 0; i < n; i++ {
		body := msg(int64(i))
		name := fmt.Sprintf("%d.M%dP%d.bench,S=%d:2,", base, i, os.Getpid(), len(body))
		p := filepath.Join(dir, "cur", name)
		if err := os.WriteFile(p, body, 0o600); err != nil {
			return err
		}
		if err := os.Chown(p, mailUID, mailGID); err != nil {
			return err
		}
	}
	// Maildir, the user's home and the domain directory.
	for d, i := dir, 0; i < 3; d, i = filepath.Dir(d), i+1 {
		if err := chownTree(d); err != nil {
			return err
		}
	}
	return nil
}

func chownTree(dir string) error {
	if err := os.Chown(dir, mailUID, mailGID); err != nil {
		return err
	}
	for _, sub := range []string{"cur", "new", "tmp"} {
		if _, err := os.Stat(filepath.Join(dir, sub)); err == nil {
			if err := os.Chown(filepath.Join(dir, sub), mailUID, mailGID); err != nil {
				return err
			}
		}
	}
	return nil
}

// idle parks IdleConns IMAP connections in IDLE on a follower, then on
// Dovecot, and reports the memory they add per connection (PSS of the
// serving processes, RSS beside it).
func (r *runner) idle(ctx context.Context) error {
	if r.cfg.IdleConns == 0 {
		return nil
	}
	users := bench.Users("read", readDomain, password, r.cfg.Mailboxes)
	_, follower, err := r.rm.leaderFollower(ctx)
	if err != nil {
		return err
	}
	node := r.rm.nodes[follower]
	if err := r.idleOne(ctx, sysFollower, node.imap, []int{node.pid()}, users); err != nil {
		return err
	}
	if r.peer == nil {
		return nil
	}
	return r.idleOne(ctx, sysDovecot, r.peer.imap, r.peer.dovecotPids(), users)
}

func (r *runner) idleOne(ctx context.Context, sys, addr string, pids []int, users []bench.Cred) error {
	settle()
	pss0, rss0 := memKB(pids)
	ctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	start := time.Now()
	stop := r.tick(sys + " opening idle connections")
	pool := bench.OpenIdle(ctx, addr, users, r.cfg.IdleConns, 32, nil)
	stop()
	defer pool.Close()
	n := pool.Len()
	r.logf("%s: %d connections in IDLE after %v (failed: %v)", sys, n, time.Since(start).Round(time.Millisecond), pool.Errors)
	if n == 0 {
		return fmt.Errorf("%s: no IDLE connection opened: %v", sys, pool.Errors)
	}
	settle()
	pss1, rss1 := memKB(pids)
	r.add(Result{Scenario: "idle", Conc: n, System: sys,
		PSSPerConnKB: float64(pss1-pss0) / float64(n), RSSPerConnKB: float64(rss1-rss0) / float64(n),
		Note: fmt.Sprintf("PSS %d→%d KB, RSS %d→%d KB over %d connections", pss0, pss1, rss0, rss1, n)})
	return nil
}

// settle gives servers a moment to finish what the last step started
// before memory is read.
func settle() { time.Sleep(2 * time.Second) }
