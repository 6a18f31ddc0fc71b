package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/raftmail/raftmail/filters"
	"github.com/raftmail/raftmail/frontends/smtp"
)

// frontendFlags are the flags of "raftmail frontend".
type frontendFlags struct {
	cfg       smtp.Config
	profile   string
	listen    string
	tlsListen string
	nodes     stringList
	token     string
	proxyFrom string
	deny      string
	trusted   string
	connRate  int
	msgRate   int
	logs      logFlags
	ops       frontendOps
	filt      filterFlags
}

func parseFrontendFlags(args []string) (*frontendFlags, error) {
	f := &frontendFlags{}
	fs := flag.NewFlagSet("frontend", flag.ContinueOnError)
	fs.StringVar(&f.profile, "profile", "mx", "mx (inbound from the internet) or submission (users, AUTH required)")
	fs.StringVar(&f.listen, "listen", "", "SMTP listen address with STARTTLS, host:port (required unless --tls-listen)")
	fs.StringVar(&f.tlsListen, "tls-listen", "", "implicit-TLS listen address (465-style)")
	fs.Var(&f.nodes, "nodes", "mailbox node API URLs, comma-separated (required)")
	fs.StringVar(&f.token, "token", os.Getenv("RAFTMAIL_TOKEN"), "node API bearer token (env RAFTMAIL_TOKEN)")
	fs.StringVar(&f.cfg.Hostname, "hostname", "", "host name in the greeting and Received headers (default: OS host name)")
	fs.BoolVar(&f.cfg.Dev, "dev", false, "development mode: AUTH without TLS from loopback clients")
	fs.StringVar(&f.cfg.CertFile, "tls-cert", "", "PEM certificate for STARTTLS and implicit TLS")
	fs.StringVar(&f.cfg.KeyFile, "tls-key", "", "PEM private key for --tls-cert")
	fs.Int64Var(&f.cfg.MaxMessageBytes, "max-message-bytes", 32<<20, "largest message accepted (SIZE)")
	fs.IntVar(&f.cfg.MaxRecipients, "max-recipients", 100, "recipients per message")
	fs.IntVar(&f.cfg.MaxConnectionsPerIP, "max-connections-per-ip", 0, "concurrent connections per client IP (default 20)")
	fs.DurationVar(&f.cfg.CommitTimeout, "commit-timeout", 30*time.Second, "how long DATA waits for the cluster before 451 4.3.0")
	fs.StringVar(&f.proxyFrom, "proxy-from", "", "CIDRs of load balancers allowed to send a PROXY protocol header (comma-separated)")
	fs.StringVar(&f.deny, "deny", "", "client CIDRs refused at connect (554)")
	fs.StringVar(&f.trusted, "trusted", "", "client CIDRs exempt from deny lists and rate limits")
	fs.IntVar(&f.connRate, "conn-rate", 0, "new connections per minute per client network (0: unlimited)")
	fs.IntVar(&f.msgRate, "msg-rate", 0, "messages per minute per client network (0: unlimited)")
	f.logs.register(fs)
	f.ops.register(fs)
	f.filt.register(fs)
	if err := parseWithConfig(fs, args); err != nil {
		return nil, err
	}
	if len(f.nodes) == 0 || (f.listen == "" && f.tlsListen == "") {
		fs.Usage()
		return nil, fmt.Errorf("--nodes and --listen (or --tls-listen) are required")
	}
	return f, nil
}

func runFrontend(args []string) error {
	f, err := parseFrontendFlags(args)
	if err != nil {
		return err
	}
	logger, err := f.ops.logger(&f.logs, os.Stderr)
	if err != nil {
		return err
	}
	defer f.ops.close()
	if err := f.ops.setup(); err != nil {
		return err
	}
	f.cfg.Observer = f.ops.sessions
	if f.cfg.Hostname == "" {
		f.cfg.Hostname, _ = os.Hostname()
	}
	f.cfg.Profile = smtp.Profile(f.profile)
	f.cfg.Logger = logger
	if f.cfg.ProxyTrusted, err = parseCIDRs(f.proxyFrom); err != nil {
		return fmt.Errorf("--proxy-from: %w", err)
	}
	committer, err := smtp.NewNodesCommitter(smtp.NodesConfig{Nodes: f.nodes, Token: f.token,
		MaxMessageBytes: f.cfg.MaxMessageBytes, Logger: logger, TLS: f.ops.mtls})
	if err != nil {
		return err
	}
	f.cfg.Authenticator = committer
	pipeline, err := f.pipeline()
	if err != nil {
		return err
	}
	srv, err := smtp.New(f.cfg, committer, pipeline)
	if err != nil {
		return err
	}
	errs := make(chan error, 3)
	if err := f.ops.serve(f.nodes, f.token, errs, logger); err != nil {
		return err
	}
	if f.listen != "" {
		if err := serveOn(f.listen, "smtp", f.ops.count("smtp", srv.Serve), errs, logger); err != nil {
			return err
		}
	}
	if f.tlsListen != "" {
		if err := serveOn(f.tlsListen, "smtps", f.ops.count("smtp", srv.ServeTLS), errs, logger); err != nil {
			srv.Close()
			return err
		}
	}
	defer watchReload(srv, f.pipeline, logger)()
	logger.Info("frontend started", "profile", f.profile, "nodes", strings.Join(f.nodes, ","), "pid", os.Getpid())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	select {
	case <-ctx.Done():
		logger.Info("signal received, shutting down")
	case err := <-errs:
		logger.Error("listener failed", "err", err)
	}
	return srv.Close()
}

// pipeline builds the profile's cheap checks; the content checks of the
// filters issue plug in here.
func (f *frontendFlags) pipeline() (*filters.Pipeline, error) {
	trusted, err := parseCIDRs(f.trusted)
	if err != nil {
		return nil, fmt.Errorf("--trusted: %w", err)
	}
	deny, err := parseCIDRs(f.deny)
	if err != nil {
		return nil, fmt.Errorf("--deny: %w", err)
	}
	var checks []filters.Configured
	if len(deny) > 0 {
		checks = append(checks, filters.With(&filters.DenyList{Networks: deny}, filters.Policy{}))
	}
	if f.connRate > 0 || f.msgRate > 0 {
		checks = append(checks, filters.With(&filters.RateLimit{
			Connections: filters.Rate{Count: f.connRate, Per: time.Minute},
			Messages:    filters.Rate{Count: f.msgRate, Per: time.Minute},
		}, filters.Policy{}))
	}
	checks = append(checks, filters.With(&filters.Size{Max: f.cfg.MaxMessageBytes}, filters.Policy{}))
	return f.filt.build(f, checks, trusted, f.ops.sessions)
}

func parseCIDRs(s string) ([]netip.Prefix, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	return filters.ParsePrefixes(strings.Split(s, ","))
}
