package compare

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
	"time"

	"github.com/raftmail/raftmail/bench"
	"github.com/raftmail/raftmail/cluster"
)

// process is one child process of the comparison.
type process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

func startProcess(name, logPath, bin string, args ...string) (*process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); logf.Close(); close(p.done) }()
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

// stop sends SIGTERM and, after grace, SIGKILL to the process.
func (p *process) stop(grace time.Duration) {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// killGroup kills whatever is left in the process's group (it was
// started with a group of its own).
func (p *process) killGroup() { _ = syscall.Kill(-p.pid(), syscall.SIGKILL) }

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// freePort returns a loopback address nobody listens on right now.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// raftmailNode is one node process and its addresses.
type raftmailNode struct {
	*process
	api, lmtp, imap, pop3 string
}

// raftmailSystem is the 3-node cluster plus three MX frontends, all real
// processes of the built binary: two with the default filters (feAddrs)
// and one with only the checks of the SMTP frontend issue (leanAddr).
type raftmailSystem struct {
	nodes     []*raftmailNode
	frontends []*process
	feAddrs   []string
	leanAddr  string
	client    *cluster.Client
}

// leanFilters is the filters file of the lean frontend: no content
// checks. The frontend still adds its size, rate-limit and deny-list
// checks from flags to every profile, and validates recipients and
// refuses relaying itself: the pipeline of issue 3, before the content
// filters of issue 6 joined the default mx profile.
const leanFilters = `# raftmail bench: the frontend's own checks only
[profiles.mx]
checks = []

[profiles.submission]
checks = []
`

// leanNote says in the report what the lean frontend checks.
const leanNote = `The "no content filters" frontend has an empty mx profile: only the frontend's own relay, recipient, size, rate-limit and deny-list checks`

// startRaftmail starts three nodes (fsync on: the default) and three MX
// frontends under dir.
func startRaftmail(ctx context.Context, bin, dir string, idleConns int, pprof func(name, listenFlag string) []string) (*raftmailSystem, error) {
	s := &raftmailSystem{client: cluster.NewClient("")}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return s, err
	}
	var apis []string
	for i := 1; i <= 3; i++ {
		var addrs [5]string
		for k := range addrs {
			a, err := freePort()
			if err != nil {
				return s, err
			}
			addrs[k] = a
		}
		args := []string{"node", "--id", fmt.Sprintf("n%d", i), "--data", filepath.Join(dir, fmt.Sprintf("n%d", i)),
			"--raft", addrs[0], "--http", addrs[1], "--lmtp", addrs[2], "--imap", addrs[3], "--pop3", addrs[4],
			"--dev", "--log-level", "warn", "--hostname", fmt.Sprintf("n%d.bench", i),
			"--imap-max-conns", fmt.Sprint(idleConns + 1000), "--imap-max-conns-per-ip", fmt.Sprint(idleConns + 1000),
			// every load comes from 127.0.0.1: the per-IP default (64) would refuse c > 192
			"--lmtp-max-conns", "1024", "--lmtp-max-conns-per-ip", "1024"}
		args = append(args, pprof(fmt.Sprintf("n%d", i), "--metrics")...)
		if i == 1 {
			args = append(args, "--bootstrap")
		} else {
			args = append(args, "--join", apis[0])
		}
		p, err := startProcess(fmt.Sprintf("n%d", i), filepath.Join(dir, fmt.Sprintf("n%d.log", i)), bin, args...)
		if err != nil {
			return s, err
		}
		api := "http://" + addrs[1]
		apis = append(apis, api)
		s.nodes = append(s.nodes, &raftmailNode{process: p, api: api, lmtp: addrs[2], imap: addrs[3], pop3: addrs[4]})
		if i == 1 {
			if err := s.waitMembers(ctx, 1); err != nil {
				return s, err
			}
		}
	}
	if err := s.waitMembers(ctx, 3); err != nil {
		return s, err
	}
	lean := filepath.Join(dir, "lean-filters.toml")
	if err := os.WriteFile(lean, []byte(leanFilters), 0o600); err != nil {
		return s, err
	}
	startFE := func(i int, extra ...string) (string, error) {
		addr, err := freePort()
		if err != nil {
			return "", err
		}
		name := fmt.Sprintf("mx%d", i)
		args := append([]string{"frontend",
			"--profile", "mx", "--listen", addr, "--nodes", apis[0] + "," + apis[1] + "," + apis[2], "--dev",
			"--hostname", name + ".bench", "--log-level", "warn", "--max-connections-per-ip", "1000"}, extra...)
		args = append(args, pprof(name, "--http")...)
		p, err := startProcess(name, filepath.Join(dir, name+".log"), bin, args...)
		if err != nil {
			return "", err
		}
		s.frontends = append(s.frontends, p)
		return addr, nil
	}
	for i := 1; i <= 2; i++ {
		addr, err := startFE(i)
		if err != nil {
			return s, err
		}
		s.feAddrs = append(s.feAddrs, addr)
	}
	leanAddr, err := startFE(3, "--filters", lean)
	if err != nil {
		return s, err
	}
	s.leanAddr = leanAddr
	for _, a := range append([]string{s.leanAddr}, s.feAddrs...) {
		if err := waitListen(ctx, a); err != nil {
			return s, fmt.Errorf("frontend %s: %w", a, err)
		}
	}
	return s, nil
}

