package bench

import (
	"fmt"
	"sort"
	"sync"
	"time"
)

// Recorder collects operation latencies from many goroutines.
type Recorder struct {
	mu     sync.Mutex
	lat    []time.Duration
	errs   map[string]int
	bytes  int64
	start  time.Time
	finish time.Time
}

// NewRecorder starts a recorder.
func NewRecorder() *Recorder { return &Recorder{errs: map[string]int{}, start: time.Now()} }

// Ok records a successful operation of n bytes.
func (r *Recorder) Ok(d time.Duration, n int) {
	r.mu.Lock()
	r.lat = append(r.lat, d)
	r.bytes += int64(n)
	r.mu.Unlock()
}

// Fail records a failed operation by its reply code or error class.
func (r *Recorder) Fail(code string) {
	r.mu.Lock()
	r.errs[code]++
	r.mu.Unlock()
}

// Stop ends the measured period.
func (r *Recorder) Stop() { r.finish = time.Now() }

// Summary is the outcome of a load run.
type Summary struct {
	Ops     int
	Errors  map[string]int
	Elapsed time.Duration
	PerSec  float64
	MBPerS  float64
	P50     time.Duration
	P90     time.Duration
	P99     time.Duration
	Max     time.Duration
}

// Summary computes throughput and latency percentiles.
func (r *Recorder) Summary() Summary {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.finish.IsZero() {
		r.finish = time.Now()
	}
	s := Summary{Ops: len(r.lat), Errors: r.errs, Elapsed: r.finish.Sub(r.start)}
	if s.Elapsed > 0 {
		s.PerSec = float64(s.Ops) / s.Elapsed.Seconds()
		s.MBPerS = float64(r.bytes) / 1e6 / s.Elapsed.Seconds()
	}
	if len(r.lat) > 0 {
		l := append([]time.Duration(nil), r.lat...)
		sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
		q := func(p float64) time.Duration { return l[min(len(l)-1, int(p*float64(len(l))))] }
		s.P50, s.P90, s.P99, s.Max = q(0.50), q(0.90), q(0.99), l[len(l)-1]
	}
	return s
}

// String formats a summary on one line.
func (s Summary) String() string {
	return fmt.Sprintf("%d ops in %v: %.0f/s, %.1f MB/s, p50 %v p90 %v p99 %v max %v, errors %v",
		s.Ops, s.Elapsed.Round(time.Millisecond), s.PerSec, s.MBPerS, s.P50.Round(10*time.Microsecond),
		s.P90.Round(10*time.Microsecond), s.P99.Round(10*time.Microsecond), s.Max.Round(10*time.Microsecond), s.Errors)
}
