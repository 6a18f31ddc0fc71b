package imap

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/raftmail/raftmail/cluster/clustertest"
)

// benchFetch measures FETCH 1:* of the given items over loopback on one
// node holding corpus messages, reporting messages/s.
func benchFetch(b *testing.B, opts *imap.FetchOptions) {
	files, _ := filepath.Glob("../mailmeta/testdata/*.eml")
	if len(files) == 0 {
		b.Skip("no sample mail")
	}
	c := clustertest.New(b, 1)
	c.AddAccount(alice, alicePw)
	srv, err := New(Config{InsecureAuth: true, Logger: testLogger(nil)}, c.Store(0))
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	const n = 400
	for i := 0; i < n; i++ {
		raw, _ := os.ReadFile(files[i%len(files)])
		c.Deliver(0, "s@remote.test", []string{alice}, raw)
	}
	ln := listen(b)
	go func() { _ = srv.Serve(ln) }()
	cl, err := imapclient.DialInsecure(ln.Addr().String(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	if err := cl.Login(alice, alicePw).Wait(); err != nil {
		b.Fatal(err)
	}
	if _, err := cl.Select("INBOX", nil).Wait(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		msgs, err := cl.Fetch(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}, opts).Collect()
		if err != nil || len(msgs) != n {
			b.Fatalf("fetch: %d %v", len(msgs), err)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkFetchStructure: ENVELOPE and BODYSTRUCTURE from stored meta, no
// decompression.
func BenchmarkFetchStructure(b *testing.B) {
	benchFetch(b, &imap.FetchOptions{UID: true, Flags: true, Envelope: true, BodyStructure: &imap.FetchItemBodyStructure{Extended: true}, RFC822Size: true})
}

// BenchmarkFetchBody: BODY.PEEK[] decompresses each body once.
func BenchmarkFetchBody(b *testing.B) {
	benchFetch(b, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
}

func listen(tb testing.TB) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	return ln
}
