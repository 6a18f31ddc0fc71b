package chaos

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/raftmail/raftmail/cluster"
)

// chaosDomain and the accounts the workloads use.
const (
	chaosDomain = "chaos.test"
	password    = "chaos-password"
)

// nodeProc is one mailbox node process and its addresses.
type nodeProc struct {
	*child
	api   string // http://host:port
	imaps string // host:port
}

// frontProc is one MX frontend process.
type frontProc struct {
	*child
	addr string
}

// harness is one running test cluster.
type harness struct {
	cfg         Config
	logger      *slog.Logger
	out         io.Writer
	net         *network // nil: loopback processes, no partitions
	noNetReason string
	token       string
	client      *cluster.Client
	nodes       []*nodeProc
	fronts      []*frontProc
	accounts    []string
}

func (h *harness) printf(format string, args ...any) { fmt.Fprintf(h.out, format, args...) }

// freePort returns a free loopback address.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// nodeAddrs returns node i's raft, API and IMAPS listen addresses.
func (h *harness) nodeAddrs(i int) (raft, api, imaps string, err error) {
	if h.net != nil {
		ip := h.net.NodeIP(i)
		return ip + ":7000", ip + ":8080", ip + ":9930", nil
	}
	var addrs [3]string
	for k := range addrs {
		if addrs[k], err = freePort(); err != nil {
			return "", "", "", err
		}
	}
	return addrs[0], addrs[1], addrs[2], nil
}

// startCluster starts the nodes (n1 bootstraps, the others join it), waits
// for a leader with every member, creates the domain and accounts, then
// starts the frontends.
func (h *harness) startCluster(ctx context.Context) error {
	tok := make([]byte, 16)
	_, _ = rand.Read(tok)
	h.token = hex.EncodeToString(tok)
	h.client = cluster.NewClient(h.token)
	for i := 0; i < 3; i++ {
		raft, api, imaps, err := h.nodeAddrs(i)
		if err != nil {
			return err
		}
		id := fmt.Sprintf("n%d", i+1)
		argv := []string{h.cfg.Binary, "node", "--id", id, "--data", filepath.Join(h.cfg.Dir, id),
			"--raft", raft, "--http", api, "--imaps", imaps, "--dev", "--token", h.token,
			"--commit-timeout", h.cfg.CommitTimeout.String(),
			"--heartbeat-timeout", h.cfg.HeartbeatTimeout.String(),
			"--election-timeout", h.cfg.ElectionTimeout.String(),
			"--leader-lease", h.cfg.LeaderLease.String()}
		if i == 0 {
			argv = append(argv, "--bootstrap")
		} else {
			argv = append(argv, "--join", h.nodes[0].api)
		}
		if h.net != nil {
			argv = h.net.Wrap(i, argv)
		}
		n := &nodeProc{child: &child{name: id, argv: argv, logPath: filepath.Join(h.cfg.Dir, id+".log")},
			api: "http://" + api, imaps: imaps}
		h.nodes = append(h.nodes, n)
		if err := n.start(); err != nil {
			return err
		}
	}
	if err := h.waitMembers(ctx, 60*time.Second); err != nil {
		return err
	}
	if err := h.setupAccounts(ctx); err != nil {
		return err
	}
	return h.startFrontends(ctx)
}

func (h *harness) startFrontends(ctx context.Context) error {
	var apis []string
	for _, n := range h.nodes {
		apis = append(apis, n.api)
	}
	for i := 0; i < 2; i++ {
		addr, err := freePort()
		if err != nil {
			return err
		}
		name := fmt.Sprintf("mx%d", i+1)
		argv := []string{h.cfg.Binary, "frontend", "--profile", "mx", "--listen", addr, "--nodes", strings.Join(apis, ","),
			"--token", h.token, "--hostname", name + "." + chaosDomain, "--commit-timeout", h.cfg.CommitTimeout.String(),
			"--max-connections-per-ip", "1000", "--max-message-bytes", fmt.Sprint(maxMessageBytes)}
		fe := &frontProc{child: &child{name: name, argv: argv, logPath: filepath.Join(h.cfg.Dir, name+".log")}, addr: addr}
		h.fronts = append(h.fronts, fe)
		if err := fe.start(); err != nil {
			return err
		}
		if err := waitListen(ctx, addr, 20*time.Second); err != nil {
			return fmt.Errorf("frontend %s: %w (see %s)", name, err, fe.logPath)
		}
	}
	return nil
}

