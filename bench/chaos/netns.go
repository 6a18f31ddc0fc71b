package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// nsPrefix starts the name of every network namespace the harness makes;
// the harness's pid follows, so leftovers of a dead run can be told from a
// live run's.
const nsPrefix = "rmchaos-"

// network is the harness's own test network: one namespace per node, each
// with a veth into a bridge that lives in a "switch" namespace of its own
// (so the host's FORWARD policy, often DROP under Docker, never sees the
// bridged traffic), and one veth from the host into the switch so the
// frontends and the workload reach every node. Addresses come from
// 10.213.K.0/24, K picked so no address on the host overlaps.
//
//	host 10.213.K.1 ── switch(br0) ── n1 10.213.K.11, n2 .12, n3 .13
type network struct {
	id     string // "rmchaos-<pid>"
	prefix string // "10.213.K."
	hostIf string
	nodes  int
	netem  bool
	logger *slog.Logger
}

// ipCmd runs a command (ip, iptables, tc), returning its output in the
// error.
func ipCmd(ctx context.Context, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// inNS runs a command inside namespace ns.
func inNS(ctx context.Context, ns string, args ...string) error {
	return ipCmd(ctx, "ip", append([]string{"netns", "exec", ns}, args...)...)
}

// netnsSupport reports why namespaces cannot be used here ("" if they can).
func netnsSupport() string {
	if os.Geteuid() != 0 {
		return "not root"
	}
	for _, tool := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			return tool + " not installed"
		}
	}
	return ""
}

// setupNetwork makes the namespaces, the switch and the links. On error
// everything made so far is removed.
func setupNetwork(ctx context.Context, nodes int, logger *slog.Logger) (*network, error) {
	sweepStale(ctx, logger)
	k, err := freeOctet(ctx)
	if err != nil {
		return nil, err
	}
	pid := os.Getpid()
	nw := &network{id: fmt.Sprintf("%s%d", nsPrefix, pid), prefix: fmt.Sprintf("10.213.%d.", k),
		hostIf: fmt.Sprintf("rmc%d", pid), nodes: nodes, logger: logger}
	if err := nw.build(ctx); err != nil {
		nw.Close()
		return nil, err
	}
	nw.netem = inNS(ctx, nw.ns(0), "tc", "qdisc", "add", "dev", "eth0", "root", "netem", "delay", "1ms") == nil
	if nw.netem {
		_ = inNS(ctx, nw.ns(0), "tc", "qdisc", "del", "dev", "eth0", "root")
	}
	return nw, nil
}

func (nw *network) sw() string      { return nw.id + "-sw" }
func (nw *network) ns(i int) string { return fmt.Sprintf("%s-n%d", nw.id, i+1) }

// HostIP is the host's address on the test network.
func (nw *network) HostIP() string { return nw.prefix + "1" }

// NodeIP is node i's address.
func (nw *network) NodeIP(i int) string { return fmt.Sprintf("%s%d", nw.prefix, 11+i) }

// Wrap runs argv inside node i's namespace ("ip netns exec" execs, so the
// pid is the node's own and signals reach it directly).
func (nw *network) Wrap(i int, argv []string) []string {
	return append([]string{"ip", "netns", "exec", nw.ns(i)}, argv...)
}

func (nw *network) build(ctx context.Context) error {
	sw := nw.sw()
	steps := [][]string{
		{"netns", "add", sw},
		{"-n", sw, "link", "add", "br0", "type", "bridge"},
		{"-n", sw, "link", "set", "br0", "up"},
		{"link", "add", nw.hostIf, "type", "veth", "peer", "name", "up0", "netns", sw},
		{"-n", sw, "link", "set", "up0", "master", "br0", "up"},
		{"addr", "add", nw.HostIP() + "/24", "dev", nw.hostIf},
		{"link", "set", nw.hostIf, "up"},
	}
	for i := 0; i < nw.nodes; i++ {
		ns, port := nw.ns(i), fmt.Sprintf("p%d", i+1)
		steps = append(steps,
			[]string{"netns", "add", ns},
			[]string{"-n", ns, "link", "set", "lo", "up"},
			[]string{"-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", sw},
			[]string{"-n", sw, "link", "set", port, "master", "br0", "up"},
			[]string{"-n", ns, "addr", "add", nw.NodeIP(i) + "/24", "dev", "eth0"},
			[]string{"-n", ns, "link", "set", "eth0", "up"},
		)
	}
	for _, s := range steps {
		if err := ipCmd(ctx, "ip", s...); err != nil {
			return fmt.Errorf("build test network: %w", err)
		}
	}
	return nil
}