func waitListen(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("nothing listens on %s: %w", addr, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitMembers waits until node 1 reports a leader and n servers.
func (s *raftmailSystem) waitMembers(ctx context.Context, n int) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var last error
	for {
		for _, nd := range s.nodes {
			if nd.exited() {
				return fmt.Errorf("node %s exited (see its log)", nd.name)
			}
		}
		st, err := s.client.Status(ctx, s.nodes[0].api)
		if err == nil && st.LeaderAPI != "" && len(st.Servers) >= n {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster of %d did not form: %v", n, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// leaderFollower returns the index of the leader and of one follower.
func (s *raftmailSystem) leaderFollower(ctx context.Context) (leader, follower int, err error) {
	leader, follower = -1, -1
	for i, nd := range s.nodes {
		st, err := s.client.Status(ctx, nd.api)
		if err != nil {
			return -1, -1, err
		}
		switch st.State {
		case "Leader":
			leader = i
		case "Follower":
			follower = i
		}
	}
	if leader < 0 || follower < 0 {
		return -1, -1, errors.New("no leader or no follower")
	}
	return leader, follower, nil
}

// addUsers creates the domains and accounts (argon2id hashing on the
// nodes, conc at a time).
func (s *raftmailSystem) addUsers(ctx context.Context, domains []string, users []bench.Cred) error {
	api := s.nodes[0].api
	for _, d := range domains {
		if err := s.client.Do(ctx, http.MethodPost, api, "/admin/domains", map[string]string{"name": d}, nil); err != nil {
			return fmt.Errorf("add domain %s: %w", d, err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(users))
	sem := make(chan struct{}, 6)
	for i, u := range users {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			err := s.client.Do(ctx, http.MethodPost, s.nodes[i%3].api, "/admin/accounts",
				map[string]any{"address": u.User, "password": u.Pass}, nil)
			if err != nil {
				errs <- fmt.Errorf("add %s: %w", u.User, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// trainBayes trains the cluster's Bayes model on the corpus's spam/ and
// ham/ folders with "raftmail admin bayes train", so that the MX
// frontends classify every message as they would in service (an
// untrained model skips the classification). It returns the filter line
// of the report; a corpus without those folders leaves the model
// untrained, and the line says so.
func (s *raftmailSystem) trainBayes(ctx context.Context, bin, corpus string, logf func(string, ...any)) string {
	const checks = "the default mx profile: rules, Bayes (counts from the nodes, cached), clamd if it answers (none here); DNS checks off"
	spam, ham := filepath.Join(corpus, "spam"), filepath.Join(corpus, "ham")
	for _, d := range []string{spam, ham} {
		if st, err := os.Stat(d); err != nil || !st.IsDir() {
			logf("bayes: no %s; the model stays untrained", d)
			return checks + "; Bayes untrained (no corpus folders), so it does not classify"
		}
	}
	start := time.Now()
	cmd := exec.CommandContext(ctx, bin, "admin", "--api", s.nodes[0].api, "bayes", "train", "--spam", spam, "--ham", ham)
	if out, err := cmd.CombinedOutput(); err != nil {
		logf("bayes: training failed: %v: %s", err, strings.TrimSpace(string(out)))
		return checks + "; Bayes untrained (training failed), so it does not classify"
	}
	logf("bayes: trained on %s and %s in %v", spam, ham, time.Since(start).Round(time.Millisecond))
	return checks + "; Bayes trained on the corpus (`raftmail admin bayes train`), so it classifies every message"
}

// lmtpAddrs are the nodes' LMTP addresses.
func (s *raftmailSystem) lmtpAddrs() []string {
	var out []string
	for _, n := range s.nodes {
		out = append(out, n.lmtp)
	}
	return out
}

// pids are every raftmail process (nodes and frontends).
func (s *raftmailSystem) pids() []int {
	var out []int
	for _, n := range s.nodes {
		out = append(out, n.pid())
	}
	for _, f := range s.frontends {
		out = append(out, f.pid())
	}
	return out
}

func (s *raftmailSystem) stop() {
	for _, f := range s.frontends {
		f.stop(10 * time.Second)
	}
	for i := len(s.nodes) - 1; i >= 0; i-- {
		s.nodes[i].stop(15 * time.Second)
	}
	s.client.Close()
}
