package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// POP3Client is a minimal RFC 1939 client: enough to log in, STAT, RETR
// and QUIT for the benchmark (no TLS; loopback only).
type POP3Client struct {
	conn    net.Conn
	r       *bufio.Reader
	timeout time.Duration
}

// POP3Error is a -ERR reply; Code is its RFC 2449 response code, if any
// (e.g. "IN-USE", "AUTH").
type POP3Error struct {
	Code string
	Text string
}

func (e *POP3Error) Error() string { return "pop3: -ERR " + e.Text }

// DialPOP3 connects and reads the greeting.
func DialPOP3(addr string, timeout time.Duration) (*POP3Client, error) {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	c := &POP3Client{conn: conn, r: bufio.NewReaderSize(conn, 64<<10), timeout: timeout}
	if _, err := c.reply(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("pop3 greeting: %w", err)
	}
	return c, nil
}

// cmd sends one command line and reads its status line (RFC 1939 §3).
func (c *POP3Client) cmd(format string, args ...any) (string, error) {
	_ = c.conn.SetDeadline(time.Now().Add(c.timeout))
	if _, err := fmt.Fprintf(c.conn, format+"\r\n", args...); err != nil {
		return "", err
	}
	return c.reply()
}

func (c *POP3Client) reply() (string, error) {
	line, err := c.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if rest, ok := strings.CutPrefix(line, "+OK"); ok {
		return strings.TrimSpace(rest), nil
	}
	if rest, ok := strings.CutPrefix(line, "-ERR"); ok {
		e := &POP3Error{Text: strings.TrimSpace(rest)}
		if strings.HasPrefix(e.Text, "[") {
			if end := strings.IndexByte(e.Text, ']'); end > 0 {
				e.Code = e.Text[1:end]
			}
		}
		return "", e
	}
	return "", fmt.Errorf("pop3: malformed reply %q", line)
}

// Login sends USER and PASS (RFC 1939 §7).
func (c *POP3Client) Login(user, pass string) error {
	if _, err := c.cmd("USER %s", user); err != nil {
		return err
	}
	_, err := c.cmd("PASS %s", pass)
	return err
}

// Stat returns the message count and size of the maildrop (RFC 1939 §5).
func (c *POP3Client) Stat() (count int, size int64, err error) {
	line, err := c.cmd("STAT")
	if err != nil {
		return 0, 0, err
	}
	f := strings.Fields(line)
	if len(f) < 2 {
		return 0, 0, fmt.Errorf("pop3: malformed STAT %q", line)
	}
	if count, err = strconv.Atoi(f[0]); err != nil {
		return 0, 0, fmt.Errorf("pop3: STAT count: %w", err)
	}
	size, err = strconv.ParseInt(f[1], 10, 64)
	return count, size, err
}

// Retr downloads message n into w, undoing dot-stuffing, and returns the
// bytes written (RFC 1939 §5 RETR, §3 multi-line responses).
func (c *POP3Client) Retr(n int, w io.Writer) (int64, error) {
	if _, err := c.cmd("RETR %d", n); err != nil {
		return 0, err
	}
	var total int64
	for {
		line, err := c.r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A line longer than the buffer: pass it through in pieces.
			k, _ := w.Write(line)
			total += int64(k)
			continue
		}
		if err != nil {
			return total, err
		}
		if bytes.Equal(line, []byte(".\r\n")) {
			return total, nil
		}
		if line[0] == '.' {
			line = line[1:]
		}
		k, _ := w.Write(line)
		total += int64(k)
	}
}

// Quit ends the session (RFC 1939 §6).
func (c *POP3Client) Quit() error {
	_, err := c.cmd("QUIT")
	c.conn.Close()
	return err
}

// Close drops the connection without QUIT.
func (c *POP3Client) Close() error { return c.conn.Close() }

// RunPOP3 runs a POP3 read load: per mailbox USER/PASS and STAT once, then
// rounds of RETR 1..n (each RETR one operation and one latency sample).
// Sessions end with QUIT and no DELE, so nothing is deleted.
func RunPOP3(ctx context.Context, l ReadLoad) Summary {
	if l.OpTimeout == 0 {
		l.OpTimeout = time.Minute
	}
	open := func(target string, u Cred) (readSession, error) {
		c, err := DialPOP3(target, l.OpTimeout)
		if err != nil {
			return nil, err
		}
		if err := c.Login(u.User, u.Pass); err != nil {
			c.Close()
			return nil, err
		}
		n, _, err := c.Stat()
		if err != nil {
			c.Close()
			return nil, err
		}
		return &pop3Session{c: c, n: n}, nil
	}
	return runSessions(ctx, l, open, POP3ErrorCode)
}

type pop3Session struct {
	c *POP3Client
	n int
}

func (s *pop3Session) round(rec *Recorder, _ int64) error {
	if s.n == 0 {
		return errEmpty
	}
	for i := 1; i <= s.n; i++ {
		start := time.Now()
		size, err := s.c.Retr(i, io.Discard)
		if err != nil {
			return err
		}
		rec.Ok(time.Since(start), int(size))
	}
	return nil
}

func (s *pop3Session) close() { _ = s.c.Quit() }

// POP3ErrorCode names a POP3 failure for the error table: "-ERR" with its
// response code ("-ERR [IN-USE]"), else "timeout" or "io".
func POP3ErrorCode(err error) string {
	var pe *POP3Error
	if errors.As(err, &pe) {
		if pe.Code != "" {
			return "-ERR [" + pe.Code + "]"
		}
		return "-ERR"
	}
	return ioCode(err)
}
