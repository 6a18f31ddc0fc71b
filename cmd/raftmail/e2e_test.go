package main

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/raftmail/raftmail/cluster/clustertest"
)

// lmtpSend delivers one message over LMTP and returns the per-recipient
// outcome (nil = 250) or a transport error.
func lmtpSend(addr, from string, rcpts []string, body []byte) (map[string]error, error) {
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
	c := smtp.NewClientLMTP(conn)
	defer c.Close()
	if err := c.Hello("test.local"); err != nil {
		return nil, err
	}
	if err := c.Mail(from, nil); err != nil {
		return nil, err
	}
	out := map[string]error{}
	var ok []string
	for _, r := range rcpts {
		if err := c.Rcpt(r, nil); err != nil {
			out[r] = err
			continue
		}
		ok = append(ok, r)
	}
	if len(ok) == 0 {
		return out, nil
	}
	w, err := c.Data()
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(body); err != nil {
		return nil, err
	}
	err = w.Close()
	var lerr smtp.LMTPDataError
	switch {
	case err == nil:
		for _, r := range ok {
			out[r] = nil
		}
	case errors.As(err, &lerr):
		for _, r := range ok {
			if e, failed := lerr[r]; failed {
				out[r] = e
			} else {
				out[r] = nil
			}
		}
	default:
		return nil, err
	}
	_ = c.Quit()
	return out, nil
}

// storedHash is the content hash of a message as LMTP stores it.
func storedHash(from string, body []byte) string {
	sum := sha256.Sum256(append([]byte("Return-Path: <"+from+">\r\n"), body...))
	return hex.EncodeToString(sum[:])
}

func setupAccounts(pc *procCluster) {
	pc.admin(0, "domain", "add", "example.test")
	pc.admin(0, "user", "add", "alice@example.test", "--password", "pw")
	pc.admin(0, "user", "add", "bob@example.test", "--password", "pw")
}

// TestLeaderKilledTwiceDuringLMTPDeliveries proves invariants 1 and 2 on real
// processes: deliveries stream over LMTP to all nodes while the leader is
// SIGKILLed twice; afterwards every acknowledged delivery is present exactly
// once on every node and all state digests are equal.
func TestLeaderKilledTwiceDuringLMTPDeliveries(t *testing.T) {
	pc := startProcCluster(t, 3)
	setupAccounts(pc)
	const from = "sender@remote.test"
	var (
		mu       sync.Mutex
		acked    = map[string]bool{}
		sent     atomic.Int64
		tempfail atomic.Int64
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for seq := 0; ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				body := []byte(fmt.Sprintf("From: %s\r\nTo: alice@example.test\r\nMessage-ID: <%d.%d@remote.test>\r\nSubject: chaos %d/%d\r\n\r\nbody of %d/%d\r\n",
					from, w, seq, w, seq, w, seq))
				node := pc.nodes[(w+seq)%len(pc.nodes)]
				res, err := lmtpSend(node.lmtp, from, []string{"alice@example.test"}, body)
				sent.Add(1)
				if err != nil || res["alice@example.test"] != nil {
					tempfail.Add(1)
					continue
				}
				mu.Lock()
				acked[storedHash(from, body)] = true
				mu.Unlock()
			}
		}(w)
	}
	pause := func(d time.Duration) { time.Sleep(d) } // the nemesis schedule, not a wait for a condition
	pause(1500 * time.Millisecond)
	for round := 0; round < 2; round++ {
		li := pc.leader()
		t.Logf("killing leader %s", pc.nodes[li].id)
		pc.kill(li)
		pause(2 * time.Second)
		pc.start(li)
		pause(2 * time.Second)
	}
	close(stop)
	wg.Wait()
	digest := pc.waitConverged(60 * time.Second)
	t.Logf("sent %d, acknowledged %d, refused or failed %d, digest %s", sent.Load(), len(acked), tempfail.Load(), digest[:16])
	if len(acked) < 50 {
		t.Fatalf("only %d deliveries acknowledged; the cluster was mostly unavailable", len(acked))
	}
	for i := range pc.nodes {
		count := map[string]int{}
		for _, m := range pc.messages(i, "alice@example.test", "INBOX") {
			count[m.SHA256]++
		}
		for h, n := range count {
			if n > 1 {
				t.Errorf("node %d: message %s stored %d times", i+1, h[:12], n)
			}
		}
		for h := range acked {
			if count[h] != 1 {
				t.Errorf("node %d: acknowledged message %s present %d times", i+1, h[:12], count[h])
			}
		}
	}
}