// Cut drops all traffic between the nodes of side a and those of side b
// (both directions, in each node's own firewall). The host still reaches
// every node.
func (nw *network) Cut(ctx context.Context, a, b []int) error {
	for _, i := range a {
		for _, j := range b {
			for _, pair := range [][2]int{{i, j}, {j, i}} {
				ns, peer := nw.ns(pair[0]), nw.NodeIP(pair[1])
				if err := inNS(ctx, ns, "iptables", "-w", "-A", "INPUT", "-s", peer, "-j", "DROP"); err != nil {
					return err
				}
				if err := inNS(ctx, ns, "iptables", "-w", "-A", "OUTPUT", "-d", peer, "-j", "DROP"); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// Slow makes every node's link slow: netem delay and loss where the kernel
// has it, else a token-bucket rate limit plus random drops of 2% of the
// packets between nodes. It returns what it did.
func (nw *network) Slow(ctx context.Context) (string, error) {
	what := "netem delay 40ms±10ms loss 1%"
	if !nw.netem {
		what = "tbf 4mbit + 2% random drop between nodes (no netem in this kernel)"
	}
	for i := 0; i < nw.nodes; i++ {
		ns := nw.ns(i)
		var err error
		if nw.netem {
			err = inNS(ctx, ns, "tc", "qdisc", "replace", "dev", "eth0", "root", "netem", "delay", "40ms", "10ms", "loss", "1%")
		} else {
			err = inNS(ctx, ns, "tc", "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", "4mbit", "burst", "32kb", "latency", "100ms")
			for j := 0; j < nw.nodes && err == nil; j++ {
				if j != i {
					err = inNS(ctx, ns, "iptables", "-w", "-A", "INPUT", "-s", nw.NodeIP(j), "-m", "statistic",
						"--mode", "random", "--probability", "0.02", "-j", "DROP")
				}
			}
		}
		if err != nil {
			return what, err
		}
	}
	return what, nil
}

// Heal removes every cut and slow link.
func (nw *network) Heal(ctx context.Context) error {
	var errs []error
	for i := 0; i < nw.nodes; i++ {
		ns := nw.ns(i)
		errs = append(errs, inNS(ctx, ns, "iptables", "-w", "-F", "INPUT"), inNS(ctx, ns, "iptables", "-w", "-F", "OUTPUT"))
		_ = inNS(ctx, ns, "tc", "qdisc", "del", "dev", "eth0", "root") // absent when not slowed
	}
	return errors.Join(errs...)
}

// Close removes the namespaces (and with them every link in them).
func (nw *network) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := 0; i < nw.nodes; i++ {
		_ = ipCmd(ctx, "ip", "netns", "del", nw.ns(i))
	}
	_ = ipCmd(ctx, "ip", "netns", "del", nw.sw())
	_ = ipCmd(ctx, "ip", "link", "del", nw.hostIf) // normally gone with its peer
}

// sweepStale removes namespaces and host links left by harness runs whose
// process is gone (a SIGKILLed harness cannot clean up after itself).
func sweepStale(ctx context.Context, logger *slog.Logger) {
	out, err := exec.CommandContext(ctx, "ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		rest, ok := strings.CutPrefix(name, nsPrefix)
		if !ok {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			continue // a live run's
		}
		logger.Info("removing a dead run's namespace", "netns", name)
		_ = ipCmd(ctx, "ip", "netns", "del", name)
		_ = ipCmd(ctx, "ip", "link", "del", fmt.Sprintf("rmc%d", pid))
	}
}

// freeOctet picks K for 10.213.K.0/24 with no host address in it.
func freeOctet(ctx context.Context) (int, error) {
	out, err := exec.CommandContext(ctx, "ip", "-o", "-4", "addr", "show").Output()
	if err != nil {
		return 0, fmt.Errorf("ip addr: %w", err)
	}
	start := os.Getpid()%250 + 1
	for d := 0; d < 250; d++ {
		k := (start+d)%250 + 1
		if !strings.Contains(string(out), fmt.Sprintf(" 10.213.%d.", k)) {
			return k, nil
		}
	}
	return 0, errors.New("no free 10.213.K.0/24 for the test network")
}
