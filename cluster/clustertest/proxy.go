package clustertest

import (
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
)

// apiProxy relays TCP to a node's API listener until it is frozen; from
// then on it accepts and reads but passes nothing on in either direction,
// on new and open connections alike: the node's API looks like a
// SIGSTOPped process's (the kernel takes the request, nobody answers),
// while the node's raft keeps running.
type apiProxy struct {
	ln      net.Listener
	target  atomic.Pointer[string]
	frozen  atomic.Bool
	mute    atomic.Bool  // answers swallowed, requests still relayed
	dropped atomic.Int64 // reads swallowed while frozen or mute
	done    chan struct{}
	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	wg      sync.WaitGroup
}

func newAPIProxy(t testing.TB) *apiProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("api proxy: %v", err)
	}
	p := &apiProxy{ln: ln, done: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	return p
}

func (p *apiProxy) url() string { return "http://" + p.ln.Addr().String() }

func (p *apiProxy) setTarget(addr string) { p.target.Store(&addr) }

func (p *apiProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			return
		}
		p.wg.Add(1)
		go p.relay(c)
	}
}

// track remembers c for close; false once the proxy is closed.
func (p *apiProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.done:
		c.Close()
		return false
	default:
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *apiProxy) relay(c net.Conn) {
	defer p.wg.Done()
	up, err := net.Dial("tcp", *p.target.Load())
	if err != nil {
		c.Close()
		return
	}
	if !p.track(up) {
		c.Close()
		return
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.pipe(up, c, &p.frozen) // requests
	}()
	p.pipe(c, up, &p.frozen, &p.mute) // answers
}

// pipe copies src to dst until either ends, swallowing everything while
// any of the given switches is on.
func (p *apiProxy) pipe(dst, src net.Conn, off ...*atomic.Bool) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		swallow := slices.ContainsFunc(off, (*atomic.Bool).Load)
		if n > 0 {
			if swallow {
				p.dropped.Add(1)
			} else if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if swallow {
				<-p.done // a frozen process would not close it either
			}
			return
		}
	}
}

func (p *apiProxy) close() {
	p.mu.Lock()
	select {
	case <-p.done:
	default:
		close(p.done)
	}
	p.ln.Close()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
