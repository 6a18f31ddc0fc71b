package compare

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of /proc/PID/stat's CPU times (100 on
// every Linux this runs on).
const clockTicks = 100

// procInfo is what /proc says about one process.
type procInfo struct {
	pid, ppid int
	// cpu is utime+stime+cutime+cstime in ticks: the process's own CPU
	// plus that of its children it has reaped, so summing it over a live
	// process tree also counts the tree's short-lived workers.
	cpu int64
}

// readProc parses /proc/PID/stat.
func readProc(pid int) (procInfo, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procInfo{}, err
	}
	// The command name is in parentheses and may hold spaces.
	s := string(data)
	end := strings.LastIndexByte(s, ')')
	if end < 0 {
		return procInfo{}, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(s[end+1:])
	// After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
	if len(f) < 15 {
		return procInfo{}, fmt.Errorf("short /proc/%d/stat", pid)
	}
	p := procInfo{pid: pid}
	p.ppid, _ = strconv.Atoi(f[1])
	for _, i := range []int{11, 12, 13, 14} {
		v, _ := strconv.ParseInt(f[i], 10, 64)
		p.cpu += v
	}
	return p, nil
}

// allProcs reads every process's stat.
func allProcs() map[int]procInfo {
	out := map[int]procInfo{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, err := readProc(pid); err == nil {
			out[pid] = p
		}
	}
	return out
}

// tree returns roots and all their live descendants.
func tree(roots []int) []int {
	procs := allProcs()
	children := map[int][]int{}
	for _, p := range procs {
		children[p.ppid] = append(children[p.ppid], p.pid)
	}
	var out []int
	seen := map[int]bool{}
	queue := append([]int(nil), roots...)
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		if seen[pid] {
			continue
		}
		seen[pid] = true
		if _, ok := procs[pid]; ok {
			out = append(out, pid)
		}
		queue = append(queue, children[pid]...)
	}
	return out
}

// cpuSeconds is the CPU the process trees under roots have used so far.
func cpuSeconds(roots []int) float64 {
	var ticks int64
	for _, pid := range tree(roots) {
		if p, err := readProc(pid); err == nil {
			ticks += p.cpu
		}
	}
	return float64(ticks) / clockTicks
}

// memKB is the memory of the process trees under roots: the sum of
// proportional set sizes (shared pages split between their users, so many
// forked workers are not counted many times over) and of resident sets.
func memKB(roots []int) (pss, rss int64) {
	for _, pid := range tree(roots) {
		p, r := smapsRollup(pid)
		pss += p
		rss += r
	}
	return pss, rss
}

func smapsRollup(pid int) (pss, rss int64) {
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "smaps_rollup"))
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(fields[1], 10, 64)
		switch fields[0] {
		case "Pss:":
			pss = v
		case "Rss:":
			rss = v
		}
	}
	return pss, rss
}

// loadAvg is the 1-minute load average.
func loadAvg() float64 {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}
