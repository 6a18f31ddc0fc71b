package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/raftmail/raftmail/bench"
	"github.com/raftmail/raftmail/bench/compare"
)

const benchUsage = `Usage:
  raftmail bench smtp|lmtp|imap|pop3 --target ADDR[,ADDR] [--concurrency N] [--duration D]
                 [--corpus DIR | --size BYTES] [--users N] [--domain D] [--password P] [--json FILE]
                 [--mixed] [--prefill N --prefill-target LMTPADDR]
  raftmail bench compare [--bin PATH] [--out docs/benchmarks.md] [--chart docs/benchmarks.png] ...
`

// benchFlags are the flags of "raftmail bench PROTO".
type benchFlags struct {
	targets     stringList
	concurrency int
	duration    time.Duration
	total       int
	corpus      string
	size        int
	users       int
	prefix      string
	domain      string
	password    string
	jsonOut     string
	mixed       bool
	prefill     int
	prefillAt   stringList
	prefillSMTP bool
	quiet       bool
}

func parseBenchFlags(proto string, args []string) (*benchFlags, error) {
	f := &benchFlags{}
	fs := flag.NewFlagSet("bench "+proto, flag.ContinueOnError)
	fs.Var(&f.targets, "target", "server address(es), comma-separated; connections spread over them (required)")
	fs.IntVar(&f.concurrency, "concurrency", 16, "connections working at once")
	fs.DurationVar(&f.duration, "duration", 10*time.Second, "how long to run")
	fs.IntVar(&f.total, "total", 0, "smtp/lmtp: stop after this many deliveries instead of --duration")
	fs.StringVar(&f.corpus, "corpus", "../shared/corpus", "directory of .eml messages (real mail)")
	fs.IntVar(&f.size, "size", 0, "synthetic messages of this many bytes instead of --corpus")
	fs.IntVar(&f.users, "users", 16, "recipients/mailboxes: PREFIX0..PREFIX(N-1)@DOMAIN")
	fs.StringVar(&f.prefix, "user-prefix", "user", "local-part prefix of the users")
	fs.StringVar(&f.domain, "domain", "example.test", "domain of the users")
	fs.StringVar(&f.password, "password", "password", "imap/pop3: the users' password")
	fs.StringVar(&f.jsonOut, "json", "", "also write the summary as JSON to this file (- for stdout)")
	fs.BoolVar(&f.mixed, "mixed", false, "imap: mixed workload (FETCH, STORE flags, SEARCH, IDLE) instead of FETCH of all")
	fs.IntVar(&f.prefill, "prefill", 0, "imap/pop3: first deliver this many messages per user")
	fs.Var(&f.prefillAt, "prefill-target", "LMTP address(es) for --prefill (SMTP with --prefill-smtp)")
	fs.BoolVar(&f.prefillSMTP, "prefill-smtp", false, "--prefill-target speaks SMTP, not LMTP")
	fs.BoolVar(&f.quiet, "quiet", false, "no progress bar")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if len(f.targets) == 0 {
		fs.Usage()
		return nil, fmt.Errorf("--target is required")
	}
	if f.prefill > 0 && len(f.prefillAt) == 0 {
		return nil, fmt.Errorf("--prefill needs --prefill-target")
	}
	return f, nil
}

// runBench is "raftmail bench": one load against running servers, or the
// whole comparison ("compare").
func runBench(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stderr, benchUsage)
		return flag.ErrHelp
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if args[0] == "compare" {
		return compare.Main(ctx, args[1:], stdout, stderr)
	}
	proto := args[0]
	if !strings.Contains("|"+bench.ProtocolNames+"|", "|"+proto+"|") {
		return fmt.Errorf("unknown load %q\n%s", proto, benchUsage)
	}
	f, err := parseBenchFlags(proto, args[1:])
	if err != nil {
		return err
	}
	msg, err := bench.MessageSource(f.corpus, f.size)
	if err != nil && (proto == "smtp" || proto == "lmtp" || f.prefill > 0) {
		return err
	}
	users := bench.Users(f.prefix, f.domain, f.password, f.users)
	if f.prefill > 0 {
		fmt.Fprintf(stderr, "prefill: %d messages per user to %s…\n", f.prefill, f.prefillAt.String())
		if _, err := bench.Prefill(ctx, f.prefillAt, f.prefillSMTP, users, f.prefill, 32, msg); err != nil {
			return err
		}
	}
	rec := bench.NewRecorder()
	o := bench.Options{Proto: proto, Targets: f.targets, Concurrency: f.concurrency, Duration: f.duration,
		Total: f.total, Message: msg, Users: users, Mixed: f.mixed, Rec: rec}
	stopBar := func() {}
	if !f.quiet {
		stopBar = bench.Progress(stderr, proto, rec, f.duration, f.total)
	}
	s, err := bench.Run(ctx, o)
	stopBar()
	if err != nil {
		return err
	}
	bench.WriteTable(stdout, fmt.Sprintf("%s → %s, concurrency %d", proto, f.targets.String(), f.concurrency), s)
	return writeBenchJSON(f.jsonOut, proto, f, s, stdout)
}

// benchResult is the JSON form of one run.
type benchResult struct {
	Proto       string        `json:"proto"`
	Targets     []string      `json:"targets"`
	Concurrency int           `json:"concurrency"`
	Mixed       bool          `json:"mixed,omitempty"`
	Summary     bench.Summary `json:"summary"`
}

func writeBenchJSON(path, proto string, f *benchFlags, s bench.Summary, stdout io.Writer) error {
	if path == "" {
		return nil
	}
	data, err := json.MarshalIndent(benchResult{Proto: proto, Targets: f.targets, Concurrency: f.concurrency,
		Mixed: f.mixed, Summary: s}, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	if path == "-" {
		_, err = stdout.Write(data)
		return err
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
