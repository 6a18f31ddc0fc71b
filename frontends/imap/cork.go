package imap

import (
	"net"
	"sync"
)

// corkMax is the most a corked connection holds before it writes through.
const corkMax = 64 << 10

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

// Cork starts collecting writes.
func (c *corkConn) Cork() {
	c.mu.Lock()
	c.corked = true
	c.mu.Unlock()
}

// Uncork sends what was collected and lets writes through again.
func (c *corkConn) Uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = false
	if c.err != nil {
		return c.err
	}
	return c.flushLocked()
}

func (c *corkConn) flushLocked() error {
	if len(c.buf) == 0 {
		return nil
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