func waitListen(ctx context.Context, addr string, d time.Duration) error {
	return poll(ctx, d, func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
}

// poll calls f every 200 ms until it succeeds or d passes.
func poll(ctx context.Context, d time.Duration, f func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (h *harness) status(ctx context.Context, i int) (cluster.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return h.client.Status(ctx, h.nodes[i].api)
}

func (h *harness) waitMembers(ctx context.Context, d time.Duration) error {
	err := poll(ctx, d, func() error {
		for i := range h.nodes {
			st, err := h.status(ctx, i)
			if err != nil {
				return err
			}
			if st.LeaderAPI == "" || len(st.Servers) != len(h.nodes) {
				return fmt.Errorf("node %s: leader %q, %d servers", st.ID, st.LeaderID, len(st.Servers))
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("cluster did not form (see %s): %w", h.cfg.Dir, err)
	}
	return nil
}

// leader returns the index of the node that says it leads, waiting up to
// 10 s; if none does, node 0.
func (h *harness) leader(ctx context.Context) int {
	li := 0
	_ = poll(ctx, 10*time.Second, func() error {
		for i := range h.nodes {
			if st, err := h.status(ctx, i); err == nil && st.State == "Leader" {
				li = i
				return nil
			}
		}
		return errors.New("no leader")
	})
	return li
}

func (h *harness) setupAccounts(ctx context.Context) error {
	do := func(path string, body any) error {
		return poll(ctx, 30*time.Second, func() error {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			err := h.client.Do(cctx, http.MethodPost, h.nodes[0].api, path, body, nil)
			var ae *cluster.APIError
			if errors.As(err, &ae) && ae.Status == http.StatusConflict {
				return nil
			}
			return err
		})
	}
	if err := do("/admin/domains", map[string]string{"name": chaosDomain}); err != nil {
		return fmt.Errorf("create domain: %w", err)
	}
	for i := 0; i < h.cfg.Accounts; i++ {
		a := fmt.Sprintf("u%d@%s", i+1, chaosDomain)
		if err := do("/admin/accounts", map[string]any{"address": a, "password": password}); err != nil {
			return fmt.Errorf("create %s: %w", a, err)
		}
		h.accounts = append(h.accounts, a)
	}
	return nil
}

func (h *harness) restartNode(i int) { h.restartChild(h.nodes[i].child) }

// restartChild starts a stopped process again, retrying a few times (a
// port may linger for a moment after a kill).
func (h *harness) restartChild(c *child) {
	for try := 0; try < 5; try++ {
		err := c.start()
		if err == nil {
			return
		}
		h.logger.Warn("restart", "proc", c.name, "err", err)
		time.Sleep(time.Second)
	}
}

// reviveAll resumes paused processes and restarts dead ones.
func (h *harness) reviveAll() {
	for _, n := range h.nodes {
		n.signal(syscall.SIGCONT)
		if !n.running() {
			h.restartChild(n.child)
		}
	}
	for _, f := range h.fronts {
		if !f.running() {
			h.restartChild(f.child)
		}
	}
}

// stopAll stops every child process.
func (h *harness) stopAll() {
	for _, f := range h.fronts {
		f.stop()
	}
	for _, n := range h.nodes {
		n.stop()
	}
	if h.client != nil {
		h.client.Close()
	}
}

// converge waits until every node reports the same applied index and
// digest, and returns the digests it last saw.
func (h *harness) converge(ctx context.Context, d time.Duration) ([]NodeDigest, error) {
	var last []NodeDigest
	err := poll(ctx, d, func() error {
		last = last[:0]
		for _, n := range h.nodes {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			dg, err := h.client.Digest(cctx, n.api)
			cancel()
			nd := NodeDigest{Node: n.name, AppliedIndex: dg.AppliedIndex, Digest: dg.Digest}
			if err != nil {
				nd.Err = err.Error()
			}
			last = append(last, nd)
		}
		for _, nd := range last {
			if nd.Err != "" {
				return errors.New(nd.Err)
			}
			if nd.Digest != last[0].Digest || nd.AppliedIndex != last[0].AppliedIndex {
				return fmt.Errorf("node %s at %d, node %s at %d", nd.Node, nd.AppliedIndex, last[0].Node, last[0].AppliedIndex)
			}
		}
		return nil
	})
	return last, err
}
