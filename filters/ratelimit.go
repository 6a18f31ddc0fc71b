package filters

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"
)

// Rate is Count events per Per; the zero Rate is unlimited.
type Rate struct {
	Count int
	Per   time.Duration
}

func (r Rate) unlimited() bool { return r.Count <= 0 || r.Per <= 0 }

// RateLimit limits, per client network (an IPv4 address or an IPv6 /64),
// how fast new connections and new messages (MAIL commands) arrive. A
// token bucket per network allows bursts of Count. Trusted clients are not
// limited. One RateLimit is shared by all connections of a frontend; its
// memory is bounded by MaxEntries (idle, full buckets are dropped first).
type RateLimit struct {
	Connections Rate
	Messages    Rate
	// MaxEntries bounds the networks tracked per kind (default 100,000).
	MaxEntries int
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time

	mu    sync.Mutex
	conns map[netip.Prefix]*bucket
	msgs  map[netip.Prefix]*bucket
}

var _ Check = (*RateLimit)(nil)

type bucket struct {
	tokens float64
	last   time.Time
}

// Name implements Check.
func (l *RateLimit) Name() string { return "ratelimit" }

// NewState implements Check.
func (l *RateLimit) NewState(_ context.Context, conn *ConnInfo) (State, error) {
	return &rateState{l: l, conn: conn}, nil
}

// ClientNetwork is the unit of per-client limits: the address for IPv4,
// its /64 for IPv6 (one host usually owns a whole /64).
func ClientNetwork(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap()
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}

// take removes one token from the bucket of key and reports whether there
// was one.
func (l *RateLimit) take(m *map[netip.Prefix]*bucket, r Rate, key netip.Prefix) bool {
	if r.unlimited() {
		return true
	}
	now := time.Now()
	if l.Now != nil {
		now = l.Now()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if *m == nil {
		*m = make(map[netip.Prefix]*bucket)
	}
	capacity := float64(r.Count)
	refill := func(b *bucket) {
		b.tokens = min(capacity, b.tokens+now.Sub(b.last).Seconds()*capacity/r.Per.Seconds())
		b.last = now
	}
	b := (*m)[key]
	if b == nil {
		max := l.MaxEntries
		if max <= 0 {
			max = 100_000
		}
		if len(*m) >= max {
			for k, ob := range *m {
				if refill(ob); ob.tokens >= capacity {
					delete(*m, k)
				}
			}
			if len(*m) >= max {
				return false // every tracked network is active: refuse newcomers
			}
		}
		b = &bucket{tokens: capacity, last: now}
		(*m)[key] = b
	}
	refill(b)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

type rateState struct {
	NopState
	l    *RateLimit
	conn *ConnInfo
}

// Inline implements Inline: the buckets are in memory.
func (*rateState) Inline(Stage) bool { return true }

func (s *rateState) Connect(context.Context) Verdict {
	if s.conn.Trusted {
		return Verdict{}
	}
	if !s.l.take(&s.l.conns, s.l.Connections, ClientNetwork(s.conn.IP)) {
		return Verdict{Action: TempFail, Code: 421, Enhanced: [3]int{4, 7, 0},
			Reason: "Too many connections from your address, slow down",
			Err:    fmt.Errorf("connection rate over %d per %v", s.l.Connections.Count, s.l.Connections.Per)}
	}
	return Verdict{}
}

func (s *rateState) Mail(context.Context, Mail) Verdict {
	if s.conn.Trusted {
		return Verdict{}
	}
	if !s.l.take(&s.l.msgs, s.l.Messages, ClientNetwork(s.conn.IP)) {
		return Verdict{Action: TempFail, Code: 451, Enhanced: [3]int{4, 7, 1},
			Reason: "Too many messages from your address, try again later",
			Err:    fmt.Errorf("message rate over %d per %v", s.l.Messages.Count, s.l.Messages.Per)}
	}
	return Verdict{}
}
