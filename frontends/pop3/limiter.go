package pop3

import (
	"sync"
	"time"
)

// failLimiter counts failed logins per client IP. Each failure earns a
// delay that doubles up to a maximum, and past a limit within the window
// the IP is refused outright until the window has passed since its last
// failure. A later success does not reset the count, or an attacker with
// one valid account could interleave it to keep guessing others. Memory is
// bounded: entries older than the window are pruned,
// and the table is reset rather than grown past maxEntries.
type failLimiter struct {
	base, max time.Duration
	limit     int
	window    time.Duration
	now       func() time.Time

	mu sync.Mutex
	m  map[string]*failRec
}

type failRec struct {
	n    int
	last time.Time
}

const maxLimiterEntries = 100000

func newFailLimiter(cfg *Config) *failLimiter {
	return &failLimiter{
		base: cfg.LoginFailDelay, max: cfg.LoginFailMaxDelay,
		limit: cfg.LoginFailLimit, window: cfg.LoginFailWindow,
		now: time.Now, m: make(map[string]*failRec),
	}
}

// blocked reports whether ip has used up its failures for now.
func (l *failLimiter) blocked(ip string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.live(ip)
	return r != nil && r.n >= l.limit
}

// fail records a failure and returns how long to wait before answering.
func (l *failLimiter) fail(ip string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.live(ip)
	if r == nil {
		if len(l.m) >= maxLimiterEntries {
			l.prune()
		}
		r = &failRec{}
		l.m[ip] = r
	}
	r.n++
	r.last = l.now()
	d := l.base
	for i := 1; i < r.n && d < l.max; i++ {
		d *= 2
	}
	return min(d, l.max)
}

// live returns ip's record unless it has expired. Callers hold mu.
func (l *failLimiter) live(ip string) *failRec {
	r := l.m[ip]
	if r != nil && l.now().Sub(r.last) > l.window {
		delete(l.m, ip)
		return nil
	}
	return r
}

// prune drops expired records, or all of them if that frees nothing.
// Callers hold mu.
func (l *failLimiter) prune() {
	now := l.now()
	for ip, r := range l.m {
		if now.Sub(r.last) > l.window {
			delete(l.m, ip)
		}
	}
	if len(l.m) >= maxLimiterEntries {
		l.m = make(map[string]*failRec)
	}
}
