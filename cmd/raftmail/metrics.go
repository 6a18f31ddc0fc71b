package main

import (
	"errors"
	"net"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/raftmail/raftmail/filters"
	"github.com/raftmail/raftmail/frontends"
)

// protoMetrics are the protocol metrics of a node or frontend process:
// sessions per protocol (counted at the listener, so every protocol is
// counted the same way), deliveries by reply code and filter verdicts by
// check. The node's raft metrics are cluster's (cluster/metrics.go).
type protoMetrics struct {
	active     *prometheus.GaugeVec
	sessions   *prometheus.CounterVec
	deliveries *prometheus.CounterVec
	verdicts   *prometheus.CounterVec
}

var (
	_ frontends.DeliveryObserver = (*protoMetrics)(nil)
	_ filters.VerdictObserver    = (*protoMetrics)(nil)
)

func newProtoMetrics(reg prometheus.Registerer) (*protoMetrics, error) {
	m := &protoMetrics{
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "raftmail_sessions_active", Help: "Open client connections, by protocol.",
		}, []string{"proto"}),
		sessions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "raftmail_sessions_total", Help: "Client connections accepted, by protocol.",
		}, []string{"proto"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "raftmail_deliveries_total",
			Help: "Delivery replies by protocol and SMTP code (LMTP: one per recipient; SMTP: one per DATA).",
		}, []string{"proto", "code"}),
		verdicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "raftmail_filter_verdicts_total", Help: "Filter checks' own verdicts, by check, stage and verdict.",
		}, []string{"check", "stage", "verdict"}),
	}
	for _, c := range []prometheus.Collector{m.active, m.sessions, m.deliveries, m.verdicts} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Delivery implements frontends.DeliveryObserver.
func (m *protoMetrics) Delivery(proto string, code int) {
	m.deliveries.WithLabelValues(proto, strconv.Itoa(code)).Inc()
}

// Verdict implements filters.VerdictObserver.
func (m *protoMetrics) Verdict(check string, stage filters.Stage, verdict string) {
	m.verdicts.WithLabelValues(check, stage.String(), verdict).Inc()
}

// listener counts the connections ln accepts as sessions of proto.
func (m *protoMetrics) listener(proto string, ln net.Listener) net.Listener {
	// Show the series at 0 before the first connection.
	m.sessions.WithLabelValues(proto).Add(0)
	m.active.WithLabelValues(proto).Add(0)
	return &countingListener{Listener: ln, proto: proto, m: m}
}

type countingListener struct {
	net.Listener
	proto string
	m     *protoMetrics
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return c, err
	}
	l.m.sessions.WithLabelValues(l.proto).Inc()
	l.m.active.WithLabelValues(l.proto).Inc()
	return &countedConn{Conn: c, done: func() { l.m.active.WithLabelValues(l.proto).Dec() }}, nil
}

// countedConn decrements the active gauge once, at the first Close.
type countedConn struct {
	net.Conn
	once sync.Once
	done func()
}

func (c *countedConn) Close() error {
	c.once.Do(c.done)
	return c.Conn.Close()
}

// CloseWrite passes a half-close through (POP3 ends sessions with one).
func (c *countedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}
