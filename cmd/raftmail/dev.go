package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/raftmail/raftmail/cluster"
	"github.com/raftmail/raftmail/raftstore/command"
)

// devChild is one child process of "raftmail dev".
type devChild struct {
	name string
	args []string
	log  string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// devPorts are the fixed local ports of node i (1..3).
func devNodeArgs(data string, i int, bootstrap bool) []string {
	args := []string{"node",
		"--id", fmt.Sprintf("n%d", i),
		"--data", filepath.Join(data, fmt.Sprintf("n%d", i)),
		"--raft", fmt.Sprintf("127.0.0.1:700%d", i),
		"--http", fmt.Sprintf("127.0.0.1:808%d", i),
		"--lmtp", fmt.Sprintf("127.0.0.1:240%d", i),
		"--imap", fmt.Sprintf("127.0.0.1:143%d", i),
		"--pop3", fmt.Sprintf("127.0.0.1:110%d", i),
		"--dev",
	}
	if bootstrap {
		return append(args, "--bootstrap")
	}
	return append(args, "--join", "http://127.0.0.1:8081")
}

func runDev(args []string) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	data := fs.String("data", "./data", "data directory (reused by the next run)")
	resolver := fs.String("resolver", "", "DNS server for the nodes' outbound MX lookups, host:port (default: /etc/resolv.conf)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own binary: %w", err)
	}
	if err := os.MkdirAll(*data, 0o700); err != nil {
		return err
	}
	abs, _ := filepath.Abs(*data)
	var children []*devChild
	for i := 1; i <= 3; i++ {
		children = append(children, &devChild{
			name: fmt.Sprintf("n%d", i),
			args: append(devNodeArgs(*data, i, i == 1), resolverArgs(*resolver)...),
			log:  filepath.Join(abs, fmt.Sprintf("n%d.log", i)),
		})
	}
	tlsDir := filepath.Join(abs, "tls")
	if _, err := loadTLS("", "", true, tlsDir); err != nil {
		return err
	}
	cert, key := filepath.Join(tlsDir, "cert.pem"), filepath.Join(tlsDir, "key.pem")
	nodes := "http://127.0.0.1:8081,http://127.0.0.1:8082,http://127.0.0.1:8083"
	for _, fe := range []struct{ name, profile, listen, tlsListen string }{
		{"mx", "mx", "127.0.0.1:2525", ""},
		{"submission", "submission", "127.0.0.1:5870", "127.0.0.1:4650"},
	} {
		args := []string{"frontend", "--profile", fe.profile, "--listen", fe.listen, "--nodes", nodes,
			"--dev", "--hostname", "localhost", "--tls-cert", cert, "--tls-key", key}
		if fe.tlsListen != "" {
			args = append(args, "--tls-listen", fe.tlsListen)
		}
		children = append(children, &devChild{name: fe.name, args: args, log: filepath.Join(abs, fe.name+".log")})
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	for _, c := range children {
		if err := c.start(exe); err != nil {
			stopAll(children)
			return err
		}
	}
	if err := devSetup(ctx); err != nil {
		stopAll(children)
		return err
	}
	printDevInfo(exe, abs, children)
	fmt.Println("ready")
	go watchChildren(ctx, exe, children)
	<-ctx.Done()
	fmt.Println("stopping every child…")
	stopAll(children)
	return nil
}

