package compare

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/raftmail/raftmail/bench"
	"github.com/raftmail/raftmail/frontends"
	"github.com/raftmail/raftmail/raftstore"
	"github.com/raftmail/raftmail/raftstore/command"
)

// Systems, as the report names them.
const (
	sysFE1       = "raftmail SMTP, 1 frontend"
	sysFE1Lean   = "raftmail SMTP, 1 frontend, no content filters"
	sysFE2       = "raftmail SMTP, 2 frontends"
	sysLMTP      = "raftmail LMTP to the nodes"
	sysPostfix   = "Postfix accept"
	sysDelivered = "Postfix→Dovecot delivered"
	sysCeiling   = "raw raft ceiling"
	sysFollower  = "raftmail follower"
	sysLeader    = "raftmail leader"
	sysDovecot   = "Dovecot"
)

func (r *runner) payloads() []string { return r.cfg.payloads() }

// payloads names the write loads' messages: the corpus, and synthetic
// messages of LargeSize unless it is 0.
func (c Config) payloads() []string {
	if c.LargeSize == 0 {
		return []string{"corpus"}
	}
	return []string{"corpus", sizeName(c.LargeSize)}
}

// startCeiling starts a bare 3-node raft cluster and builds its entries:
// the Deliver commands raftmail proposes for the same messages
// (compressed bodies and all). writeStep then measures raft.Apply of them
// in turn with raftmail's loads, so background load drifts hit all alike.
func (r *runner) startCeiling() error {
	codec, err := raftstore.NewCodec(64 << 20)
	if err != nil {
		return err
	}
	defer codec.Close()
	rawDir := filepath.Join(r.dir, "raw")
	if err := os.MkdirAll(rawDir, 0o700); err != nil {
		return err
	}
	if r.raw, err = bench.NewRawCluster(rawDir); err != nil {
		return err
	}
	r.entries = map[string][][]byte{}
	for _, p := range r.payloads() {
		entries := make([][]byte, 256)
		for i := range entries {
			cmd, err := frontends.NewDeliver(codec, frontends.Envelope{From: "bench@remote.test",
				Rcpts: []string{"user1@" + writeDomain}}, r.msgs[p](int64(i)))
			if err != nil {
				return err
			}
			if entries[i], err = command.Marshal(cmd); err != nil {
				return err
			}
		}
		r.entries[p] = entries
	}
	return nil
}

