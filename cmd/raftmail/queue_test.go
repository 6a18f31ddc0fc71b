package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/raftmail/raftmail/cluster/clustertest"
	"github.com/raftmail/raftmail/raftstore"
	"github.com/raftmail/raftmail/raftstore/command"
)

// TestAdminQueueAndDKIM drives "raftmail admin queue …" and "admin dkim
// …" against an in-process node (no delivery service runs, so queued
// messages stay put).
func TestAdminQueueAndDKIM(t *testing.T) {
	c := clustertest.New(t, 1)
	c.AddAccount("alice@example.test", "pw")
	n := c.Node(0)
	c.Propose(0, &command.QueueAdd{From: "alice@example.test", Rcpts: []command.QueueRcpt{{Addr: "x@remote.test"}},
		Blob: n.Codec().NewBlob([]byte("Subject: q\r\n\r\nq\r\n"), nil)})
	api := "http://" + c.Config(0).HTTPAddr
	run := func(args ...string) string {
		t.Helper()
		var out bytes.Buffer
		if err := runAdmin(append([]string{"--api", api}, args...), &out); err != nil {
			t.Fatalf("admin %v: %v", args, err)
		}
		return out.String()
	}
	if out := run("queue", "list"); !strings.Contains(out, "alice@example.test") || !strings.Contains(out, "1/1") {
		t.Fatalf("queue list:\n%s", out)
	}
	if out := run("queue", "show", "1"); !strings.Contains(out, `"x@remote.test"`) {
		t.Fatalf("queue show:\n%s", out)
	}
	if out := run("queue", "stats"); !strings.Contains(out, `"messages": 1`) {
		t.Fatalf("queue stats:\n%s", out)
	}
	run("queue", "retry", "all")
	run("queue", "bounce", "1", "stuck for good")
	var e raftstore.QueueEntry
	_ = n.View(func(r *raftstore.ReadTx) (err error) { e, err = r.QueueEntry(1); return })
	if r := e.Rcpts[0]; r.State != raftstore.RcptFailed || !r.Report || r.LastReply != "stuck for good" {
		t.Fatalf("after bounce: %+v", r)
	}
	run("queue", "delete", "1")
	if out := run("queue", "list"); strings.Contains(out, "alice@") {
		t.Fatalf("queue list after delete:\n%s", out)
	}
	var out bytes.Buffer
	if err := runAdmin([]string{"--api", api, "queue", "show", "1"}, &out); err == nil {
		t.Fatal("show of a deleted message succeeded")
	}

	for _, algo := range []string{"ed25519", "rsa"} {
		out := run("dkim", "generate", "example.test", "--selector", "s-"+algo, "--algo", algo)
		if !strings.Contains(out, "s-"+algo+"._domainkey.example.test. IN TXT") || !strings.Contains(out, "v=DKIM1; k="+algo+"; p=") {
			t.Fatalf("dkim generate %s:\n%s", algo, out)
		}
	}
	if out := run("dkim", "list"); !strings.Contains(out, "s-rsa._domainkey") || strings.Contains(out, "s-ed25519") {
		t.Fatalf("dkim list (the rsa key replaced the ed25519 one):\n%s", out)
	}
	run("dkim", "del", "example.test")
	if out := run("dkim", "list"); strings.TrimSpace(out) != "" {
		t.Fatalf("dkim list after del:\n%s", out)
	}
}