func (c *devChild) start(exe string) error {
	logf, err := os.OpenFile(c.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(exe, c.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Own process group: Ctrl-C reaches dev, which stops children in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", c.name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	c.mu.Lock()
	c.cmd, c.done = cmd, done
	c.mu.Unlock()
	return nil
}

// watchChildren reports a child that died and how to restart it.
func watchChildren(ctx context.Context, exe string, children []*devChild) {
	for _, c := range children {
		go func(c *devChild) {
			for {
				c.mu.Lock()
				done, cmd := c.done, c.cmd
				c.mu.Unlock()
				select {
				case <-ctx.Done():
					return
				case <-done:
				}
				if ctx.Err() != nil {
					return
				}
				fmt.Printf("%s exited (%v); restart it with:\n  %s %s\n", c.name, cmd.ProcessState, exe, strings.Join(c.args, " "))
				return
			}
		}(c)
	}
}

func stopAll(children []*devChild) {
	for _, c := range children {
		c.mu.Lock()
		if c.cmd != nil && c.cmd.Process != nil {
			_ = c.cmd.Process.Signal(syscall.SIGTERM)
		}
		c.mu.Unlock()
	}
	deadline := time.After(15 * time.Second)
	for _, c := range children {
		c.mu.Lock()
		done, cmd := c.done, c.cmd
		c.mu.Unlock()
		if done == nil {
			continue
		}
		select {
		case <-done:
		case <-deadline:
			_ = cmd.Process.Kill()
			<-done
		}
	}
}

// devSetup waits for the cluster, creates the demo domain and accounts if
// missing, and proves that a write commits.
func devSetup(ctx context.Context) error {
	c := cluster.NewClient("")
	defer c.Close()
	api := "http://127.0.0.1:8081"
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		st, err := c.Status(ctx, api)
		if err == nil && st.LeaderAPI != "" && len(st.Servers) == 3 {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster did not form within a minute (see the node logs): last error %v", err)
		case <-time.After(200 * time.Millisecond):
		}
	}
	if err := c.Do(ctx, http.MethodPost, api, "/admin/domains", map[string]string{"name": "example.test"}, nil); err != nil {
		return fmt.Errorf("create domain: %w", err)
	}
	for _, u := range []string{"alice@example.test", "bob@example.test"} {
		err := c.Do(ctx, http.MethodPost, api, "/admin/accounts", map[string]any{"address": u, "password": "password"}, nil)
		var ae *cluster.APIError
		if err != nil && !(errors.As(err, &ae) && ae.Code == "acct_exists") {
			return fmt.Errorf("create %s: %w", u, err)
		}
	}
	data, err := command.Marshal(&command.Command{Key: command.NewKey(), Payload: &command.Noop{}})
	if err != nil {
		return err
	}
	if _, err := c.Commit(ctx, api, data); err != nil {
		return fmt.Errorf("probe commit: %w", err)
	}
	for _, addr := range []string{"127.0.0.1:2525", "127.0.0.1:5870", "127.0.0.1:4650"} {
		for {
			conn, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				conn.Close()
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("frontend on %s did not start (see data/mx.log, data/submission.log): %v", addr, err)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

func printDevInfo(exe, data string, children []*devChild) {
	fmt.Printf("raftmail dev: 3 nodes, data in %s\n\n", data)
	fmt.Println("  node  raft            api                    lmtp            imap            pop3            log")
	for i, c := range children[:3] {
		n := i + 1
		fmt.Printf("  n%d    127.0.0.1:700%d  http://127.0.0.1:808%d  127.0.0.1:240%d  127.0.0.1:143%d  127.0.0.1:110%d  %s\n", n, n, n, n, n, n, c.log)
	}
	fmt.Println()
	fmt.Printf("  SMTP MX frontend:         127.0.0.1:2525 (STARTTLS)                log %s\n", children[3].log)
	fmt.Printf("  SMTP submission frontend: 127.0.0.1:5870 (STARTTLS), 127.0.0.1:4650 (TLS), AUTH   log %s\n", children[4].log)
	fmt.Printf("  self-signed certificate:  %s\n", filepath.Join(data, "tls", "cert.pem"))
	fmt.Println()
	fmt.Println("  accounts: alice@example.test, bob@example.test (password \"password\")")
	fmt.Println("  try:      swaks --server 127.0.0.1:2525 --to alice@example.test")
	fmt.Println("            swaks --server 127.0.0.1:5870 -tls --auth PLAIN --auth-user alice@example.test --auth-password password --from alice@example.test --to bob@example.test")
	fmt.Println("            swaks --server 127.0.0.1:2401 --protocol LMTP --to alice@example.test")
	fmt.Println("            curl imap://127.0.0.1:1432/INBOX -u alice@example.test:password -X 'FETCH 1 BODY[]'")
	fmt.Println("            curl pop3://127.0.0.1:1103/1 -u alice@example.test:password")
	fmt.Printf("            %s admin user show alice@example.test\n", exe)
	fmt.Printf("            %s cluster status\n\n", exe)
	fmt.Println("  restart a killed child with:")
	for _, c := range children {
		fmt.Printf("    %s %s\n", exe, strings.Join(c.args, " "))
	}
	fmt.Println()
}
