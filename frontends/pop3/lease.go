package pop3

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/raftmail/raftmail/raftstore"
	"github.com/raftmail/raftmail/raftstore/command"
)

// One POP3 session per maildrop across the cluster (RFC 1939 §8 asks for
// an exclusive lock): the lock is a lease in the replicated state, named
// "pop3:<account>" (RemoveAccount deletes it), held by "<node>/<instance>/<conn>"
// and judged against the leader-stamped command time, so every node agrees
// who holds it. It is renewed every TTL/3; if the holding node dies, it
// expires after at most TTL and another node may lock the maildrop.

// leaseName is the lease of an account's maildrop.
func leaseName(account string) string { return "pop3:" + account }

// lease is a held maildrop lock and its renewal goroutine.
type lease struct {
	srv    *Server
	name   string
	holder string
	ttl    time.Duration

	mu         sync.Mutex
	validUntil time.Time // local, conservative: send time of the last granted acquire + TTL
	lost       bool

	stop chan struct{}
	done chan struct{}
}

// acquireLease takes the maildrop lock for a session and starts renewing
// it. Errors match raftstore.ErrLeaseHeld when another session holds it.
func (s *Server) acquireLease(account string, conn uint64) (*lease, error) {
	l := &lease{
		srv:    s,
		name:   leaseName(account),
		holder: fmt.Sprintf("%s/%s/%d", s.be.NodeID(), s.instance, conn),
		ttl:    s.cfg.LeaseTTL,
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	if err := l.renew(s.ctx); err != nil {
		return nil, err
	}
	s.wg.Add(1)
	go l.run()
	return l, nil
}

// renew proposes an acquire (which renews our own lease).
func (l *lease) renew(parent context.Context) error {
	sent := time.Now()
	ctx, cancel := context.WithTimeout(parent, min(l.srv.cfg.CommitTimeout, l.ttl))
	defer cancel()
	res, err := l.srv.be.Propose(ctx, &command.Command{Payload: &command.Lease{
		Name: l.name, Holder: l.holder, Op: command.LeaseAcquire, TTL: int64(l.ttl),
	}})
	if err == nil {
		err = res.Err()
	}
	if err != nil {
		return fmt.Errorf("lease %s: %w", l.name, err)
	}
	l.mu.Lock()
	l.validUntil = sent.Add(l.ttl)
	l.mu.Unlock()
	return nil
}

// run renews the lease until release. A renewal refused because someone
// else holds the lease, or no renewal before the lease's local expiry,
// marks it lost: the session then ends without deleting anything.
func (l *lease) run() {
	defer l.srv.wg.Done()
	defer close(l.done)
	every := l.ttl / 3
	t := time.NewTimer(every)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		err := l.renew(l.srv.ctx)
		switch {
		case err == nil:
			t.Reset(every)
		case errors.Is(err, raftstore.ErrLeaseHeld):
			l.markLost(err)
			return
		default:
			if !l.valid() {
				l.markLost(err)
				return
			}
			l.srv.logger.Warn("pop3 lease renewal failed, retrying", "lease", l.name, "err", err)
			t.Reset(min(every, time.Second))
		}
	}
}

func (l *lease) markLost(err error) {
	l.mu.Lock()
	l.lost = true
	l.mu.Unlock()
	l.srv.logger.Warn("pop3 maildrop lease lost", "lease", l.name, "err", err)
}

// valid reports whether the lease is still ours by the local estimate.
func (l *lease) valid() bool {
	if l == nil {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return !l.lost && time.Now().Before(l.validUntil)
}

// release stops renewing and gives the lease up. It runs on every session
// end, also after Server.Close, so it does not use the server's context; a
// release that fails leaves the lease to expire.
func (l *lease) release() {
	close(l.stop)
	<-l.done
	ctx, cancel := context.WithTimeout(context.Background(), min(l.srv.cfg.CommitTimeout, 5*time.Second))
	defer cancel()
	res, err := l.srv.be.Propose(ctx, &command.Command{Payload: &command.Lease{
		Name: l.name, Holder: l.holder, Op: command.LeaseRelease,
	}})
	if err == nil {
		err = res.Err()
	}
	if err != nil {
		l.srv.logger.Warn("pop3 lease release failed, it will expire", "lease", l.name, "err", err)
	}
}

// releaseLease releases the session's lease, if any.
func (s *session) releaseLease() {
	if s.lease != nil {
		s.lease.release()
		s.lease = nil
	}
}
