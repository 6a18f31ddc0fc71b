package main

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/raftmail/raftmail/cluster/clustertest"
	"github.com/raftmail/raftmail/frontends/imap"
	"github.com/raftmail/raftmail/frontends/lmtp"
	"github.com/raftmail/raftmail/frontends/pop3"
	"github.com/raftmail/raftmail/frontends/smtp"
)

// benchServers is an in-process 3-node cluster with LMTP on node 0, an MX
// frontend in front of the node APIs, and IMAP and POP3 on node 1.
type benchServers struct {
	lmtp, smtp, imap, pop3 string
}

func startBenchServers(t *testing.T) benchServers {
	t.Helper()
	c := clustertest.New(t, 3)
	c.AddAccount("user0@example.test", "password")
	c.AddAccount("user1@example.test", "password")
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	serve := func(serve func(net.Listener) error, closeFn func() error) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = serve(ln) }()
		t.Cleanup(func() { _ = closeFn() })
		return ln.Addr().String()
	}
	var s benchServers
	l := lmtp.New(lmtp.Config{Logger: quiet}, c.Node(0))
	s.lmtp = serve(l.Serve, l.Close)
	var nodes []string
	for i := 0; i < c.N(); i++ {
		nodes = append(nodes, c.Node(i).APIURL())
	}
	committer, err := smtp.NewNodesCommitter(smtp.NodesConfig{Nodes: nodes, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	fe, err := smtp.New(smtp.Config{Profile: smtp.ProfileMX, Hostname: "mx.test", Logger: quiet}, committer, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.smtp = serve(fe.Serve, fe.Close)
	im, err := imap.New(imap.Config{InsecureAuth: true, Logger: quiet}, c.Node(1))
	if err != nil {
		t.Fatal(err)
	}
	s.imap = serve(im.Serve, im.Close)
	p3, err := pop3.New(pop3.Config{AllowInsecureAuth: true, Logger: quiet}, c.Node(1))
	if err != nil {
		t.Fatal(err)
	}
	s.pop3 = serve(p3.Serve, p3.Close)
	return s
}

// TestBenchSmoke runs "raftmail bench" for a moment per protocol against
// an in-process cluster: it counts operations, reports errors by code (a
// user that does not exist is among the users: 550 for SMTP/LMTP, a failed
// login for IMAP/POP3), prints its table and writes JSON that parses.
func TestBenchSmoke(t *testing.T) {
	s := startBenchServers(t)
	dir := t.TempDir()
	corpus := filepath.Join(dir, "corpus")
	if err := os.MkdirAll(corpus, 0o755); err != nil {
		t.Fatal(err)
	}
	eml := "From: a@remote.test\nTo: user0@example.test\nMessage-ID: <orig@remote.test>\nSubject: re: hello\n\nbody line\n.leading dot\n"
	if err := os.WriteFile(filepath.Join(corpus, "m1.eml"), []byte(eml), 0o644); err != nil {
		t.Fatal(err)
	}
	common := []string{"--duration", "700ms", "--concurrency", "4", "--domain", "example.test", "--quiet"}
	tests := []struct {
		name    string
		args    []string
		minOps  int
		errCode string // an error code that must be counted ("" = none may be)
	}{
		{"lmtp", []string{"lmtp", "--target", s.lmtp, "--corpus", corpus, "--users", "3"}, 1, "550"},
		{"smtp", []string{"smtp", "--target", s.smtp, "--size", "3000", "--users", "3"}, 1, "550"},
		{"imap", []string{"imap", "--target", s.imap, "--users", "2", "--prefill", "3", "--prefill-target", s.lmtp, "--corpus", corpus}, 6, ""},
		{"imap-mixed", []string{"imap", "--mixed", "--target", s.imap, "--users", "3"}, 1, "NO"},
		{"pop3", []string{"pop3", "--target", s.pop3, "--users", "3"}, 6, "-ERR"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			jsonPath := filepath.Join(dir, tc.name+".json")
			var out, errOut bytes.Buffer
			args := append(append(tc.args, common...), "--json", jsonPath)
			if err := runBench(args, &out, &errOut); err != nil {
				t.Fatalf("raftmail bench %v: %v\n%s", args, err, errOut.String())
			}
			if !strings.Contains(out.String(), "ops/s") || !strings.Contains(out.String(), "errors by code") {
				t.Errorf("no table:\n%s", out.String())
			}
			data, err := os.ReadFile(jsonPath)
			if err != nil {
				t.Fatal(err)
			}
			var res benchResult
			if err := json.Unmarshal(data, &res); err != nil {
				t.Fatalf("JSON does not parse: %v\n%s", err, data)
			}
			sum := res.Summary
			t.Logf("%s: %v", tc.name, sum)
			if sum.Ops < tc.minOps || sum.PerSec <= 0 || sum.Bytes <= 0 || sum.P50 <= 0 || sum.Max < sum.P99 {
				t.Errorf("counts: %+v", sum)
			}
			found := false
			for code, n := range sum.Errors {
				if tc.errCode == "" {
					t.Errorf("unexpected errors %v", sum.Errors)
				}
				found = found || (strings.HasPrefix(code, tc.errCode) && n > 0)
			}
			if tc.errCode != "" && !found {
				t.Errorf("errors %v: want one with code %s", sum.Errors, tc.errCode)
			}
		})
	}
}
