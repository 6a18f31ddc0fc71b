package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"sync"
	"time"
)

// syslogHandler is a slog.Handler that forwards records to a central
// syslog server in RFC 5424 format, over UDP (one datagram per record,
// RFC 5426) or TCP (octet-counted frames, RFC 6587 §3.4.1), as the old
// cluster's central syslog server received them. The message is the
// record as slog's JSON or text handler writes it. Forwarding never holds
// a caller up for long: a write has a short deadline, and a failed TCP
// connection is redialled at the next record (records in between are lost,
// which the local log does not suffer).
type syslogHandler struct {
	inner slog.Handler // formats into buf
	out   *syslogConn
	buf   *bytes.Buffer
}

// syslogConn is the shared connection and header of a handler and the
// handlers derived from it by WithAttrs/WithGroup.
type syslogConn struct {
	network, addr string
	app, host     string
	pid           string

	mu   sync.Mutex // guards conn and every handler's buf
	conn net.Conn
}

var _ slog.Handler = (*syslogHandler)(nil)

// newSyslogHandler parses target (udp://host:port or tcp://host:port) and
// returns a handler formatting records as json or text.
func newSyslogHandler(target, app, format string, opts *slog.HandlerOptions) (*syslogHandler, error) {
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "udp" && u.Scheme != "tcp") || u.Host == "" {
		return nil, fmt.Errorf("--syslog %q: want udp://host:port or tcp://host:port", target)
	}
	host, _ := os.Hostname()
	if host == "" {
		host = "-"
	}
	c := &syslogConn{network: u.Scheme, addr: u.Host, app: app, host: host, pid: strconv.Itoa(os.Getpid())}
	buf := &bytes.Buffer{}
	var inner slog.Handler
	if format == "json" {
		inner = slog.NewJSONHandler(buf, opts)
	} else {
		inner = slog.NewTextHandler(buf, opts)
	}
	return &syslogHandler{inner: inner, out: c, buf: buf}, nil
}

func (h *syslogHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *syslogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &syslogHandler{inner: h.inner.WithAttrs(as), out: h.out, buf: h.buf}
}

func (h *syslogHandler) WithGroup(name string) slog.Handler {
	return &syslogHandler{inner: h.inner.WithGroup(name), out: h.out, buf: h.buf}
}

// Handle formats the record and sends it. Errors are not returned: a
// logger has nobody to tell, and the local handler still has the line.
func (h *syslogHandler) Handle(ctx context.Context, r slog.Record) error {
	h.out.mu.Lock()
	defer h.out.mu.Unlock()
	h.buf.Reset()
	if err := h.inner.Handle(ctx, r); err != nil {
		return err
	}
	msg := bytes.TrimRight(h.buf.Bytes(), "\n")
	h.out.send(h.out.frame(r, msg))
	return nil
}

// frame builds an RFC 5424 §6 message: facility mail (2), the record's
// severity, its time, host, app name and PID, no structured data (the
// attributes are in the message).
func (c *syslogConn) frame(r slog.Record, msg []byte) []byte {
	pri := 2*8 + severity(r.Level) // RFC 5424 §6.2.1: facility 2 = mail system
	t := r.Time
	if t.IsZero() {
		t = time.Now()
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "<%d>1 %s %s %s %s - - ", pri, t.UTC().Format("2006-01-02T15:04:05.000000Z"), c.host, c.app, c.pid)
	b.Write(msg)
	return b.Bytes()
}

// severity maps slog levels to RFC 5424 §6.2.1 severities.
func severity(l slog.Level) int {
	switch {
	case l >= slog.LevelError:
		return 3 // error
	case l >= slog.LevelWarn:
		return 4 // warning
	case l >= slog.LevelInfo:
		return 6 // informational
	}
	return 7 // debug
}

// send writes one message (c.mu held).
func (c *syslogConn) send(msg []byte) {
	if c.conn == nil {
		conn, err := net.DialTimeout(c.network, c.addr, time.Second)
		if err != nil {
			return
		}
		c.conn = conn
	}
	if c.network == "tcp" {
		msg = append([]byte(strconv.Itoa(len(msg))+" "), msg...) // RFC 6587 §3.4.1 octet counting
	}
	_ = c.conn.SetWriteDeadline(time.Now().Add(time.Second))
	if _, err := c.conn.Write(msg); err != nil {
		c.conn.Close()
		c.conn = nil
	}
}

// Close closes the connection.
func (h *syslogHandler) Close() error {
	h.out.mu.Lock()
	defer h.out.mu.Unlock()
	if h.out.conn == nil {
		return nil
	}
	err := h.out.conn.Close()
	h.out.conn = nil
	return err
}
