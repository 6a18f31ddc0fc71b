package main

import (
	"flag"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/raftmail/raftmail/cluster"
	"github.com/raftmail/raftmail/filters"
	"github.com/raftmail/raftmail/filters/bayes"
	"github.com/raftmail/raftmail/filters/config"
	"github.com/raftmail/raftmail/frontends/smtp"
)

// filterFlags are the content-filter flags of "raftmail frontend".
type filterFlags struct {
	file  string
	model bayes.Model // shared across reloads (its cache survives)
}

func (ff *filterFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&ff.file, "filters", "", "filters configuration (TOML, docs/filters.example.toml); reloaded on SIGHUP. "+
		"Default: rules and Bayes on, DNS checks off, clamd if it answers on "+"/var/run/clamav/clamd.ctl")
}

// load reads the configuration file, or the default without one.
func (ff *filterFlags) load() (*config.Config, error) {
	if ff.file == "" {
		return config.Default(), nil
	}
	return config.Load(ff.file)
}

// build returns the profile's pipeline: the frontend's cheap checks
// first, then the content checks of the configuration.
func (ff *filterFlags) build(f *frontendFlags, cheap []filters.Configured, trusted []netip.Prefix, obs filters.VerdictObserver) (*filters.Pipeline, error) {
	c, err := ff.load()
	if err != nil {
		return nil, err
	}
	if ff.model == nil {
		// Every message with tokens not yet cached asks a node, from as
		// many sessions at once as the frontend serves: the node API
		// client's pooled transport (Go's default dialled per message: 6%
		// of a frontend's CPU).
		httpc := cluster.NewHTTPClient(f.ops.mtls)
		httpc.Timeout = 5 * time.Second
		ff.model, err = bayes.NewRemote(bayes.RemoteConfig{Nodes: append([]string(nil), f.nodes...), Token: f.token,
			TTL: c.Checks.Bayes.CacheTTL.Duration, HTTP: httpc, Logger: f.cfg.Logger})
		if err != nil {
			return nil, err
		}
	}
	p, names, err := c.Build(f.profile, config.Deps{Logger: f.cfg.Logger, Hostname: f.cfg.Hostname, Trusted: trusted,
		Cheap: cheap, Bayes: ff.model, Observer: obs})
	if err != nil {
		return nil, err
	}
	f.cfg.Logger.Info("filters configured", "profile", f.profile, "file", ff.file, "checks", strings.Join(names, ","))
	return p, nil
}

// watchReload rebuilds the pipeline on SIGHUP and swaps it into the
// server; a configuration that fails to load or build is logged and the
// running pipeline stays.
func watchReload(srv *smtp.Server, build func() (*filters.Pipeline, error), logger *slog.Logger) func() {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-hup:
				p, err := build()
				if err != nil {
					logger.Error("filters reload failed, keeping the running configuration", "err", err)
					continue
				}
				srv.SetPipeline(p)
				logger.Info("filters reloaded")
			case <-done:
				return
			}
		}
	}()
	return func() { signal.Stop(hup); close(done) }
}
