package outbound

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/raftmail/raftmail/raftstore"
	"github.com/raftmail/raftmail/raftstore/command"
)

// Store is what the service needs from its node (cluster.Node has it).
type Store interface {
	Propose(ctx context.Context, c *command.Command) (raftstore.Result, error)
	View(fn func(*raftstore.ReadTx) error) error
	Subscribe(buf int) (<-chan raftstore.Change, func())
	Codec() *raftstore.Codec
	// Barrier returns once every entry committed before it is applied
	// locally (leader only).
	Barrier(timeout time.Duration) error
}

// Service delivers the outbound queue while its node leads.
type Service struct {
	cfg     Config
	st      Store
	res     *resolver
	logger  *slog.Logger
	metrics Metrics
	signers *signerCache
	wake    chan struct{}
}

// New returns a service; Run starts it.
func New(cfg Config, st Store) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	res, err := newResolver(cfg.Resolver, cfg.DNSTimeout, cfg.MaxMXAddrs, cfg.Hostname)
	if err != nil {
		return nil, err
	}
	return &Service{cfg: cfg, st: st, res: res, logger: cfg.Logger.With("component", "outbound"),
		signers: newSignerCache(), wake: make(chan struct{}, 1)}, nil
}

// Metrics returns the service's counters.
func (s *Service) Metrics() *Metrics { return &s.metrics }

