package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/raftmail/raftmail/cluster"
)

// The operations flags of "raftmail node" and "raftmail frontend" (docs/
// config.md): cluster TLS, metrics and health listeners, syslog forwarding.

// clusterTLSFlags name the cluster mutual-TLS files.
type clusterTLSFlags struct {
	ca, cert, key string
}

func (c *clusterTLSFlags) register(fs *flag.FlagSet, who string) {
	fs.StringVar(&c.ca, "cluster-ca", "", "PEM CA certificate of the cluster: enables mutual TLS "+who)
	fs.StringVar(&c.cert, "cluster-cert", "", "PEM certificate signed by --cluster-ca")
	fs.StringVar(&c.key, "cluster-key", "", "PEM private key of --cluster-cert")
}

// load returns the mutual TLS configuration, nil when no file is given.
func (c *clusterTLSFlags) load() (*cluster.MutualTLS, error) {
	if c.ca == "" && c.cert == "" && c.key == "" {
		return nil, nil
	}
	m, err := cluster.LoadMutualTLS(c.ca, c.cert, c.key)
	if err != nil {
		return nil, fmt.Errorf("--cluster-ca/--cluster-cert/--cluster-key: %w", err)
	}
	return m, nil
}

// opsFlags are the flags both long-running commands share.
type opsFlags struct {
	tls       clusterTLSFlags
	syslog    string
	syslogTag string
	pprof     bool
	// set by setup
	registry *prometheus.Registry
	sessions *protoMetrics
	closers  []func() error
}

func (o *opsFlags) register(fs *flag.FlagSet, tag, tlsWho string) {
	o.tls.register(fs, tlsWho)
	fs.StringVar(&o.syslog, "syslog", "", "also send logs to a syslog server, RFC 5424: udp://host:514 or tcp://host:514")
	fs.StringVar(&o.syslogTag, "syslog-tag", tag, "APP-NAME of the syslog messages")
	fs.BoolVar(&o.pprof, "pprof", false, "also serve Go's profiler (/debug/pprof/) on the plain-HTTP ops listener (--metrics on a node, --http on a frontend); keep that listener private")
}

// withPprof adds net/http/pprof's handlers to h when --pprof is set.
func (o *opsFlags) withPprof(h http.Handler) http.Handler {
	if !o.pprof {
		return h
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("/", h)
	return mux
}

// logger builds the process logger: stderr as --log-format says, plus
// syslog when --syslog is set.
func (o *opsFlags) logger(l *logFlags, stderr io.Writer) (*slog.Logger, error) {
	base, err := l.logger(stderr)
	if err != nil || o.syslog == "" {
		return base, err
	}
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(l.level))
	sh, err := newSyslogHandler(o.syslog, o.syslogTag, l.format, &slog.HandlerOptions{Level: lv})
	if err != nil {
		return nil, err
	}
	o.closers = append(o.closers, sh.Close)
	return slog.New(slog.NewMultiHandler(base.Handler(), sh)), nil
}

// setupMetrics makes the process registry with Go and process collectors
// and the protocol metrics.
func (o *opsFlags) setupMetrics() error {
	o.registry = prometheus.NewRegistry()
	if err := o.registry.Register(collectors.NewGoCollector()); err != nil {
		return err
	}
	if err := o.registry.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return err
	}
	var err error
	o.sessions, err = newProtoMetrics(o.registry)
	return err
}

// count wraps a protocol server's Serve so its sessions are counted.
func (o *opsFlags) count(proto string, serve func(net.Listener) error) func(net.Listener) error {
	if o.sessions == nil {
		return serve
	}
	return func(ln net.Listener) error { return serve(o.sessions.listener(proto, ln)) }
}

func (o *opsFlags) close() {
	for _, c := range o.closers {
		_ = c()
	}
}

// serveHTTP serves h on addr in the background (ops listeners).
func serveHTTP(addr, name string, h http.Handler, errs chan<- error, logger *slog.Logger) (func() error, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s listen %s: %w", name, addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
	logger.Info("listening", "proto", name, "addr", ln.Addr().String())
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs <- fmt.Errorf("%s: %w", name, err)
		}
	}()
	return srv.Close, nil
}

// nodeOps are the operations flags of "raftmail node".
type nodeOps struct {
	opsFlags
	metricsAddr string
	readyLag    uint64
}

func (o *nodeOps) register(fs *flag.FlagSet) {
	o.opsFlags.register(fs, "raftmail-node", "for raft and the node API")
	fs.StringVar(&o.metricsAddr, "metrics", "", "plain-HTTP listener for /metrics, /healthz and /readyz, host:port (empty: off; /metrics is also on the API)")
	fs.Uint64Var(&o.readyLag, "ready-max-lag", 1000, "applied-index lag (entries) up to which /readyz answers ready")
}

// apply fills the node configuration from the operations flags.
func (o *nodeOps) apply(cfg *cluster.Config) error {
	m, err := o.tls.load()
	if err != nil {
		return err
	}
	cfg.TLS = m
	if err := o.setupMetrics(); err != nil {
		return err
	}
	cfg.Metrics = o.registry
	cfg.ReadyMaxLag = o.readyLag
	return nil
}

// serve starts the metrics listener of a started node.
func (o *nodeOps) serve(n *cluster.Node, errs chan<- error, logger *slog.Logger) error {
	if o.metricsAddr == "" {
		return nil
	}
	closeFn, err := serveHTTP(o.metricsAddr, "metrics", o.withPprof(n.OpsHandler()), errs, logger)
	if err != nil {
		return err
	}
	o.closers = append([]func() error{closeFn}, o.closers...)
	return nil
}

// frontendOps are the operations flags of "raftmail frontend".
type frontendOps struct {
	opsFlags
	httpAddr string
	mtls     *cluster.MutualTLS
}

func (o *frontendOps) register(fs *flag.FlagSet) {
	o.opsFlags.register(fs, "raftmail-frontend", "to the node API (client certificate)")
	fs.StringVar(&o.httpAddr, "http", "", "plain-HTTP listener for /metrics, /healthz and /readyz, host:port (empty: off)")
}

// setup loads the cluster TLS files and makes the registry.
func (o *frontendOps) setup() error {
	var err error
	if o.mtls, err = o.tls.load(); err != nil {
		return err
	}
	return o.setupMetrics()
}

// serve starts the --http listener; /readyz asks the nodes.
func (o *frontendOps) serve(nodes []string, token string, errs chan<- error, logger *slog.Logger) error {
	if o.httpAddr == "" {
		return nil
	}
	rc := newReadiness(cluster.NewClientTLS(token, o.mtls), nodes)
	o.closers = append(o.closers, func() error { rc.client.Close(); return nil })
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { writeStatus(w, 200, "ok", "") })
	mux.HandleFunc("GET /readyz", rc.handle)
	mux.Handle("GET /metrics", cluster.MetricsHandler(o.registry))
	closeFn, err := serveHTTP(o.httpAddr, "http", o.withPprof(mux), errs, logger)
	if err != nil {
		return err
	}
	o.closers = append([]func() error{closeFn}, o.closers...)
	return nil
}
