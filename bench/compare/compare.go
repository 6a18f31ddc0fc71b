// Package compare is "raftmail bench compare", what make bench runs: the
// same loads against raftmail (three node processes and one or two MX
// frontends of the built binary), against Postfix + Dovecot from Debian's
// packages (private instances in a temp dir) and against a bare 3-node
// hashicorp/raft cluster (the ceiling), in one run on one machine, written
// to docs/benchmarks.md and a PNG chart.
package compare

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/raftmail/raftmail/bench"
)

// Config is what a comparison runs.
type Config struct {
	Bin           string
	Out, Chart    string
	Corpus        string
	Duration      time.Duration // each write load at each step, in all
	Rounds        int           // slices Duration is measured in, interleaved with the other loads
	ReadDuration  time.Duration // each read run
	Concurrencies []int
	LargeSize     int
	WriteUsers    int
	Mailboxes     int // read benchmarks: mailboxes
	PerMailbox    int // read benchmarks: messages in each
	ReadClients   int
	SelectSize    int // messages in the SELECT mailbox
	IdleConns     int
	NoPeer        bool
	Keep          bool
	Command       string
	// Only names the steps to run (writes, reads, select, idle); empty
	// runs all. For working on one figure: the report is then partial.
	Only map[string]bool
	// Pprof serves Go's profiler on every raftmail process (their
	// addresses go to the log), to profile a run from outside.
	Pprof bool
}

// The users of the runs; one password for all.
const (
	password     = "password"
	writeDomain  = "bench.test"
	readDomain   = "read.test"
	selectDomain = "big.test"
)

func parseConfig(args []string, stderr io.Writer) (Config, error) {
	c := Config{Command: "raftmail bench compare " + strings.Join(args, " ")}
	fs := flag.NewFlagSet("bench compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Bin, "bin", "bin/raftmail", "the raftmail binary to run the cluster from")
	fs.StringVar(&c.Out, "out", "docs/benchmarks.md", "report to write")
	fs.StringVar(&c.Chart, "chart", "docs/benchmarks.png", "chart to write")
	fs.StringVar(&c.Corpus, "corpus", "../shared/corpus", "real mail (.eml files)")
	fs.DurationVar(&c.Duration, "duration", 12*time.Second, "length of each write load at each step, in all")
	fs.IntVar(&c.Rounds, "rounds", 3, "slices each write load is measured in, taking turns with the other raftmail loads and the ceiling")
	fs.DurationVar(&c.ReadDuration, "read-duration", 8*time.Second, "length of each read run")
	conc := fs.String("concurrency", "1,16,64", "write concurrencies")
	fs.IntVar(&c.LargeSize, "large", 50<<10, "size of the large synthetic messages (0: skip them)")
	fs.IntVar(&c.WriteUsers, "users", 100, "recipients of the write loads")
	fs.IntVar(&c.Mailboxes, "mailboxes", 100, "mailboxes of the IMAP/POP3 read loads")
	fs.IntVar(&c.PerMailbox, "per-mailbox", 50, "messages in each read mailbox")
	fs.IntVar(&c.ReadClients, "read-clients", 16, "IMAP/POP3 clients")
	fs.IntVar(&c.SelectSize, "select-messages", 100000, "messages in the mailbox SELECT is timed on (0: skip)")
	fs.IntVar(&c.IdleConns, "idle-conns", 5000, "IMAP connections parked in IDLE for the memory figure (0: skip)")
	fs.BoolVar(&c.NoPeer, "no-peer", false, "skip Postfix + Dovecot")
	fs.BoolVar(&c.Keep, "keep", false, "keep the temp dir (data, configs, logs)")
	fs.BoolVar(&c.Pprof, "pprof", false, "serve /debug/pprof/ on every raftmail process (addresses in the log)")
	only := fs.String("only", "", "run only these steps, comma-separated: writes,reads,select,idle (the report is then partial; write it elsewhere with --out/--chart)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if *only != "" {
		c.Only = map[string]bool{}
		for _, f := range strings.Split(*only, ",") {
			f = strings.TrimSpace(f)
			if f != "writes" && f != "reads" && f != "select" && f != "idle" {
				return c, fmt.Errorf("--only: unknown step %q (writes, reads, select, idle)", f)
			}
			c.Only[f] = true
		}
	}
	if c.LargeSize < 0 {
		return c, fmt.Errorf("--large: %d is negative (0 skips the large messages)", c.LargeSize)
	}
	if c.Rounds < 1 || c.Duration < time.Duration(c.Rounds)*time.Second {
		return c, fmt.Errorf("--rounds: %d slices of --duration %v (want at least 1, and slices of at least a second)", c.Rounds, c.Duration)
	}
	for _, f := range strings.Split(*conc, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return c, fmt.Errorf("--concurrency: bad value %q", f)
		}
		c.Concurrencies = append(c.Concurrencies, n)
	}
	return c, nil
}

// Main runs "raftmail bench compare ARGS".
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(args, stderr)
	if err != nil {
		return err
	}
	if _, err := os.Stat(cfg.Bin); err != nil {
		return fmt.Errorf("raftmail binary: %w (build it first: make build)", err)
	}
	if cfg.Bin, err = filepath.Abs(cfg.Bin); err != nil {
		return err
	}
	r, err := Run(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	if err := r.WriteMarkdown(cfg.Out); err != nil {
		return err
	}
	if err := r.WriteChart(cfg.Chart); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s and %s\n", cfg.Out, cfg.Chart)
	return nil
}