// TestFollowerCatchesUpFromSnapshot stops a follower, commits 10,000
// deliveries with aggressive log compaction, and restarts it: it must
// restore from a snapshot and end with the same digest.
func TestFollowerCatchesUpFromSnapshot(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 deliveries")
	}
	// The entry trigger alone (no floor relative to the state's size):
	// this test is about catching up, TestSnapshotWaitsForTheStateFloor
	// about the floor.
	pc := startProcCluster(t, 3, "--trailing-logs", "100", "--snapshot-threshold", "500", "--snapshot-interval", "1s",
		"--snapshot-state-percent", "-1")
	setupAccounts(pc)
	li := pc.leader()
	f := (li + 1) % 3
	pc.waitConverged(30 * time.Second)
	st, err := pc.status(f)
	if err != nil {
		t.Fatal(err)
	}
	pc.kill(f)
	const total, workers = 10000, 16
	var next, acked atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for {
				seq := next.Add(1)
				if seq > total {
					return
				}
				body := []byte(fmt.Sprintf("From: s@remote.test\r\nMessage-ID: <%d@remote.test>\r\nSubject: m%d\r\n\r\nmessage %d\r\n", seq, seq, seq))
				for attempt := 0; attempt < 20; attempt++ {
					node := pc.nodes[(w+attempt)%3]
					if node == pc.nodes[f] {
						continue
					}
					res, err := lmtpSend(node.lmtp, "s@remote.test", []string{"bob@example.test"}, body)
					if err == nil && res["bob@example.test"] == nil {
						acked.Add(1)
						break
					}
				}
			}
		}(w)
	}
	wg.Wait()
	t.Logf("%d deliveries acknowledged in %v", acked.Load(), time.Since(start).Round(time.Millisecond))
	if acked.Load() != total {
		t.Fatalf("acknowledged %d of %d", acked.Load(), total)
	}
	clustertest.Eventually(t, 60*time.Second, "a snapshot past the stopped follower's log", func() bool {
		ls, err := pc.status(pc.leader())
		return err == nil && ls.LastSnapshotIndex > st.LastIndex+100
	})
	pc.start(f)
	pc.waitConverged(120 * time.Second)
	logData, _ := os.ReadFile(pc.nodes[f].logPath)
	if !bytes.Contains(logData, []byte("state restored from snapshot")) {
		t.Fatalf("follower %s caught up without restoring a snapshot", pc.nodes[f].id)
	}
	if got := len(pc.messages(f, "bob@example.test", "INBOX")); got != total {
		t.Fatalf("restarted follower has %d messages, want %d", got, total)
	}
}

// TestAdminWriteOnFollower sends admin writes to a follower's API through
// the CLI and checks they take effect on every node.
func TestAdminWriteOnFollower(t *testing.T) {
	pc := startProcCluster(t, 3)
	li := pc.leader()
	f := (li + 1) % 3
	pc.admin(f, "domain", "add", "example.org")
	pc.admin(f, "user", "add", "carol@example.org", "--password", "s3cret", "--quota", "1000000")
	pc.admin(f, "alias", "add", "info@example.org", "carol@example.org")
	// Read-your-writes on the follower itself, at once.
	if out := pc.admin(f, "user", "show", "carol@example.org"); !strings.Contains(out, "quota 1000000") {
		t.Fatalf("follower does not show its own write: %q", out)
	}
	pc.waitConverged(20 * time.Second)
	for i := range pc.nodes {
		if out := pc.admin(i, "alias", "list"); !strings.Contains(out, "info@example.org → carol@example.org") {
			t.Fatalf("node %d alias list: %q", i+1, out)
		}
		if out := pc.admin(i, "user", "list"); !strings.Contains(out, "carol@example.org") {
			t.Fatalf("node %d user list: %q", i+1, out)
		}
	}
	res, err := lmtpSend(pc.nodes[li].lmtp, "x@remote.test", []string{"info@example.org"}, []byte("Subject: via alias\r\n\r\nhi\r\n"))
	if err != nil || res["info@example.org"] != nil {
		t.Fatalf("delivery to the alias: %v %v", err, res)
	}
}

// TestThirtyMiBOverLMTP delivers a 30 MiB message to the real binary.
func TestThirtyMiBOverLMTP(t *testing.T) {
	if testing.Short() {
		t.Skip("large message")
	}
	pc := startProcCluster(t, 3)
	setupAccounts(pc)
	raw := make([]byte, 22<<20)
	_, _ = rand.Read(raw)
	var b bytes.Buffer
	b.WriteString("From: s@remote.test\r\nSubject: big\r\nMIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	enc := base64.StdEncoding.EncodeToString(raw)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
	res, err := lmtpSend(pc.nodes[1].lmtp, "s@remote.test", []string{"alice@example.test"}, b.Bytes())
	if err != nil || res["alice@example.test"] != nil {
		t.Fatalf("%d byte message: %v %v", b.Len(), err, res)
	}
	pc.waitConverged(60 * time.Second)
	for i := range pc.nodes {
		ms := pc.messages(i, "alice@example.test", "INBOX")
		if len(ms) != 1 || ms[0].SHA256 != storedHash("s@remote.test", b.Bytes()) {
			t.Fatalf("node %d: %+v", i+1, ms)
		}
	}
}
