package outbound_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"
)

// internet is a small Internet on loopback: a DNS server on 127.0.0.1
// and mail servers on other loopback addresses (127.0.0.2, 127.0.0.3 …),
// all on one port, since the delivery service has one remote port.
type internet struct {
	t       testing.TB
	dnsAddr string
	port    int

	mu    sync.Mutex
	zone  map[string][]dns.RR // fqdn + qtype → answers
	rcode map[string]int      // fqdn → forced rcode (SERVFAIL, NXDOMAIN…)
	names map[string]bool     // fqdns that exist
}

// newInternet starts the DNS server and picks a port free on the given
// loopback addresses; it skips the test if they cannot be bound.
func newInternet(t testing.TB, hosts ...string) *internet {
	t.Helper()
	in := &internet{t: t, zone: map[string][]dns.RR{}, rcode: map[string]int{}, names: map[string]bool{}}
	in.port = freePortOn(t, hosts)
	var pc net.PacketConn
	var tl net.Listener
	for try := 0; tl == nil; try++ {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		in.dnsAddr = pc.LocalAddr().String()
		if tl, err = net.Listen("tcp", in.dnsAddr); err != nil {
			pc.Close()
			if try == 20 {
				t.Fatalf("dns tcp on %s: %v", in.dnsAddr, err)
			}
		}
	}
	h := dns.HandlerFunc(in.serveDNS)
	udp := &dns.Server{PacketConn: pc, Handler: h}
	tcp := &dns.Server{Listener: tl, Handler: h}
	go func() { _ = udp.ActivateAndServe() }()
	go func() { _ = tcp.ActivateAndServe() }()
	t.Cleanup(func() { _ = udp.Shutdown(); _ = tcp.Shutdown() })
	return in
}

// freePortOn finds a TCP port free on every host.
func freePortOn(t testing.TB, hosts []string) int {
	t.Helper()
	for try := 0; try < 50; try++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		ok := true
		for _, h := range hosts {
			l, err := net.Listen("tcp", net.JoinHostPort(h, strconv.Itoa(port)))
			if err != nil {
				if try == 0 && !isAddrInUse(err) {
					t.Skipf("cannot bind loopback address %s (needs 127.0.0.0/8 on lo): %v", h, err)
				}
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			return port
		}
	}
	t.Fatal("no port free on every test host")
	return 0
}

func isAddrInUse(err error) bool { return strings.Contains(err.Error(), "address already in use") }

// addr returns host:port on the test port.
func (in *internet) addr(host string) string { return net.JoinHostPort(host, strconv.Itoa(in.port)) }

func (in *internet) add(rr string) {
	in.t.Helper()
	r, err := dns.NewRR(rr)
	if err != nil {
		in.t.Fatalf("rr %q: %v", rr, err)
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	name := strings.ToLower(r.Header().Name)
	in.names[name] = true
	k := name + "/" + dns.TypeToString[r.Header().Rrtype]
	in.zone[k] = append(in.zone[k], r)
}

// mx publishes "domain MX pref host" and "host A ip" records.
func (in *internet) mx(domain string, pref int, host, ip string) {
	in.add(fmt.Sprintf("%s. 60 IN MX %d %s.", domain, pref, host))
	if ip != "" {
		in.add(fmt.Sprintf("%s. 60 IN A %s", host, ip))
	}
}

func (in *internet) setRcode(name string, rcode int) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if rcode < 0 {
		delete(in.rcode, dns.Fqdn(name))
		return
	}
	in.rcode[dns.Fqdn(name)] = rcode
}

func (in *internet) serveDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) == 1 {
		q := req.Question[0]
		name := strings.ToLower(q.Name)
		in.mu.Lock()
		rc, forced := in.rcode[name]
		switch {
		case forced:
			m.Rcode = rc
		case !in.names[name]:
			m.Rcode = dns.RcodeNameError
		default:
			m.Answer = append(m.Answer, in.zone[name+"/"+dns.TypeToString[q.Qtype]]...)
		}
		in.mu.Unlock()
	}
	if _, isUDP := w.RemoteAddr().(*net.UDPAddr); isUDP {
		size := 512
		if o := req.IsEdns0(); o != nil {
			size = int(o.UDPSize())
		}
		m.Truncate(size)
	}
	_ = w.WriteMsg(m)
}