// writes runs the SMTP and LMTP delivery loads and the ceiling at each
// payload and concurrency (writeStep), then the same load on Postfix.
func (r *runner) writes(ctx context.Context) error {
	users := bench.Users("user", writeDomain, password, r.cfg.WriteUsers)
	if err := r.startCeiling(); err != nil {
		return fmt.Errorf("raw raft cluster: %w", err)
	}
	defer r.raw.Close()
	for _, p := range r.payloads() {
		for _, c := range r.cfg.Concurrencies {
			if err := r.writeStep(ctx, p, c, users); err != nil {
				return err
			}
			if r.peer != nil {
				if err := r.postfixRun(ctx, p, c, users); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// writeStep measures the raw ceiling and raftmail's four write loads at
// one payload and concurrency. Each gets Duration in all, in Rounds slices
// taken in turn, and the order rotates every round. Otherwise a snapshot
// made due by one load's writes, and the drift of the machine's
// background load, would fall on whichever load happens to run next.
func (r *runner) writeStep(ctx context.Context, p string, c int, users []bench.Cred) error {
	entries := r.entries[p]
	systems := []struct {
		name    string
		proto   string // "" for the in-process ceiling
		targets []string
	}{
		{sysCeiling, "", nil},
		{sysLMTP, "lmtp", r.rm.lmtpAddrs()},
		{sysFE1, "smtp", r.rm.feAddrs[:1]},
		{sysFE1Lean, "smtp", []string{r.rm.leanAddr}},
		{sysFE2, "smtp", r.rm.feAddrs},
	}
	rounds := r.cfg.Rounds // at least 1: parseConfig refuses less
	slice := r.cfg.Duration / time.Duration(rounds)
	total := make([]*bench.Recorder, len(systems))
	cpu := make([]float64, len(systems))
	for i := range total {
		total[i] = bench.NewRecorder()
	}
	for round := range rounds {
		if rounds > 1 {
			r.logf("%s c=%d: round %d of %d", p, c, round+1, rounds)
		}
		for k := range systems {
			i := (k + round) % len(systems)
			sys := systems[i]
			rec := bench.NewRecorder()
			if sys.proto == "" { // in this process: no raftmail CPU to count
				r.raw.RecordFor(rec, slice, c, func(seq int64) []byte { return entries[seq%int64(len(entries))] })
			} else {
				cpu0 := cpuSeconds(r.rm.pids())
				if _, err := bench.Run(ctx, bench.Options{Proto: sys.proto, Targets: sys.targets, Concurrency: c,
					Duration: slice, Message: r.msgs[p], Users: users, Rec: rec}); err != nil {
					return err
				}
				cpu[i] += cpuSeconds(r.rm.pids()) - cpu0
			}
			total[i].Add(rec)
		}
	}
	for i, sys := range systems {
		s := total[i].Summary()
		res := Result{Scenario: "smtp", Payload: p, Conc: c, System: sys.name, Summary: s}
		if sys.proto != "" {
			res.CPUPer1000 = per1000(cpu[i], s.Ops)
		}
		r.add(res)
	}
	return nil
}

func per1000(cpu float64, ops int) float64 {
	if ops == 0 {
		return 0
	}
	return cpu / float64(ops) * 1000
}

// postfixRun sends the same load to Postfix, then waits until Dovecot
// holds every accepted message: accept rate over the run, delivered rate
// over run plus drain, CPU over both.
func (r *runner) postfixRun(ctx context.Context, p string, c int, users []bench.Cred) error {
	before := r.peer.delivered(writeDomain)
	cpu0 := cpuSeconds(r.peer.pids())
	start := time.Now()
	s, err := bench.Run(ctx, bench.Options{Proto: "smtp", Targets: []string{r.peer.smtp}, Concurrency: c,
		Duration: r.cfg.Duration, Message: r.msgs[p], Users: users})
	if err != nil {
		return err
	}
	done, err := r.peer.waitDelivered(ctx, writeDomain, before+s.Ops, 5*time.Minute)
	if err != nil {
		return err
	}
	cpu := cpuSeconds(r.peer.pids()) - cpu0
	r.add(Result{Scenario: "smtp", Payload: p, Conc: c, System: sysPostfix, Summary: s})
	d := s
	d.Elapsed = done.Sub(start)
	d.PerSec = float64(s.Ops) / d.Elapsed.Seconds()
	d.MBPerS = float64(s.Bytes) / 1e6 / d.Elapsed.Seconds()
	d.P50, d.P90, d.P99, d.Max = 0, 0, 0, 0 // per-message delivery latency is not measured
	r.add(Result{Scenario: "smtp", Payload: p, Conc: c, System: sysDelivered, Summary: d, CPUPer1000: per1000(cpu, s.Ops),
		Note: fmt.Sprintf("%d accepted, all in Dovecot %.1fs after the first", s.Ops, d.Elapsed.Seconds())})
	return nil
}

// reads fills the read mailboxes on both systems with the same messages,
// then runs IMAP FETCH and POP3 RETR from a follower, the leader, Dovecot.
func (r *runner) reads(ctx context.Context) error {
	users := bench.Users("read", readDomain, password, r.cfg.Mailboxes)
	start := time.Now()
	s, err := bench.Prefill(ctx, r.rm.lmtpAddrs(), false, users, r.cfg.PerMailbox, 32, r.msgs["corpus"])
	if err != nil {
		return fmt.Errorf("raftmail %w", err)
	}
	r.logf("raftmail: %d read messages delivered in %v (%.0f/s)", s.Ops, time.Since(start).Round(time.Millisecond), s.PerSec)
	if r.peer != nil {
		// The same messages, written straight into the Maildirs (Dovecot's
		// LMTP would take minutes); the untimed SELECT before the clock
		// starts indexes them.
		start = time.Now()
		n := r.cfg.PerMailbox * len(users)
		for i, u := range users {
			local, _, _ := strings.Cut(u.User, "@")
			err := fillMaildir(filepath.Join(r.peer.dir, "mail", readDomain, local, "Maildir"), r.cfg.PerMailbox,
				func(k int64) []byte { return r.msgs["corpus"](int64(i) + k*int64(len(users))) })
			if err != nil {
				return err
			}
		}
		r.logf("dovecot: %d read messages written into the Maildirs in %v", n, time.Since(start).Round(time.Millisecond))
	}
	leader, follower, err := r.rm.leaderFollower(ctx)
	if err != nil {
		return err
	}
	r.report.Leader, r.report.Follower = r.rm.nodes[leader].name, r.rm.nodes[follower].name
	type target struct {
		sys, proto, addr string
		mixed            bool
	}
	targets := []target{
		{sysFollower, "imap", r.rm.nodes[follower].imap, false},
		{sysLeader, "imap", r.rm.nodes[leader].imap, false},
		{sysFollower, "pop3", r.rm.nodes[follower].pop3, false},
		{sysFollower, "imap", r.rm.nodes[follower].imap, true},
	}
	if r.peer != nil {
		targets = slices.Insert(targets, 2, target{sysDovecot, "imap", r.peer.imap, false})
		targets = slices.Insert(targets, 4, target{sysDovecot, "pop3", r.peer.pop3, false})
		targets = append(targets, target{sysDovecot, "imap", r.peer.imap, true})
	}
	for _, t := range targets {
		cpu0 := cpuSeconds(r.pidsOf(t.sys))
		s, err := bench.Run(ctx, bench.Options{Proto: t.proto, Targets: []string{t.addr}, Concurrency: r.cfg.ReadClients,
			Duration: r.cfg.ReadDuration, Users: users, Mixed: t.mixed})
		if err != nil {
			return err
		}
		scenario := t.proto
		if t.mixed {
			scenario = "imap-mixed"
		}
		r.add(Result{Scenario: scenario, Payload: "corpus", Conc: r.cfg.ReadClients, System: t.sys, Summary: s,
			CPUPer1000: per1000(cpuSeconds(r.pidsOf(t.sys))-cpu0, s.Ops)})
	}
	return nil
}

// pidsOf is the process trees that serve a system's reads.
func (r *runner) pidsOf(sys string) []int {
	if sys == sysDovecot {
		return r.peer.dovecotPids()
	}
	return r.rm.pids()
}

func (r *runner) add(res Result) {
	r.report.Results = append(r.report.Results, res)
	line := fmt.Sprintf("%-6s %-7s c=%-3d %-28s %s", res.Scenario, res.Payload, res.Conc, res.System, res.Summary.String())
	switch res.Scenario {
	case "select":
		line = fmt.Sprintf("select %-28s first %v, median %v (%s)", res.System, res.First, res.Median, res.Note)
	case "idle":
		line = fmt.Sprintf("idle   %-28s %.1f KB PSS, %.1f KB RSS per connection (%s)", res.System, res.PSSPerConnKB, res.RSSPerConnKB, res.Note)
	}
	if res.CPUPer1000 > 0 {
		line += fmt.Sprintf(", %.2f CPU-s/1000", res.CPUPer1000)
	}
	r.logf("%s (load %.2f)", line, loadAvg())
	r.report.noteLoad(loadAvg())
}