// Run works the queue whenever this node leads, until ctx ends. Losing
// leadership cancels every attempt in flight; their recipients stay
// claimed in the state until the next leader takes them over, so a message
// is delivered at least once and never lost.
func (s *Service) Run(ctx context.Context) {
	changes, cancel := s.st.Subscribe(256)
	defer cancel()
	go s.watchChanges(ctx, changes)
	t := time.NewTicker(s.cfg.LeaderPoll)
	defer t.Stop()
	for ctx.Err() == nil {
		if s.cfg.IsLeader() {
			s.leadWhileLeader(ctx, t.C)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Service) watchChanges(ctx context.Context, changes <-chan raftstore.Change) {
	for {
		select {
		case <-ctx.Done():
			return
		case c, ok := <-changes:
			if !ok {
				return
			}
			switch c.(type) {
			case raftstore.QueueChanged, raftstore.StateReset:
				s.poke()
			}
		}
	}
}

func (s *Service) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// leadWhileLeader runs one leadership term's session and stops it when
// leadership ends.
func (s *Service) leadWhileLeader(ctx context.Context, tick <-chan time.Time) {
	lctx, cancel := context.WithCancel(ctx)
	sess := s.newSession()
	s.metrics.Leaderships.Add(1)
	sess.logger.Info("leading: outbound delivery started")
	done := make(chan struct{})
	go func() { sess.run(lctx); close(done) }()
	for s.cfg.IsLeader() {
		select {
		case <-ctx.Done():
		case <-tick:
			continue
		}
		break
	}
	cancel()
	<-done
	sess.logger.Info("outbound delivery stopped", "leader", s.cfg.IsLeader())
}

// session is one leadership term: its own holder name, so that claims of
// an earlier term (even of this node) are taken over.
type session struct {
	s      *Service
	holder string
	logger *slog.Logger

	mu       sync.Mutex
	inflight map[command.QueueItem]bool
	reports  map[uint64]bool
	domains  map[string]*domainQueue
	conns    int
	seq      uint64
	wg       sync.WaitGroup
}

type domainQueue struct {
	pending []uint64
	workers int
}

func (s *Service) newSession() *session {
	var b [4]byte
	_, _ = rand.Read(b[:])
	holder := s.cfg.Node + "/" + hex.EncodeToString(b[:])
	return &session{s: s, holder: holder, logger: s.logger.With("holder", holder),
		inflight: map[command.QueueItem]bool{}, reports: map[uint64]bool{}, domains: map[string]*domainQueue{}}
}

func (ss *session) run(ctx context.Context) {
	defer ss.wg.Wait()
	t := time.NewTicker(ss.s.cfg.PollInterval)
	defer t.Stop()
	if !ss.caughtUp(ctx, t.C) {
		return
	}
	ss.takeOver(ctx)
	for {
		ss.schedule(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-ss.s.wake:
		}
	}
}

// caughtUp waits until the new leader has applied every entry committed
// in earlier terms. A leader is elected before its state machine catches
// up: the claims the previous leader committed last may not be applied
// yet, and a queue read before them would leave their recipients claimed
// by a dead holder until ClaimTTL runs out. False when ctx ends first.
func (ss *session) caughtUp(ctx context.Context, tick <-chan time.Time) bool {
	for {
		err := ss.s.st.Barrier(5 * time.Second)
		if err == nil {
			return true
		}
		ss.logger.Warn("waiting for the log to be applied before reading the queue", "err", err)
		select {
		case <-ctx.Done():
			return false
		case <-tick:
		}
	}
}

// takeOver dispatches at once the recipients an earlier holder (the
// previous leader, or this node before it restarted) claimed: their
// attempts may have been cut short, and waiting for the claims to expire
// would hold their mail for ClaimTTL.
func (ss *session) takeOver(ctx context.Context) {
	var due []raftstore.QueueDue
	err := ss.s.st.View(func(r *raftstore.ReadTx) error {
		return r.QueueEntries(func(e *raftstore.QueueEntry) bool {
			var doms []string
			for _, rc := range e.Rcpts {
				if !rc.Final() && rc.Holder != "" && rc.Holder != ss.holder && !slices.Contains(doms, rc.Domain) {
					doms = append(doms, rc.Domain)
					due = append(due, raftstore.QueueDue{At: rc.Until, ID: e.ID, Domain: rc.Domain})
				}
			}
			return true
		})
	})
	if err != nil {
		ss.logger.Warn("read queue", "err", err)
		return
	}
	if len(due) > 0 {
		ss.logger.Info("taking over attempts of an earlier leader", "items", len(due))
	}
	ss.dispatch(ctx, due)
}

// schedule hands due work to domain workers and owed reports to reporters.
func (ss *session) schedule(ctx context.Context) {
	now := ss.s.cfg.Now().UnixNano()
	var due []raftstore.QueueDue
	err := ss.s.st.View(func(r *raftstore.ReadTx) error {
		r.QueueDue(now, func(d raftstore.QueueDue) bool {
			due = append(due, d)
			return len(due) < 10_000
		})
		return nil
	})
	if err != nil {
		ss.logger.Warn("read queue", "err", err)
		return
	}
	ss.dispatch(ctx, due)
}

func (ss *session) dispatch(ctx context.Context, due []raftstore.QueueDue) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for _, d := range due {
		if d.Domain == "" {
			if !ss.reports[d.ID] {
				ss.reports[d.ID] = true
				ss.wg.Add(1)
				go ss.report(ctx, d.ID)
			}
			continue
		}
		it := command.QueueItem{ID: d.ID, Domain: d.Domain}
		if ss.inflight[it] {
			continue
		}
		ss.inflight[it] = true
		dq := ss.domains[d.Domain]
		if dq == nil {
			dq = &domainQueue{}
			ss.domains[d.Domain] = dq
		}
		dq.pending = append(dq.pending, d.ID)
	}
	for dom, dq := range ss.domains {
		for len(dq.pending) > 0 && dq.workers < ss.s.cfg.PerDomainConns && ss.conns < ss.s.cfg.MaxConns &&
			(dq.workers == 0 || len(dq.pending) > dq.workers) {
			dq.workers++
			ss.conns++
			ss.wg.Add(1)
			go ss.worker(ctx, dom)
		}
	}
}

// take removes up to n pending messages of a domain; with none left the
// worker retires (under the lock, so schedule never loses a message).
func (ss *session) take(domain string, n int) []uint64 {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	dq := ss.domains[domain]
	if len(dq.pending) == 0 {
		dq.workers--
		ss.conns--
		if dq.workers == 0 {
			delete(ss.domains, domain)
		}
		return nil
	}
	k := min(n, len(dq.pending))
	out := append([]uint64(nil), dq.pending[:k]...)
	dq.pending = dq.pending[k:]
	return out
}

func (ss *session) release(domain string, ids ...uint64) {
	ss.mu.Lock()
	for _, id := range ids {
		delete(ss.inflight, command.QueueItem{ID: id, Domain: domain})
	}
	ss.mu.Unlock()
}

func (ss *session) nextAttemptID() string {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.seq++
	return fmt.Sprintf("%s/%d", ss.holder, ss.seq)
}

// propose commits a command; business errors come back as errors.
func (ss *session) propose(ctx context.Context, key string, p command.Payload) (raftstore.Result, error) {
	res, err := ss.s.st.Propose(ctx, &command.Command{Key: key, Payload: p})
	if err == nil {
		err = res.Err()
	}
	return res, err
}

// retryDelay is the wait after the n-th temporary failure: RetryBase
// doubled per failure, capped at RetryMax.
func (c *Config) retryDelay(n uint32) time.Duration {
	d := c.RetryBase
	for i := uint32(1); i < n && d < c.RetryMax; i++ {
		d *= 2
	}
	return min(d, c.RetryMax)
}
