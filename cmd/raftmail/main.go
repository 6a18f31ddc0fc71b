// Command raftmail is the single binary of raftmail: mailbox nodes, SMTP
// frontends, the admin and cluster CLIs, and a local development cluster.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

const usage = `raftmail — a Raft-replicated mail system

Usage:
  raftmail node     --id ID --data DIR --raft ADDR --http ADDR [--lmtp ADDR] [--imap ADDR] [--pop3 ADDR] [--bootstrap | --join URL]
  raftmail frontend --profile mx|submission --listen ADDR --nodes URL[,URL...]
  raftmail admin    domain|user|alias ...   (against --api, default http://127.0.0.1:8081)
  raftmail cluster  status|join|remove|digest ...
  raftmail dev      [--data ./data]          (a local 3-node cluster with a demo account)
  raftmail bench    smtp|lmtp|imap|pop3|compare ... (load generator; compare = make bench)
  raftmail chaos    [--duration 2m] [--seed N] (fault harness: kills, pauses, partitions; docs/reliability.md)

Run "raftmail COMMAND -h" for the flags of a command.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	cmd, args := os.Args[1], os.Args[2:]
	var err error
	switch cmd {
	case "node":
		err = runNode(args)
	case "frontend":
		err = runFrontend(args)
	case "admin":
		err = runAdmin(args, os.Stdout)
	case "cluster":
		err = runCluster(args, os.Stdout)
	case "dev":
		err = runDev(args)
	case "bench":
		err = runBench(args, os.Stdout, os.Stderr)
	case "chaos":
		err = runChaos(args)
	case "help", "-h", "--help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "raftmail: unknown command %q\n\n%s", cmd, usage)
		os.Exit(2)
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintf(os.Stderr, "raftmail %s: %v\n", cmd, err)
		os.Exit(1)
	}
}

// logFlags are the logging flags every long-running command has.
type logFlags struct {
	level  string
	format string
}

func (l *logFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&l.level, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&l.format, "log-format", "text", "log format: text or json")
}

func (l *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(l.level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(l.format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format must be text or json, not %q", l.format)
}

// stringList is a repeatable or comma-separated flag.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }

func (s *stringList) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*s = append(*s, p)
		}
	}
	return nil
}

// hoistFlags moves the flags that fs defines to the front of args, so
// "raftmail cluster status --api URL" works like "raftmail cluster --api URL
// status". Flags fs does not know (a subcommand's own) stay in place.
func hoistFlags(fs *flag.FlagSet, args []string) []string {
	var front, rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		name := strings.TrimLeft(a, "-")
		if !strings.HasPrefix(a, "-") || a == "-" || a == "--" {
			rest = append(rest, a)
			continue
		}
		if eq := strings.IndexByte(name, '='); eq >= 0 {
			name = name[:eq]
		}
		f := fs.Lookup(name)
		if f == nil {
			rest = append(rest, a)
			continue
		}
		front = append(front, a)
		if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() || strings.Contains(a, "=") {
			continue
		}
		if i+1 < len(args) {
			i++
			front = append(front, args[i])
		}
	}
	return append(front, rest...)
}