// sinkMsg is one message a sink accepted.
type sinkMsg struct {
	From  string
	Rcpts []string
	Data  []byte
	TLS   bool
	Helo  string
	Opts  smtp.MailOptions
	RcOpt []smtp.RcptOptions
}

// sink is a receiving mail server (go-smtp) with STARTTLS and DSN.
type sink struct {
	t    testing.TB
	srv  *smtp.Server
	addr string

	mu       sync.Mutex
	msgs     []sinkMsg
	rcptHook func(to string) error
	dataHook func(m *sinkMsg) error
	tries    int // transactions that reached RCPT
}

func (in *internet) sink(host string) *sink {
	in.t.Helper()
	s := &sink{t: in.t, addr: in.addr(host)}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		_, isTLS := c.TLSConnectionState()
		return &sinkSession{s: s, tls: isTLS, helo: c.Hostname()}, nil
	}))
	srv.Domain = host
	srv.TLSConfig = selfSigned(in.t)
	srv.EnableDSN = true
	srv.AllowInsecureAuth = true
	srv.ReadTimeout = 10 * time.Second
	srv.ErrorLog = nopLog{}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		in.t.Fatalf("sink %s: %v", s.addr, err)
	}
	s.srv = srv
	go func() { _ = srv.Serve(ln) }()
	in.t.Cleanup(func() { _ = srv.Close() })
	return s
}

type nopLog struct{}

func (nopLog) Printf(string, ...interface{}) {}
func (nopLog) Println(...interface{})        {}

func (s *sink) messages() []sinkMsg {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sinkMsg(nil), s.msgs...)
}

func (s *sink) attempts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tries
}

type sinkSession struct {
	s    *sink
	tls  bool
	helo string
	m    sinkMsg
	seen bool
}

func (ss *sinkSession) Reset()        { ss.m = sinkMsg{}; ss.seen = false }
func (ss *sinkSession) Logout() error { return nil }
func (ss *sinkSession) Mail(from string, opts *smtp.MailOptions) error {
	ss.m = sinkMsg{From: from, TLS: ss.tls, Helo: ss.helo}
	if opts != nil {
		ss.m.Opts = *opts
	}
	return nil
}

func (ss *sinkSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	ss.s.mu.Lock()
	if !ss.seen {
		ss.s.tries++
		ss.seen = true
	}
	hook := ss.s.rcptHook
	ss.s.mu.Unlock()
	if hook != nil {
		if err := hook(to); err != nil {
			return err
		}
	}
	ss.m.Rcpts = append(ss.m.Rcpts, to)
	if opts != nil {
		ss.m.RcOpt = append(ss.m.RcOpt, *opts)
	}
	return nil
}

func (ss *sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m := ss.m
	m.Data = b
	ss.s.mu.Lock()
	hook := ss.s.dataHook
	ss.s.mu.Unlock()
	if hook != nil {
		if err := hook(&m); err != nil {
			return err
		}
	}
	ss.s.mu.Lock()
	ss.s.msgs = append(ss.s.msgs, m)
	ss.s.mu.Unlock()
	return nil
}

func selfSigned(t testing.TB) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mx.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// blackhole accepts connections and never says a word.
func (in *internet) blackhole(host string) {
	in.t.Helper()
	ln, err := net.Listen("tcp", in.addr(host))
	if err != nil {
		in.t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	in.t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
}

var errTemp = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}

func hasHeader(b []byte, name string) bool {
	return bytes.Contains(bytes.ToLower(b), []byte(strings.ToLower(name)+":"))
}

var _ = errors.New
