package imap

import (
	"net"
	"sync"
	"time"
)

// corkMax is the most a corked connection holds before it writes through.
const corkMax = 64 << 10

// corkFlushTimeout bounds a flush that runs with no write deadline asked
// for (imapserver clears its deadline when a response ends, before the
// FETCH's Uncork writes): imapserver's own literal write timeout.
const corkFlushTimeout = 5 * time.Minute

// corkConn lets a FETCH answer many messages in few writes. imapserver
// flushes its buffered writer after every response line, so a FETCH of
// 5,000 small messages costs 5,000 write system calls (measured: a fifth of
// the server's CPU in BenchmarkFetchBody). While corked, writes collect here
// and go out in pieces of up to corkMax bytes; Uncork sends the rest.
// Outside a cork every write goes straight through.
type corkConn struct {
	net.Conn

	mu     sync.Mutex
	corked bool
	buf    []byte
	err    error // a failed write-through while corked, returned from then on

	// deadline is the write deadline last asked for; while corked it
	// reaches the network only when a flush writes. flushTimeout bounds a
	// flush when none is asked for (0: corkFlushTimeout).
	deadline     time.Time
	flushTimeout time.Duration
}

func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if !c.corked {
		return c.Conn.Write(p)
	}
	c.buf = append(c.buf, p...)
	if len(c.buf) >= corkMax {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// SetWriteDeadline records the deadline; while corked it is applied when a
// flush writes, not now. imapserver sets a deadline around every response
// and literal, four per message of a FETCH, each a timer update in the
// runtime's poller (8% of a follower's CPU under 16 FETCH clients).
func (c *corkConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	if c.corked {
		return nil
	}
	return c.Conn.SetWriteDeadline(t)
}

// SetDeadline sets the read deadline and the write deadline as above.
func (c *corkConn) SetDeadline(t time.Time) error {
	if err := c.Conn.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// Cork starts collecting writes.
func (c *corkConn) Cork() {
	c.mu.Lock()
	c.corked = true
	c.mu.Unlock()
}

// Uncork sends what was collected and lets writes through again, under
// the deadline last asked for from then on.
func (c *corkConn) Uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = false
	if c.err != nil {
		return c.err
	}
	err := c.flushLocked()
	if derr := c.Conn.SetWriteDeadline(c.deadline); err == nil {
		err = derr
	}
	return err
}

// flushLocked writes what was collected, under the deadline last asked for
// or, when that is none, within flushTimeout: a client that stops reading
// must not hold the session forever.
func (c *corkConn) flushLocked() error {
	if len(c.buf) == 0 {
		return nil
	}
	d := c.deadline
	if d.IsZero() {
		timeout := c.flushTimeout
		if timeout == 0 {
			timeout = corkFlushTimeout
		}
		d = time.Now().Add(timeout)
	}
	if err := c.Conn.SetWriteDeadline(d); err != nil {
		c.err = err
		return err
	}
	_, err := c.Conn.Write(c.buf)
	c.buf = c.buf[:0]
	if cap(c.buf) > 2*corkMax {
		c.buf = nil
	}
	if err != nil {
		c.err = err
	}
	return err
}

// corkListener wraps every accepted connection in a corkConn.
type corkListener struct{ net.Listener }

func (l corkListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &corkConn{Conn: c}, nil
}

// corkOf finds the corkConn under a connection (below TLS, if any); nil
// when there is none.
func corkOf(c net.Conn) *corkConn {
	for c != nil {
		if cc, ok := c.(*corkConn); ok {
			return cc
		}
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return nil
		}
		c = u.NetConn()
	}
	return nil
}
