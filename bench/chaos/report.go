package chaos

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// VerdictLine is the one line a run ends with.
func VerdictLine(v *Verdict) string {
	word := "PASS"
	if !v.Pass {
		word = "FAIL"
	}
	return fmt.Sprintf("chaos: %s acked=%d lost=%d duplicated=%d longest_stall=%.1fs",
		word, v.Acked, v.Lost, v.Duplicated, v.LongestStall.Seconds())
}

// jsonReport is the JSON file of a run: configuration, faults, verdict and
// the availability series (not the whole history).
type jsonReport struct {
	Seed        int64          `json:"seed"`
	Duration    string         `json:"duration"`
	Senders     int            `json:"senders"`
	Network     string         `json:"network"`
	RaftTimings string         `json:"raft_timings"`
	Start       time.Time      `json:"start"`
	End         time.Time      `json:"end"`
	Faults      []Fault        `json:"faults"`
	Digests     []NodeDigest   `json:"digests"`
	Stored      map[string]int `json:"stored_per_node"`
	Verdict     *Verdict       `json:"verdict"`
	VerdictLine string         `json:"verdict_line"`
}

func (h *harness) networkDesc() string {
	if h.net == nil {
		return "loopback (" + h.noNetReason + "), partitions skipped"
	}
	return "netns " + h.net.prefix + "0/24"
}

// report prints the summary table and verdict line and writes the JSON and
// PNG files.
func report(h *harness, hist *History, v *Verdict) error {
	stored := map[string]int{}
	for _, s := range hist.Final {
		stored[s.Node]++
	}
	timings := fmt.Sprintf("heartbeat %s, election %s, lease %s, commit timeout %s",
		h.cfg.HeartbeatTimeout, h.cfg.ElectionTimeout, h.cfg.LeaderLease, h.cfg.CommitTimeout)
	writeTable(h.out, hist, v, stored, h.networkDesc(), timings)
	rep := jsonReport{Seed: h.cfg.Seed, Duration: h.cfg.Duration.String(), Senders: h.cfg.Senders,
		Network: h.networkDesc(), RaftTimings: timings, Start: hist.Start, End: hist.End, Faults: hist.Faults,
		Digests: hist.Digests, Stored: stored, Verdict: v, VerdictLine: VerdictLine(v)}
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(h.cfg.JSONPath, js, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", h.cfg.JSONPath, err)
	}
	if err := writePNG(h.cfg.PNGPath, hist, v); err != nil {
		return fmt.Errorf("write %s: %w", h.cfg.PNGPath, err)
	}
	fmt.Fprintf(h.out, "\nfiles: %s, %s, process logs in %s\n", h.cfg.JSONPath, h.cfg.PNGPath, h.cfg.Dir)
	fmt.Fprintln(h.out, VerdictLine(v))
	return nil
}

func writeTable(out io.Writer, hist *History, v *Verdict, stored map[string]int, network, timings string) {
	w := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	secs := hist.End.Sub(hist.Start).Seconds()
	fmt.Fprintf(w, "\nrun\t%.0fs of load, network %s\n", secs, network)
	fmt.Fprintf(w, "raft\t%s\n", timings)
	fmt.Fprintf(w, "messages\t%d sent: %d acked (250), %d rejected (5xx), %d indeterminate (4xx or no reply)\n",
		v.Sent, v.Acked, v.Rejected, v.Indeterminate)
	fmt.Fprintf(w, "attempts\t2xx %d, 4xx %d, 5xx %d, no reply %d\n", v.Replies["2xx"], v.Replies["4xx"], v.Replies["5xx"], v.Replies["none"])
	fmt.Fprintf(w, "throughput\t%.1f acks/s, ack latency p50 %s p99 %s\n", float64(v.Acked)/max(secs, 1),
		v.AckLatP50.Round(time.Millisecond), v.AckLatP99.Round(time.Millisecond))
	fmt.Fprintf(w, "imap writes\t%d confirmed, %d uncertain\n", v.IMAPCertain, v.IMAPUncertain)
	var nodes []string
	for _, n := range hist.Nodes {
		nodes = append(nodes, fmt.Sprintf("%s %d", n, stored[n]))
	}
	fmt.Fprintf(w, "read back\t%s messages over IMAP\n", strings.Join(nodes, ", "))
	for _, d := range hist.Digests {
		fmt.Fprintf(w, "digest %s\t%.16s @ %d %s\n", d.Node, d.Digest, d.AppliedIndex, d.Err)
	}
	fmt.Fprintf(w, "stall\tlongest %s; leader kill → fresh write p99 %s\n", v.LongestStall.Round(time.Millisecond),
		v.LeaderKillP99.Round(time.Millisecond))
	fmt.Fprintln(w)
	fmt.Fprintln(w, "fault\tat\theld\ttarget\tstall\tfresh 250 after")
	for _, f := range hist.Faults {
		if f.Skipped != "" {
			fmt.Fprintf(w, "%s\t%.1fs\t-\t%s\tskipped: %s\t\n", f.Kind, f.Start.Sub(hist.Start).Seconds(), f.Target, f.Skipped)
		}
	}
	for _, s := range v.Stalls {
		f := s.Fault
		fmt.Fprintf(w, "%s\t%.1fs\t%.1fs\t%s\t%.2fs\t%.2fs\n", f.Kind, f.Start.Sub(hist.Start).Seconds(),
			f.End.Sub(f.Start).Seconds(), f.Target, s.Stall.Seconds(), s.FirstAck.Seconds())
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "check\tresult")
	kinds := []string{VLost, VDuplicated, VRejected, VUnknown, VReadback, VDigest, VUIDReuse, VUIDOrder, VValidity, VDiverged, VModel}
	for _, k := range kinds {
		res := "ok"
		if n := v.Counts[k]; n > 0 {
			res = fmt.Sprintf("FAIL (%d)", n)
		}
		fmt.Fprintf(w, "%s\t%s\n", k, res)
	}
	w.Flush()
	if len(v.Violations) > 0 {
		fmt.Fprintf(out, "\nviolations (first %d):\n", len(v.Violations))
		sort.Strings(v.Violations)
		for _, s := range v.Violations {
			fmt.Fprintln(out, "  "+s)
		}
	}
}