// runner holds a comparison in progress.
type runner struct {
	cfg    Config
	log    io.Writer
	dir    string
	rm     *raftmailSystem
	peer   *peerSystem
	report *Report
	msgs   map[string]func(int64) []byte
	// raw is the bare raft cluster (the ceiling) and entries its
	// commands per payload, during the write runs.
	raw     *bench.RawCluster
	entries map[string][][]byte
}

// Run runs every scenario and returns the report.
func Run(ctx context.Context, cfg Config, log io.Writer) (*Report, error) {
	dir, err := os.MkdirTemp("", "raftmail-bench-")
	if err != nil {
		return nil, err
	}
	r := &runner{cfg: cfg, log: log, dir: dir, report: newReport(cfg)}
	defer r.cleanup()
	corpus, err := bench.MessageSource(cfg.Corpus, 0)
	if err != nil {
		return nil, err
	}
	r.msgs = map[string]func(int64) []byte{"corpus": corpus}
	if cfg.LargeSize > 0 {
		r.msgs[sizeName(cfg.LargeSize)], _ = bench.MessageSource("", cfg.LargeSize) // synthetic: no error
	}
	r.logf("work dir %s; load average %.2f", dir, loadAvg())
	if err := r.start(ctx); err != nil {
		return nil, err
	}
	steps := []struct {
		key, name string
		fn        func(context.Context) error
	}{
		{"writes", "SMTP/LMTP writes, each step beside the raw raft ceiling", r.writes},
		{"reads", "IMAP/POP3 reads", r.reads},
		{"select", "SELECT", r.selectBig},
		{"idle", "idle IMAP connections", r.idle},
	}
	for _, s := range steps {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if cfg.Only != nil && !cfg.Only[s.key] {
			continue
		}
		r.logf("== %s", s.name)
		if err := s.fn(ctx); err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
	}
	r.report.Finished = time.Now()
	return r.report, nil
}

// pprofArgs are the flags that serve the profiler on one process, when
// --pprof asks for it; listenFlag is that process's plain-HTTP ops listener
// (--metrics on a node, --http on a frontend).
func (r *runner) pprofArgs(name, listenFlag string) []string {
	if !r.cfg.Pprof {
		return nil
	}
	addr, err := freePort()
	if err != nil {
		r.logf("pprof for %s: %v", name, err)
		return nil
	}
	r.logf("pprof %s: http://%s/debug/pprof/", name, addr)
	return []string{listenFlag, addr, "--pprof"}
}

func sizeName(n int) string {
	if n%1024 == 0 {
		return fmt.Sprintf("%dKB", n/1024)
	}
	return fmt.Sprintf("%dB", n)
}

func (r *runner) logf(format string, args ...any) {
	fmt.Fprintf(r.log, "[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// start brings up raftmail and the peer and creates the same users on both.
func (r *runner) start(ctx context.Context) error {
	users := r.allUsers()
	domains := []string{writeDomain, readDomain, selectDomain}
	r.logf("starting raftmail: 3 nodes + 3 MX frontends (%s)", r.cfg.Bin)
	var err error
	if r.rm, err = startRaftmail(ctx, r.cfg.Bin, filepath.Join(r.dir, "raftmail"), r.cfg.IdleConns, r.pprofArgs); err != nil {
		return fmt.Errorf("raftmail: %w", err)
	}
	start := time.Now()
	if err := r.rm.addUsers(ctx, domains, users); err != nil {
		return err
	}
	r.logf("raftmail: %d accounts created in %v", len(users), time.Since(start).Round(time.Millisecond))
	r.report.Filters = r.rm.trainBayes(ctx, r.cfg.Bin, r.cfg.Corpus, r.logf) + ". " + leanNote
	switch miss := peerMissing(); {
	case r.cfg.NoPeer:
		r.report.PeerNote = "skipped (--no-peer)"
	case miss != "":
		r.report.PeerNote = miss
		fmt.Fprintf(r.log, "\n*** Postfix + Dovecot: %s\n*** running raftmail and the ceiling only; the peer columns stay empty.\n\n", miss)
	default:
		peerDir := filepath.Join(r.dir, "peer")
		if err := os.MkdirAll(peerDir, 0o755); err != nil {
			return err
		}
		r.logf("starting Postfix + Dovecot in %s", peerDir)
		if r.peer, err = startPeer(ctx, peerDir, domains, users, r.cfg.IdleConns); err != nil {
			return err
		}
		r.report.Env.Postfix, r.report.Env.Dovecot = r.peer.postfixVersion, r.peer.dovecotV
	}
	return nil
}

func (r *runner) allUsers() []bench.Cred {
	users := bench.Users("user", writeDomain, password, r.cfg.WriteUsers)
	users = append(users, bench.Users("read", readDomain, password, r.cfg.Mailboxes)...)
	return append(users, bench.Users("big", selectDomain, password, 1)...)
}

func (r *runner) cleanup() {
	if r.rm != nil {
		r.rm.stop()
	}
	if r.peer != nil {
		r.peer.stop()
	}
	if r.cfg.Keep {
		r.logf("kept %s", r.dir)
		return
	}
	_ = os.RemoveAll(r.dir)
}
