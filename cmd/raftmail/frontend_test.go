package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/raftmail/raftmail/cluster/clustertest"
)

// startFrontend runs an MX frontend process against the cluster.
func (pc *procCluster) startFrontend(t *testing.T) (addr string, cmd *exec.Cmd, done chan struct{}) {
	t.Helper()
	addr = clustertest.FreeAddr(t)
	var nodes []string
	for i := range pc.nodes {
		nodes = append(nodes, pc.url(i))
	}
	logf, err := os.Create(t.TempDir() + "/mx.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command(binary, "frontend", "--profile", "mx", "--listen", addr, "--nodes", strings.Join(nodes, ","),
		"--hostname", "mx.test", "--commit-timeout", "10s", "--max-connections-per-ip", "100")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done = make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-done })
	clustertest.Eventually(t, 10*time.Second, "the frontend to listen", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return addr, cmd, done
}

func smtpSend(addr, from, to string, body []byte) error {
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	c := smtp.NewClient(conn)
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		return err
	}
	return c.SendMail(from, []string{to}, bytes.NewReader(body))
}

// TestFrontendKilledDuringDeliveries SIGKILLs a stateless MX frontend in the
// middle of 1,000 concurrent deliveries: every message that got 250 is
// stored exactly once on every node (the frontend has nothing on disk to
// lose), and none is stored twice.
func TestFrontendKilledDuringDeliveries(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 deliveries")
	}
	pc := startProcCluster(t, 3)
	setupAccounts(pc)
	addr, fe, done := pc.startFrontend(t)
	const total, workers = 1000, 16
	var next, attempted atomic.Int64
	var mu sync.Mutex
	acked := map[int64]bool{}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				seq := next.Add(1)
				if seq > total {
					return
				}
				body := []byte(fmt.Sprintf("From: s@remote.test\r\nTo: alice@example.test\r\nMessage-ID: <%d@remote.test>\r\nSubject: m%d\r\n\r\nmessage %d\r\n", seq, seq, seq))
				attempted.Add(1)
				if err := smtpSend(addr, "s@remote.test", "alice@example.test", body); err == nil {
					mu.Lock()
					acked[seq] = true
					mu.Unlock()
				}
			}
		}()
	}
	clustertest.Eventually(t, 60*time.Second, "a third of the deliveries", func() bool { return next.Load() > total/3 })
	_ = fe.Process.Signal(syscall.SIGKILL)
	<-done
	wg.Wait()
	pc.waitConverged(30 * time.Second)
	t.Logf("%d attempted, %d acknowledged before and after the kill", attempted.Load(), len(acked))
	if len(acked) == 0 || len(acked) == total {
		t.Fatalf("the kill did not land mid-run: %d of %d acknowledged", len(acked), total)
	}
	// Identify each stored message by its Message-ID through the raw API.
	for i := range pc.nodes {
		seen := map[int64]int{}
		for _, m := range pc.messages(i, "alice@example.test", "INBOX") {
			raw := string(pc.raw(i, "alice@example.test", "INBOX", int(m.UID)))
			var seq int64
			if k := strings.Index(raw, "Message-ID: <"); k >= 0 {
				fmt.Sscanf(raw[k:], "Message-ID: <%d@", &seq)
			}
			seen[seq]++
		}
		for seq, n := range seen {
			if n > 1 {
				t.Errorf("node %d: message %d stored %d times", i+1, seq, n)
			}
		}
		for seq := range acked {
			if seen[seq] != 1 {
				t.Errorf("node %d: acknowledged message %d stored %d times", i+1, seq, seen[seq])
			}
		}
	}
}
