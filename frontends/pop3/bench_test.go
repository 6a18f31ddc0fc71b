package pop3

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/raftmail/raftmail/cluster/clustertest"
)

// benchMaildrop is a 1-node cluster whose account has n messages of about
// size octets, with a POP3 server in front.
func benchMaildrop(b *testing.B, n, size int) (*clustertest.Cluster, *testServer) {
	b.Helper()
	c := clustertest.New(b, 1)
	c.AddAccount("bench@example.org", "pw")
	line := "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n"
	body := strings.Repeat(line, size/len(line))
	for i := 0; i < n; i++ {
		raw := fmt.Sprintf("From: x@example.org\r\nTo: bench@example.org\r\nSubject: %d\r\nMessage-ID: <%d@bench>\r\n\r\n%s", i, i, body)
		c.Deliver(0, "x@example.org", []string{"bench@example.org"}, []byte(raw))
	}
	cfg := Config{AllowInsecureAuth: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	srv, err := New(cfg, c.Store(0))
	if err != nil {
		b.Fatal(err)
	}
	return c, serveBench(b, srv)
}

func serveBench(b *testing.B, srv *Server) *testServer {
	ln := listen(b)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	b.Cleanup(func() { srv.Close(); <-done })
	return &testServer{Server: srv, addr: ln.Addr().String()}
}

// BenchmarkLogin measures USER/PASS (cached password check, lease acquire,
// maildrop load with warm size cache) + QUIT (lease release) on a 1000
// message maildrop. The first, cold login is reported separately.
func BenchmarkLogin(b *testing.B) {
	c, srv := benchMaildrop(b, 1000, 4<<10)
	start := time.Now()
	cc := greeted(b, srv.addr)
	cc.login("bench@example.org", "pw")
	cc.cmd("QUIT", "+OK*")
	b.Logf("cold login (1000 × 4 KiB, wire sizes computed): %v", time.Since(start))
	_ = c
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cc := greeted(b, srv.addr)
		cc.login("bench@example.org", "pw")
		cc.cmd("QUIT", "+OK*")
		cc.c.Close()
	}
}

// BenchmarkRETR measures RETR of 16 KiB messages over one session.
func BenchmarkRETR(b *testing.B) {
	_, srv := benchMaildrop(b, 100, 16<<10)
	cc := greeted(b, srv.addr)
	cc.login("bench@example.org", "pw")
	b.ResetTimer()
	var octets int64
	for i := 0; i < b.N; i++ {
		cc.send(fmt.Sprintf("RETR %d", i%100+1))
		cc.expect("+OK*")
		octets += int64(len(cc.multi()))
	}
	b.SetBytes(octets / int64(b.N))
	b.StopTimer()
	cc.cmd("QUIT", "+OK*")
}
