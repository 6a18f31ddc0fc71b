package bench

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in microseconds from 1 µs to 10 minutes with three
// significant digits (an HDR histogram: fixed memory, no sorting).
const (
	histMin = 1
	histMax = int64(10 * time.Minute / time.Microsecond)
)

// Recorder collects operation latencies from many goroutines. Ops and
// Bytes may be read at any time (for a progress bar).
type Recorder struct {
	mu     sync.Mutex
	hist   *hdrhistogram.Histogram
	errs   map[string]int
	ops    atomic.Int64
	bytes  atomic.Int64
	failed atomic.Int64
	start  time.Time
	finish time.Time
	// merged is set once Add folded other runs in; periods is then the
	// sum of their measured periods, and the elapsed time of r itself.
	merged  bool
	periods time.Duration
}

// NewRecorder starts a recorder.
func NewRecorder() *Recorder {
	return &Recorder{hist: hdrhistogram.New(histMin, histMax, 3), errs: map[string]int{}, start: time.Now()}
}

// Restart clears the latencies and counts and starts the measured period
// now (after a login phase); the errors seen so far are kept.
func (r *Recorder) Restart() {
	r.mu.Lock()
	r.hist.Reset()
	r.ops.Store(0)
	r.bytes.Store(0)
	r.start, r.finish = time.Now(), time.Time{}
	r.mu.Unlock()
}

// Ok records one successful operation of n bytes that took d.
func (r *Recorder) Ok(d time.Duration, n int) { r.OkN(d, 1, n) }

// OkN records ops operations (e.g. the messages of one FETCH) of n bytes
// in all, answered by one request that took d: throughput counts ops,
// the latency histogram counts the request once.
func (r *Recorder) OkN(d time.Duration, ops, n int) {
	us := max(d.Microseconds(), histMin)
	r.mu.Lock()
	_ = r.hist.RecordValue(min(us, histMax))
	r.mu.Unlock()
	r.ops.Add(int64(ops))
	r.bytes.Add(int64(n))
}

// Fail records a failed operation by its reply code or error class.
func (r *Recorder) Fail(code string) {
	r.mu.Lock()
	r.errs[code]++
	r.mu.Unlock()
	r.failed.Add(1)
}

// Add folds a finished run into r: its operations, bytes, errors and
// latencies, and its measured period, so that one load measured in slices
// (interleaved with other loads) reads as one run whose elapsed time is
// the sum of the slices. r's own clock no longer counts once it has
// merged a run.
func (r *Recorder) Add(o *Recorder) {
	o.mu.Lock()
	finish := o.finish
	if finish.IsZero() {
		finish = time.Now()
	}
	period := finish.Sub(o.start)
	errs := maps.Clone(o.errs)
	hist := hdrhistogram.Import(o.hist.Export())
	o.mu.Unlock()

	r.mu.Lock()
	defer r.mu.Unlock()
	r.hist.Merge(hist)
	for code, n := range errs {
		r.errs[code] += n
	}
	r.ops.Add(o.ops.Load())
	r.bytes.Add(o.bytes.Load())
	r.failed.Add(o.failed.Load())
	r.merged = true
	r.periods += period
}

// Ops is the number of successful operations so far.
func (r *Recorder) Ops() int64 { return r.ops.Load() }

// Failed is the number of failed operations so far.
func (r *Recorder) Failed() int64 { return r.failed.Load() }

// Stop ends the measured period.
func (r *Recorder) Stop() {
	r.mu.Lock()
	if r.finish.IsZero() {
		r.finish = time.Now()
	}
	r.mu.Unlock()
}

// Summary is the outcome of a load run. Durations marshal as nanoseconds;
// the *Ms fields repeat them in milliseconds for readers of the JSON.
type Summary struct {
	Ops      int            `json:"ops"`
	Requests int            `json:"requests"`
	Bytes    int64          `json:"bytes"`
	Errors   map[string]int `json:"errors"`
	Elapsed  time.Duration  `json:"elapsed_ns"`
	PerSec   float64        `json:"ops_per_sec"`
	MBPerS   float64        `json:"mb_per_sec"`
	P50      time.Duration  `json:"p50_ns"`
	P90      time.Duration  `json:"p90_ns"`
	P99      time.Duration  `json:"p99_ns"`
	Max      time.Duration  `json:"max_ns"`
	P50Ms    float64        `json:"p50_ms"`
	P90Ms    float64        `json:"p90_ms"`
	P99Ms    float64        `json:"p99_ms"`
	MaxMs    float64        `json:"max_ms"`
}

// Summary computes throughput and latency percentiles.
func (r *Recorder) Summary() Summary {
	r.mu.Lock()
	defer r.mu.Unlock()
	finish := r.finish
	if finish.IsZero() {
		finish = time.Now()
	}
	s := Summary{Ops: int(r.ops.Load()), Requests: int(r.hist.TotalCount()), Bytes: r.bytes.Load(),
		Errors: maps.Clone(r.errs), Elapsed: finish.Sub(r.start)}
	if r.merged {
		s.Elapsed = r.periods
	}
	if s.Elapsed > 0 {
		s.PerSec = float64(s.Ops) / s.Elapsed.Seconds()
		s.MBPerS = float64(s.Bytes) / 1e6 / s.Elapsed.Seconds()
	}
	if s.Requests > 0 {
		q := func(p float64) time.Duration { return time.Duration(r.hist.ValueAtQuantile(p)) * time.Microsecond }
		s.P50, s.P90, s.P99 = q(50), q(90), q(99)
		s.Max = time.Duration(r.hist.Max()) * time.Microsecond
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	s.P50Ms, s.P90Ms, s.P99Ms, s.MaxMs = ms(s.P50), ms(s.P90), ms(s.P99), ms(s.Max)
	return s
}

// ErrorString lists the errors as "550×3 io×1" in code order ("none" if
// there were none).
func (s Summary) ErrorString() string {
	if len(s.Errors) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(s.Errors)) {
		parts = append(parts, fmt.Sprintf("%s×%d", k, s.Errors[k]))
	}
	return strings.Join(parts, " ")
}

// String formats a summary on one line.
func (s Summary) String() string {
	return fmt.Sprintf("%d ops in %v: %.0f/s, %.1f MB/s, p50 %v p90 %v p99 %v max %v, errors %s",
		s.Ops, s.Elapsed.Round(time.Millisecond), s.PerSec, s.MBPerS, s.P50.Round(10*time.Microsecond),
		s.P90.Round(10*time.Microsecond), s.P99.Round(10*time.Microsecond), s.Max.Round(10*time.Microsecond), s.ErrorString())
}
