package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/raftmail/raftmail/cluster"
	"github.com/raftmail/raftmail/cluster/clustertest"
)

// binary is the raftmail executable built once for the process tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "raftmail-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "raftmail")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build raftmail:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// procNode is one "raftmail node" process.
type procNode struct {
	id, dir, raft, api, lmtp string
	imap, pop3               string
	args                     []string
	logPath                  string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// procCluster is a cluster of real node processes on 127.0.0.1.
type procCluster struct {
	t      *testing.T
	nodes  []*procNode
	client *cluster.Client
}

func startProcCluster(t *testing.T, n int, extra ...string) *procCluster {
	t.Helper()
	pc := &procCluster{t: t, client: cluster.NewClient("")}
	base := t.TempDir()
	for i := 0; i < n; i++ {
		nd := &procNode{id: fmt.Sprintf("n%d", i+1), dir: filepath.Join(base, fmt.Sprintf("n%d", i+1))}
		nd.logPath = nd.dir + ".log"
		pc.nodes = append(pc.nodes, nd)
		// A free port can be taken by a parallel test between our probe and
		// the child's bind: pick new ports and start again if that happens.
		for attempt := 0; ; attempt++ {
			nd.raft, nd.api, nd.lmtp = clustertest.FreeAddr(t), clustertest.FreeAddr(t), clustertest.FreeAddr(t)
			nd.imap, nd.pop3 = clustertest.FreeAddr(t), clustertest.FreeAddr(t)
			nd.args = append([]string{"node", "--id", nd.id, "--data", nd.dir, "--raft", nd.raft, "--http", nd.api,
				"--lmtp", nd.lmtp, "--imap", nd.imap, "--pop3", nd.pop3, "--dev", "--commit-timeout", "10s"}, extra...)
			if i == 0 {
				nd.args = append(nd.args, "--bootstrap")
			} else {
				nd.args = append(nd.args, "--join", "http://"+pc.nodes[0].api)
			}
			pc.start(i)
			if pc.waitListening(i) || attempt == 3 {
				break
			}
			t.Logf("%s lost a port race, starting it on other ports", nd.id)
		}
	}
	t.Cleanup(pc.stopAll)
	pc.waitMembers(n)
	return pc
}

// waitListening waits until node i answers /healthz; false if the process
// exited first because a port was taken.
func (pc *procCluster) waitListening(i int) bool {
	nd := pc.nodes[i]
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-nd.done:
			b, _ := os.ReadFile(nd.logPath)
			if !strings.Contains(string(b), "address already in use") {
				pc.t.Fatalf("%s exited at start:\n%s", nd.id, b)
			}
			return false
		default:
		}
		if _, err := pc.status(i); err == nil {
			return true
		}
		time.Sleep(20 * time.Millisecond) // poll the child's API
	}
	pc.t.Fatalf("%s did not start listening within 20s", nd.id)
	return false
}

func (pc *procCluster) start(i int) {
	pc.t.Helper()
	nd := pc.nodes[i]
	logf, err := os.OpenFile(nd.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		pc.t.Fatal(err)
	}
	cmd := exec.Command(binary, nd.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		pc.t.Fatalf("start %s: %v", nd.id, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	nd.mu.Lock()
	nd.cmd, nd.done = cmd, done
	nd.mu.Unlock()
}

// kill sends SIGKILL to node i and waits for it to die.
func (pc *procCluster) kill(i int) {
	nd := pc.nodes[i]
	nd.mu.Lock()
	cmd, done := nd.cmd, nd.done
	nd.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

func (pc *procCluster) stopAll() {
	for _, nd := range pc.nodes {
		nd.mu.Lock()
		if nd.cmd != nil {
			_ = nd.cmd.Process.Signal(syscall.SIGTERM)
		}
		nd.mu.Unlock()
	}
	for i, nd := range pc.nodes {
		select {
		case <-nd.done:
		case <-time.After(10 * time.Second):
			pc.kill(i)
		}
	}
	pc.client.Close()
	if pc.t.Failed() {
		for _, nd := range pc.nodes {
			if b, err := os.ReadFile(nd.logPath); err == nil {
				lines := strings.Split(string(b), "\n")
				if len(lines) > 40 {
					lines = lines[len(lines)-40:]
				}
				pc.t.Logf("--- last log lines of %s ---\n%s", nd.id, strings.Join(lines, "\n"))
			}
		}
	}
}

func (pc *procCluster) url(i int) string { return "http://" + pc.nodes[i].api }

func (pc *procCluster) status(i int) (cluster.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return pc.client.Status(ctx, pc.url(i))
}

func (pc *procCluster) waitMembers(n int) {
	pc.t.Helper()
	clustertest.Eventually(pc.t, 30*time.Second, "members with a known leader", func() bool {
		for i := range pc.nodes {
			st, err := pc.status(i)
			if err != nil || st.LeaderAPI == "" || len(st.Servers) != n {
				return false
			}
		}
		return true
	})
}

// leader returns the index of the node that reports itself leader.
func (pc *procCluster) leader() int {
	pc.t.Helper()
	li := -1
	clustertest.Eventually(pc.t, 30*time.Second, "a leader", func() bool {
		for i := range pc.nodes {
			if st, err := pc.status(i); err == nil && st.State == "Leader" {
				li = i
				return true
			}
		}
		return false
	})
	return li
}

// waitConverged waits until every node reports the same applied index and
// digest, and returns the digest.
func (pc *procCluster) waitConverged(timeout time.Duration) string {
	pc.t.Helper()
	var digest string
	clustertest.Eventually(pc.t, timeout, "equal digests on every node", func() bool {
		var first cluster.DigestAnswer
		for i := range pc.nodes {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			d, err := pc.client.Digest(ctx, pc.url(i))
			cancel()
			if err != nil {
				return false
			}
			if i == 0 {
				first = d
			} else if d.Digest != first.Digest || d.AppliedIndex != first.AppliedIndex {
				return false
			}
		}
		digest = first.Digest
		return true
	})
	return digest
}

func (pc *procCluster) admin(i int, args ...string) string {
	pc.t.Helper()
	var out strings.Builder
	if err := runAdmin(append([]string{"--api", pc.url(i)}, args...), &out); err != nil {
		pc.t.Fatalf("admin %v: %v", args, err)
	}
	return out.String()
}

// messages lists a mailbox on node i through the admin API.
func (pc *procCluster) messages(i int, acct, mailbox string) []cluster.MessageView {
	pc.t.Helper()
	var out []cluster.MessageView
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := pc.client.Do(ctx, http.MethodGet, pc.url(i), "/admin/accounts/"+acct+"/mailboxes/"+mailbox+"/messages", nil, &out)
	if err != nil {
		pc.t.Fatalf("list %s/%s on node %d: %v", acct, mailbox, i+1, err)
	}
	return out
}

func isConnErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
}
