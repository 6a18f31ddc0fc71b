package main

import (
	"context"
	"flag"
	"log/slog"
	"time"

	"github.com/raftmail/raftmail/cluster"
	"github.com/raftmail/raftmail/frontends/outbound"
)

// outboundFlags are the node's flags for the outbound delivery service.
type outboundFlags struct {
	off      bool
	resolver string
	port     int
	maxAge   time.Duration
	retry    time.Duration
	retryMax time.Duration
}

func (o *outboundFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&o.off, "no-outbound", false, "do not run the outbound delivery service on this node")
	fs.StringVar(&o.resolver, "resolver", "", "DNS server for MX lookups, host:port (default: /etc/resolv.conf)")
	fs.IntVar(&o.port, "outbound-port", 25, "SMTP port of remote mail exchangers")
	fs.DurationVar(&o.maxAge, "queue-max-age", 5*24*time.Hour, "how long a message may stay queued before it bounces")
	fs.DurationVar(&o.retry, "queue-retry", 5*time.Minute, "first retry interval, doubled per temporary failure")
	fs.DurationVar(&o.retryMax, "queue-retry-max", 4*time.Hour, "longest retry interval")
}

// start runs the delivery service (it works only while the node leads)
// and returns its stop function.
func (o *outboundFlags) start(n *cluster.Node, hostname string, logger *slog.Logger) (func() error, error) {
	if o.off {
		return func() error { return nil }, nil
	}
	svc, err := outbound.New(outbound.Config{Hostname: hostname, Node: n.NodeID(), IsLeader: n.Store().IsLeader,
		Resolver: o.resolver, Port: o.port, MaxAge: o.maxAge, RetryBase: o.retry, RetryMax: o.retryMax, Logger: logger}, n)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { svc.Run(ctx); close(done) }()
	return func() error { cancel(); <-done; return nil }, nil
}

// resolverArgs passes "raftmail dev --resolver" on to the nodes.
func resolverArgs(resolver string) []string {
	if resolver == "" {
		return nil
	}
	return []string{"--resolver", resolver}
}
