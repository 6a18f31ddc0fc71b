package frontends

import (
	"net"
	"sync"
)

// LimitListener caps concurrent connections in total and per client IP.
// A connection over a limit is handed to reject (which should answer the
// protocol's "too busy" reply) and closed, instead of being dropped silently.
type LimitListener struct {
	net.Listener
	max, perIP int
	reject     func(net.Conn)

	mu    sync.Mutex
	total int
	byIP  map[string]int
}

// NewLimitListener wraps ln; max or perIP of 0 means unlimited.
func NewLimitListener(ln net.Listener, max, perIP int, reject func(net.Conn)) *LimitListener {
	return &LimitListener{Listener: ln, max: max, perIP: perIP, reject: reject, byIP: make(map[string]int)}
}

// Accept returns the next connection within the limits.
func (l *LimitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteIP(c)
		l.mu.Lock()
		ok := (l.max == 0 || l.total < l.max) && (l.perIP == 0 || l.byIP[ip] < l.perIP)
		if ok {
			l.total++
			l.byIP[ip]++
		}
		l.mu.Unlock()
		if ok {
			return &limitedConn{Conn: c, l: l, ip: ip}, nil
		}
		go func() {
			if l.reject != nil {
				l.reject(c)
			}
			c.Close()
		}()
	}
}

// Active returns the number of connections currently held.
func (l *LimitListener) Active() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

func (l *LimitListener) release(ip string) {
	l.mu.Lock()
	l.total--
	if l.byIP[ip]--; l.byIP[ip] <= 0 {
		delete(l.byIP, ip)
	}
	l.mu.Unlock()
}

type limitedConn struct {
	net.Conn
	l    *LimitListener
	ip   string
	once sync.Once
}

func (c *limitedConn) Close() error {
	c.once.Do(func() { c.l.release(c.ip) })
	return c.Conn.Close()
}

func remoteIP(c net.Conn) string {
	host, _, err := net.SplitHostPort(c.RemoteAddr().String())
	if err != nil {
		return c.RemoteAddr().String()
	}
	return host
}
