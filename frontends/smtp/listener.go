package smtp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/raftmail/raftmail/filters"
)

// gate is the listener go-smtp serves from. Each accepted connection is
// admitted in its own goroutine, so a slow client cannot hold up others:
// PROXY header (trusted sources only), connection limits (total, per IP),
// then the filter pipeline's connect stage. A refused connection gets its
// reply (421 or 554, over TLS on an implicit-TLS listener) and is closed;
// go-smtp never sees it. frontends.LimitListener does the limits part for
// LMTP, but it reads RemoteAddr in Accept, which with a PROXY header would
// block the accept loop on one slow client.
type gate struct {
	net.Listener
	s   *Server
	tls *tls.Config // implicit TLS: for the refusal reply only

	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	err   error
}

func (s *Server) newGate(ln net.Listener, tlsCfg *tls.Config) *gate {
	g := &gate{Listener: ln, s: s, tls: tlsCfg, conns: make(chan net.Conn), done: make(chan struct{})}
	go g.run()
	return g
}

func (g *gate) run() {
	for {
		c, err := g.Listener.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			g.shut(err)
			return
		}
		go g.admit(c)
	}
}

// shut stops Accept, with err (nil after Close).
func (g *gate) shut(err error) {
	g.once.Do(func() {
		g.err = err
		close(g.done)
	})
}

// Accept returns the next admitted connection.
func (g *gate) Accept() (net.Conn, error) {
	select {
	case c := <-g.conns:
		return c, nil
	case <-g.done:
		if g.err != nil {
			return nil, g.err
		}
		return nil, net.ErrClosed
	}
}

// Close stops accepting.
func (g *gate) Close() error {
	g.shut(nil)
	return g.Listener.Close()
}

// admit runs the admission steps for one connection.
func (g *gate) admit(raw net.Conn) {
	s := g.s
	var c net.Conn = raw
	proxied := false
	if peer := addrIP(raw.RemoteAddr()); s.proxyTrusted(peer) {
		pc := proxyproto.NewConn(raw, proxyproto.WithPolicy(proxyproto.REQUIRE),
			proxyproto.SetReadHeaderTimeout(s.cfg.ProxyHeaderTimeout))
		if pc.ProxyHeader() == nil {
			s.logger.Info("connection without a valid PROXY header from a trusted proxy", "proxy", peer.String())
			raw.Close()
			return
		}
		c, proxied = pc, true
	}
	ip := addrIP(c.RemoteAddr())
	id := s.seq.Add(1)
	gc := &conn{Conn: c, s: s, id: id, ip: ip, end: time.Now().Add(s.cfg.SessionTimeout)}
	if reason := s.limits.acquire(ip); reason != "" {
		s.logger.Info("connection refused", "conn", id, "remote", c.RemoteAddr().String(), "reason", reason)
		g.refuse(c, 421, "4.7.0", "Too many connections"+reason+", try again later")
		return
	}
	gc.release = func() { s.limits.release(ip) }
	info := &filters.ConnInfo{ID: fmt.Sprint(id), IP: ip, Proxied: proxied, Profile: string(s.cfg.Profile)}
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.LookupTimeout)
	fs, v := s.pipeline.Load().Connect(ctx, info)
	cancel()
	gc.filters, gc.info = fs, info
	if v.Action >= filters.TempFail {
		code, enh, text := v.Reply(filters.StageConnect)
		s.logger.Info("connection refused by filters", "conn", id, "remote", c.RemoteAddr().String(),
			"check", v.Check, "verdict", v.Action.String(), "err", v.Err)
		g.refuse(c, code, fmt.Sprintf("%d.%d.%d", enh[0], enh[1], enh[2]), text)
		gc.closeState()
		return
	}
	select {
	case g.conns <- gc:
	case <-g.done:
		gc.Close()
	}
}

// refuse answers a connection that will not be served and closes it.
func (g *gate) refuse(c net.Conn, code int, enh, text string) {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	w := c
	if g.tls != nil {
		tc := tls.Server(c, g.tls)
		if tc.Handshake() != nil {
			c.Close()
			return
		}
		w = tc
	}
	fmt.Fprintf(w, "%d %s %s %s\r\n", code, enh, g.s.cfg.Hostname, text)
	w.Close()
}

// connLimits counts connections in total and per client IP.
type connLimits struct {
	max, perIP int

	mu    sync.Mutex
	total int
	byIP  map[netip.Addr]int
}

func (l *connLimits) acquire(ip netip.Addr) (refusal string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.max > 0 && l.total >= l.max:
		return " (server busy)"
	case l.perIP > 0 && l.byIP[ip] >= l.perIP:
		return " from your address"
	}
	l.total++
	l.byIP[ip]++
	return ""
}

func (l *connLimits) release(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.byIP[ip]--; l.byIP[ip] <= 0 {
		delete(l.byIP, ip)
	}
}

// conn is an admitted connection. It clamps every read deadline go-smtp
// sets to the session's end (so SessionTimeout ends the session with
// go-smtp's own 421), closes the connection when a write times out (a
// client that stops reading), and carries the connection's filter session.
// A *tls.Conn wraps it after STARTTLS or on an implicit-TLS listener.
type conn struct {
	net.Conn
	s       *Server
	id      uint64
	ip      netip.Addr
	end     time.Time
	info    *filters.ConnInfo
	filters *filters.Session
	release func()
	once    sync.Once
}

func (c *conn) clamp(t time.Time) time.Time {
	if t.IsZero() || t.After(c.end) {
		return c.end
	}
	return t
}

func (c *conn) SetDeadline(t time.Time) error     { return c.Conn.SetDeadline(c.clamp(t)) }
func (c *conn) SetReadDeadline(t time.Time) error { return c.Conn.SetReadDeadline(c.clamp(t)) }

func (c *conn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	var ne net.Error
	if err != nil && errors.As(err, &ne) && ne.Timeout() {
		c.s.logger.Info("client stopped reading, closing", "conn", c.id, "remote", c.RemoteAddr().String())
		c.Conn.Close()
	}
	return n, err
}

func (c *conn) Close() error {
	c.closeState()
	return c.Conn.Close()
}

func (c *conn) closeState() {
	c.once.Do(func() {
		if c.filters != nil {
			c.filters.Close()
		}
		if c.release != nil {
			c.release()
		}
	})
}

// unwrapConn finds our conn under the TLS layer go-smtp may have added.
func unwrapConn(nc net.Conn) *conn {
	for nc != nil {
		switch x := nc.(type) {
		case *conn:
			return x
		case interface{ NetConn() net.Conn }:
			nc = x.NetConn()
		default:
			return nil
		}
	}
	return nil
}

func addrIP(a net.Addr) netip.Addr {
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}
