package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"syscall"
	"time"
)

// Fault kinds the nemesis injects.
const (
	KindKillLeader    = "kill-leader"    // SIGKILL the leader, restart it after Hold
	KindPause         = "pause-node"     // SIGSTOP a node for Hold (> election timeout), then SIGCONT
	KindKillFrontend  = "kill-frontend"  // SIGKILL an MX frontend, restart it after Hold
	KindIsolateLeader = "isolate-leader" // cut the leader from both followers for Hold
	KindSplit         = "split"          // cut one node from the other two (1|2) for Hold
	KindSlow          = "slow-links"     // slow every node's link for Hold
)

// needsNet says which kinds need the namespace network.
var needsNet = map[string]bool{KindIsolateLeader: true, KindSplit: true, KindSlow: true}

// Planned is one fault of the schedule: when (from the run's start), for
// how long, and a seeded pick that chooses its target.
type Planned struct {
	Kind string        `json:"kind"`
	At   time.Duration `json:"at_ns"`
	Hold time.Duration `json:"hold_ns"`
	Pick int           `json:"pick"`
}

// shortRun is the longest duration that gets the fixed CI schedule.
const shortRun = 3 * time.Minute

// Schedule plans the faults of a run from its seed. Runs up to 3 minutes
// get the CI mix (3 leader kills, 1 pause, 1 partition, 1 frontend kill)
// in a seeded order; longer runs draw one fault every ~20 s from all kinds.
// Each fault is followed by time without faults to measure recovery.
func Schedule(seed int64, d time.Duration) []Planned {
	rng := rand.New(rand.NewPCG(uint64(seed), 0x6368616f73))
	const warmup, tail = 8 * time.Second, 6 * time.Second
	var kinds []string
	if d <= shortRun {
		part := KindIsolateLeader
		if rng.IntN(2) == 1 {
			part = KindSplit
		}
		kinds = []string{KindKillLeader, KindKillLeader, KindKillLeader, KindPause, part, KindKillFrontend}
		rng.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
	} else {
		weighted := []string{KindKillLeader, KindKillLeader, KindKillLeader, KindPause, KindPause, KindKillFrontend,
			KindIsolateLeader, KindIsolateLeader, KindSplit, KindSplit, KindSlow}
		for n := int((d - warmup - tail) / (20 * time.Second)); n > 0; n-- {
			kinds = append(kinds, weighted[rng.IntN(len(weighted))])
		}
	}
	if len(kinds) == 0 || d <= warmup+tail {
		return nil
	}
	slot := (d - warmup - tail) / time.Duration(len(kinds))
	var out []Planned
	for i, k := range kinds {
		hold := holdFor(k, rng)
		hold = min(hold, slot*2/3)
		jitter := time.Duration(rng.Int64N(int64(slot-hold)/3 + 1))
		out = append(out, Planned{Kind: k, At: warmup + time.Duration(i)*slot + jitter, Hold: hold, Pick: rng.IntN(1 << 20)})
	}
	return out
}

func holdFor(kind string, rng *rand.Rand) time.Duration {
	between := func(a, b float64) time.Duration {
		return time.Duration((a + rng.Float64()*(b-a)) * float64(time.Second))
	}
	switch kind {
	case KindKillLeader:
		return between(3, 6)
	case KindPause:
		return between(3, 5)
	case KindKillFrontend:
		return between(2, 4)
	case KindSlow:
		return between(8, 12)
	}
	return between(5, 9) // partitions
}

// nemesis runs the schedule against the harness, recording each fault.
func (h *harness) nemesis(ctx context.Context, plan []Planned, start time.Time, record func(Fault)) {
	for _, p := range plan {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(start.Add(p.At))):
		}
		f := h.inject(ctx, p)
		h.printf("  %6.1fs  %-15s %-22s %s\n", f.Start.Sub(start).Seconds(), f.Kind, f.Target, orDash(f.Skipped))
		record(f)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return "skipped: " + s
}

// inject performs one fault and undoes it after its hold.
func (h *harness) inject(ctx context.Context, p Planned) Fault {
	f := Fault{Kind: p.Kind, Start: time.Now()}
	if needsNet[p.Kind] && h.net == nil {
		f.Skipped, f.End = "no network namespaces ("+h.noNetReason+")", f.Start
		return f
	}
	hold := func() {
		select {
		case <-ctx.Done():
		case <-time.After(p.Hold):
		}
	}
	leader := h.leader(ctx)
	switch p.Kind {
	case KindKillLeader:
		f.Target = h.nodes[leader].name
		h.nodes[leader].kill()
		hold()
		h.restartNode(leader)
	case KindPause:
		target := leader
		if p.Pick%2 == 1 {
			target = (leader + 1 + p.Pick/2%2) % len(h.nodes)
		}
		f.Target = h.nodes[target].name
		if target == leader {
			f.Target += " (leader)"
		}
		h.nodes[target].signal(syscall.SIGSTOP)
		hold()
		h.nodes[target].signal(syscall.SIGCONT)
	case KindKillFrontend:
		fe := h.fronts[p.Pick%len(h.fronts)]
		f.Target = fe.name
		fe.kill()
		hold()
		h.restartChild(fe.child)
	case KindIsolateLeader, KindSplit:
		lone := leader
		if p.Kind == KindSplit {
			lone = p.Pick % len(h.nodes)
		}
		var rest []int
		for i := range h.nodes {
			if i != lone {
				rest = append(rest, i)
			}
		}
		f.Target = fmt.Sprintf("%s | %s %s", h.nodes[lone].name, h.nodes[rest[0]].name, h.nodes[rest[1]].name)
		if err := h.net.Cut(ctx, []int{lone}, rest); err != nil {
			f.Skipped = err.Error()
		}
		hold()
		h.heal()
	case KindSlow:
		what, err := h.net.Slow(ctx)
		f.Target = what
		if err != nil {
			f.Skipped = err.Error()
		}
		hold()
		h.heal()
	}
	f.End = time.Now()
	return f
}

// heal undoes every network fault, logging (not failing on) errors.
func (h *harness) heal() {
	if h.net == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.net.Heal(ctx); err != nil {
		h.logger.Warn("heal network", "err", err)
	}
}
