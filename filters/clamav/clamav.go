// Package clamav scans message bodies with clamd over its INSTREAM
// command (TCP or a unix socket), see clamd(8): "zINSTREAM\0", then
// chunks of [4-byte big-endian length][data], a zero-length chunk, and
// one reply line ("stream: OK", "stream: NAME FOUND" or "... ERROR").
package clamav

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/raftmail/raftmail/filters"
)

// DebianSocket is where Debian's clamav-daemon listens by default.
const DebianSocket = "/var/run/clamav/clamd.ctl"

// Config configures the check.
type Config struct {
	// Addr is clamd's address: "unix:/path", "/path" (unix) or
	// "host:port" (TCP).
	Addr string
	// Timeout bounds one scan when the pipeline's is longer (default 30s).
	Timeout time.Duration
	// ChunkSize is the INSTREAM chunk size (default 64 KiB).
	ChunkSize int
}

// Client talks to one clamd.
type Client struct {
	network, addr string
	timeout       time.Duration
	chunk         int
}

// NewClient returns a client of clamd at cfg.Addr.
func NewClient(cfg Config) (*Client, error) {
	if cfg.Addr == "" {
		return nil, errors.New("clamav: no address")
	}
	c := &Client{network: "tcp", addr: cfg.Addr, timeout: cfg.Timeout, chunk: cfg.ChunkSize}
	if strings.HasPrefix(cfg.Addr, "unix:") || strings.HasPrefix(cfg.Addr, "/") {
		c.network, c.addr = "unix", strings.TrimPrefix(cfg.Addr, "unix:")
	}
	if c.timeout <= 0 {
		c.timeout = 30 * time.Second
	}
	if c.chunk <= 0 {
		c.chunk = 64 << 10
	}
	return c, nil
}

// Addr returns the address in Config form.
func (c *Client) Addr() string {
	if c.network == "unix" {
		return "unix:" + c.addr
	}
	return c.addr
}

// Result is a scan's outcome.
type Result struct {
	Infected bool
	Virus    string // signature name when infected
}

func (c *Client) dial(ctx context.Context) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, c.network, c.addr)
	if err != nil {
		return nil, fmt.Errorf("clamd %s: %w", c.Addr(), err)
	}
	dl := time.Now().Add(c.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	_ = conn.SetDeadline(dl)
	return conn, nil
}

// Ping checks that clamd answers ("zPING" → "PONG").
func (c *Client) Ping(ctx context.Context) error {
	conn, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("zPING\x00")); err != nil {
		return fmt.Errorf("clamd ping: %w", err)
	}
	line, err := bufio.NewReader(conn).ReadString(0)
	if err != nil {
		return fmt.Errorf("clamd ping: %w", err)
	}
	if strings.TrimRight(line, "\x00\n") != "PONG" {
		return fmt.Errorf("clamd ping: answer %q", line)
	}
	return nil
}

// Scan streams r to clamd. The connection is closed when ctx ends, so a
// stuck clamd never holds the caller past its deadline.
func (c *Client) Scan(ctx context.Context, r io.Reader) (Result, error) {
	conn, err := c.dial(ctx)
	if err != nil {
		return Result{}, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	w := bufio.NewWriterSize(conn, c.chunk+4)
	if _, err := w.WriteString("zINSTREAM\x00"); err != nil {
		return Result{}, fmt.Errorf("clamd: %w", err)
	}
	buf := make([]byte, c.chunk)
	var hdr [4]byte
	for {
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			binary.BigEndian.PutUint32(hdr[:], uint32(n))
			_, _ = w.Write(hdr[:])
			if _, err := w.Write(buf[:n]); err != nil {
				return Result{}, fmt.Errorf("clamd stream: %w", err)
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return Result{}, fmt.Errorf("read body: %w", rerr)
		}
	}
	_, _ = w.Write([]byte{0, 0, 0, 0})
	if err := w.Flush(); err != nil {
		return Result{}, fmt.Errorf("clamd stream: %w", err)
	}
	line, err := bufio.NewReader(conn).ReadString(0)
	if err != nil && line == "" {
		return Result{}, fmt.Errorf("clamd reply: %w", err)
	}
	return parseReply(strings.TrimRight(line, "\x00\n"))
}

// parseReply reads "stream: OK", "stream: NAME FOUND" or an error.
func parseReply(line string) (Result, error) {
	msg := strings.TrimPrefix(line, "stream: ")
	switch {
	case msg == "OK":
		return Result{}, nil
	case strings.HasSuffix(msg, " FOUND"):
		return Result{Infected: true, Virus: strings.TrimSuffix(msg, " FOUND")}, nil
	}
	return Result{}, fmt.Errorf("clamd: %s", line)
}

// Check is the antivirus filter: a body check rejecting infected
// messages with 554 5.7.1. When clamd cannot be reached it fails with
// 451 4.7.0 (the pipeline's OnError: accept makes it fail open).
type Check struct{ c *Client }

var _ filters.Check = (*Check)(nil)

// New returns the check.
func New(cfg Config) (*Check, error) {
	c, err := NewClient(cfg)
	if err != nil {
		return nil, err
	}
	return &Check{c: c}, nil
}

// Client returns the check's client.
func (ck *Check) Client() *Client { return ck.c }

// Name implements filters.Check.
func (ck *Check) Name() string { return "clamav" }

// NewState implements filters.Check.
func (ck *Check) NewState(context.Context, *filters.ConnInfo) (filters.State, error) {
	return state{c: ck.c}, nil
}

type state struct {
	filters.NopState
	c *Client
}

// Inline implements filters.Inline: only Body works (it talks to clamd).
func (state) Inline(stage filters.Stage) bool { return stage != filters.StageData }

func (s state) Body(ctx context.Context, m *filters.Message) filters.Verdict {
	r, err := m.Body.Open()
	if err != nil {
		return filters.Failure(err)
	}
	defer r.Close()
	res, err := s.c.Scan(ctx, r)
	if err != nil {
		v := filters.Failure(err)
		v.Code, v.Enhanced, v.Reason = 451, [3]int{4, 7, 0}, "Virus scanner unavailable, try again later"
		return v
	}
	if res.Infected {
		return filters.Verdict{Action: filters.Reject, Code: 554, Enhanced: [3]int{5, 7, 1},
			Reason: "Message rejected: virus found (" + res.Virus + ")", Err: fmt.Errorf("virus %s", res.Virus)}
	}
	return filters.Verdict{}
}
