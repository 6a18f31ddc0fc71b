// Package dnstest runs a real DNS server (github.com/miekg/dns) on 127.0.0.1
// for the filters' tests.
package dnstest

import (
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"
)

// Server is a real DNS server on 127.0.0.1 (a random UDP port) for
// the filters' tests: it answers the records added with Add and NXDOMAIN
// for anything else; with Hang set it never answers.
type Server struct {
	Addr string
	// Hang makes the server swallow every query (a dead resolver).
	Hang atomic.Bool
	// Queries counts the queries received.
	Queries atomic.Int64

	mu      sync.Mutex
	records map[string][]dns.RR // fqdn lower-case → RRs
	srv     *dns.Server
}

// Start starts a server stopped at the test's cleanup.
func Start(t testing.TB) *Server {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &Server{Addr: pc.LocalAddr().String(), records: make(map[string][]dns.RR)}
	started := make(chan struct{})
	ts.srv = &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(ts.serve), NotifyStartedFunc: func() { close(started) }}
	go func() { _ = ts.srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = ts.srv.Shutdown() })
	return ts
}

// Add adds records in zone-file syntax, e.g.
// `2.0.0.127.zen.test. 300 IN A 127.0.0.2`.
func (ts *Server) Add(t testing.TB, lines ...string) {
	t.Helper()
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for _, l := range lines {
		rr, err := dns.NewRR(l)
		if err != nil {
			t.Fatalf("record %q: %v", l, err)
		}
		name := strings.ToLower(rr.Header().Name)
		ts.records[name] = append(ts.records[name], rr)
	}
}

func (ts *Server) serve(w dns.ResponseWriter, req *dns.Msg) {
	ts.Queries.Add(1)
	if ts.Hang.Load() || len(req.Question) != 1 {
		return
	}
	q := req.Question[0]
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	ts.mu.Lock()
	rrs, found := ts.records[strings.ToLower(q.Name)]
	for _, rr := range rrs {
		if rr.Header().Rrtype == q.Qtype {
			m.Answer = append(m.Answer, dns.Copy(rr))
		}
	}
	ts.mu.Unlock()
	if !found {
		m.Rcode = dns.RcodeNameError
	}
	_ = w.WriteMsg(m)
}
