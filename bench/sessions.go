package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Cred is one mailbox's login.
type Cred struct {
	User string `json:"user"`
	Pass string `json:"pass"`
}

// Users returns the logins user0@domain .. user(n-1)@domain, all with the
// same password: the accounts the load generators spread over.
func Users(prefix, domain, pass string, n int) []Cred {
	out := make([]Cred, n)
	for i := range out {
		out[i] = Cred{User: fmt.Sprintf("%s%d@%s", prefix, i, domain), Pass: pass}
	}
	return out
}

// ReadLoad describes a read benchmark (IMAP or POP3): every user's mailbox
// is opened once (logins are not timed), then Concurrency workers go round
// their mailboxes reading every message until Duration ends.
type ReadLoad struct {
	// Targets are server addresses; mailboxes spread over them.
	Targets []string
	// Concurrency is the number of clients reading at once; the mailboxes
	// are dealt out to them round-robin.
	Concurrency int
	// Duration bounds the timed phase.
	Duration time.Duration
	// Users are the mailboxes to read.
	Users []Cred
	// Mixed (IMAP only) replaces the full FETCH with a mix of single
	// FETCH BODY.PEEK[], STORE flags, SEARCH and a short IDLE.
	Mixed bool
	// Rec receives the results (default: a new recorder). Login failures
	// are kept; the clock restarts once every mailbox is open.
	Rec *Recorder
	// OpTimeout bounds one protocol round trip (default 60s).
	OpTimeout time.Duration
}

// readSession is one logged-in mailbox of a read load.
type readSession interface {
	// round reads the mailbox once (or, mixed, does one operation) and
	// records what it did.
	round(rec *Recorder, seq int64) error
	close()
}

// runSessions logs every user in (in parallel, untimed), then lets each
// worker go round its sessions until the duration ends.
func runSessions(ctx context.Context, l ReadLoad, open func(target string, u Cred) (readSession, error),
	code func(error) string) Summary {
	rec := l.Rec
	if rec == nil {
		rec = NewRecorder()
	}
	conc := max(1, l.Concurrency)
	sessions := make([][]readSession, conc)
	var mu sync.Mutex
	var wg sync.WaitGroup
	var next atomic.Int64
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(l.Users) || ctx.Err() != nil {
					return
				}
				s, err := open(l.Targets[i%len(l.Targets)], l.Users[i])
				if err != nil {
					rec.Fail(code(err))
					continue
				}
				mu.Lock()
				sessions[i%conc] = append(sessions[i%conc], s)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	defer func() {
		for _, ss := range sessions {
			for _, s := range ss {
				s.close()
			}
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, l.Duration)
	defer cancel()
	rec.Restart()
	var seq atomic.Int64
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func(mine []readSession) {
			defer wg.Done()
			for len(mine) > 0 && ctx.Err() == nil {
				for i := 0; i < len(mine) && ctx.Err() == nil; i++ {
					if err := mine[i].round(rec, seq.Add(1)); err != nil {
						rec.Fail(code(err))
						mine[i].close()
						mine = append(mine[:i], mine[i+1:]...)
						i--
					}
				}
			}
		}(sessions[w])
	}
	wg.Wait()
	rec.Stop()
	return rec.Summary()
}
