package imap

import (
	"strings"
	"sync"
	"time"
)

// maxThrottleEntries bounds the failure table; when full, stale entries are
// swept and, failing that, the table is cleared (an attacker spraying
// addresses gets no more than a fresh table).
const maxThrottleEntries = 100_000

// throttle slows down password guessing: each failed login from an IP and
// for an account doubles the delay before the next attempt from that IP or
// for that account is answered (DESIGN.md invariant 8). A success clears the
// account's and the IP's record.
type throttle struct {
	base, max, window time.Duration
	now               func() time.Time

	mu   sync.Mutex
	fail map[string]*failRec
}

type failRec struct {
	n    int
	last time.Time
}

func newThrottle(base, max, window time.Duration) *throttle {
	return &throttle{base: base, max: max, window: window, now: time.Now, fail: make(map[string]*failRec)}
}

func ipKey(ip string) string     { return "ip:" + ip }
func acctKey(user string) string { return "acct:" + strings.ToLower(strings.TrimSpace(user)) }

// delay returns how long to wait before answering an attempt from ip for
// user: the larger of the two records' delays.
func (t *throttle) delay(ip, user string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	return max(t.delayLocked(ipKey(ip)), t.delayLocked(acctKey(user)))
}

func (t *throttle) delayLocked(k string) time.Duration {
	r, ok := t.fail[k]
	if !ok || r.n == 0 {
		return 0
	}
	if t.now().Sub(r.last) > t.window {
		delete(t.fail, k)
		return 0
	}
	d := t.base
	for i := 1; i < r.n && d < t.max; i++ {
		d *= 2
	}
	return min(d, t.max)
}

// failed records a failed attempt.
func (t *throttle) failed(ip, user string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.fail) >= maxThrottleEntries {
		t.sweepLocked()
	}
	now := t.now()
	for _, k := range []string{ipKey(ip), acctKey(user)} {
		r, ok := t.fail[k]
		if !ok || now.Sub(r.last) > t.window {
			r = &failRec{}
			t.fail[k] = r
		}
		r.n++
		r.last = now
	}
}

// succeeded clears the records of a successful login.
func (t *throttle) succeeded(ip, user string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.fail, ipKey(ip))
	delete(t.fail, acctKey(user))
}

func (t *throttle) sweepLocked() {
	now := t.now()
	for k, r := range t.fail {
		if now.Sub(r.last) > t.window {
			delete(t.fail, k)
		}
	}
	if len(t.fail) >= maxThrottleEntries {
		t.fail = make(map[string]*failRec)
	}
}
