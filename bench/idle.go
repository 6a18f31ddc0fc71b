package bench

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
)

// IdlePool holds many IMAP connections parked in IDLE on INBOX, to measure
// what an idle client costs a server.
type IdlePool struct {
	mu    sync.Mutex
	conns []idleConn
	// Errors counts the connections that failed, by error code.
	Errors map[string]int
}

type idleConn struct {
	conn net.Conn
	c    *imapclient.Client
	idle *imapclient.IdleCommand
}

// OpenIdle opens n connections to target (logging in as users in turn,
// conc at a time), selects INBOX and starts IDLE on each. progress, if
// set, is called after each connection.
func OpenIdle(ctx context.Context, target string, users []Cred, n, conc int, progress func()) *IdlePool {
	p := &IdlePool{Errors: map[string]int{}}
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < max(1, conc); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				ic, err := openIdle(target, users[i%len(users)])
				p.mu.Lock()
				if err != nil {
					p.Errors[IMAPErrorCode(err)]++
				} else {
					p.conns = append(p.conns, ic)
				}
				p.mu.Unlock()
				if progress != nil {
					progress()
				}
			}
		}()
	}
	wg.Wait()
	return p
}

func openIdle(target string, u Cred) (idleConn, error) {
	conn, c, err := DialIMAP(target, u, time.Minute)
	if err != nil {
		return idleConn{}, err
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		c.Close()
		return idleConn{}, err
	}
	idle, err := c.Idle()
	if err != nil {
		c.Close()
		return idleConn{}, err
	}
	_ = conn.SetDeadline(time.Time{}) // parked: no deadline while idle
	return idleConn{conn: conn, c: c, idle: idle}, nil
}

// Len is the number of connections in IDLE.
func (p *IdlePool) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Close drops every connection (without DONE/LOGOUT: a server must cope).
func (p *IdlePool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, ic := range p.conns {
		_ = ic.conn.Close()
		_ = ic.c.Close()
	}
	p.conns = nil
}
