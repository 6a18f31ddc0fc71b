package outbound

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/raftmail/raftmail/raftstore"
	"github.com/raftmail/raftmail/raftstore/command"
)

// worker delivers one domain's messages over one connection at a time,
// reused across transactions, until no message of the domain is pending.
func (ss *session) worker(ctx context.Context, domain string) {
	defer ss.wg.Done()
	w := &domainWorker{ss: ss, domain: domain}
	defer w.close()
	for {
		ids := ss.take(domain, ss.s.cfg.BatchSize)
		if len(ids) == 0 {
			return
		}
		w.batch(ctx, ids)
		if ctx.Err() != nil {
			// Leadership lost: drain our pending list without work.
			for ids := ss.take(domain, 1<<30); len(ids) > 0; ids = ss.take(domain, 1<<30) {
				ss.release(domain, ids...)
			}
			return
		}
	}
}

// domainWorker holds one worker's route and connection.
type domainWorker struct {
	ss       *session
	domain   string
	route    *route
	routeErr *Failure
	resolved bool
	conn     *remoteConn
}

func (w *domainWorker) close() {
	if w.conn != nil {
		w.conn.quit()
		w.conn = nil
	}
}

// claimed is one message with the recipients an attempt owns.
type claimed struct {
	entry raftstore.QueueEntry
	rcpts []*raftstore.QueueRcpt
}

// batch claims ids for one attempt and delivers each claimed message.
func (w *domainWorker) batch(ctx context.Context, ids []uint64) {
	ss := w.ss
	defer ss.release(w.domain, ids...)
	attempt := ss.nextAttemptID()
	now := ss.s.cfg.Now()
	items := make([]command.QueueItem, len(ids))
	for i, id := range ids {
		items[i] = command.QueueItem{ID: id, Domain: w.domain}
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	_, err := ss.propose(cctx, attempt, &command.QueueAttempt{Items: items, Holder: ss.holder, Attempt: attempt,
		Now: now.UnixNano(), Until: now.Add(ss.s.cfg.ClaimTTL).UnixNano(), Takeover: true})
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			ss.logger.Warn("claim queued messages", "domain", w.domain, "messages", len(ids), "err", err)
		}
		return
	}
	// Results are committed in the background while the connection
	// carries the next transaction (raft batches them); the batch ends,
	// and its messages are released, once every result has committed.
	var records sync.WaitGroup
	defer records.Wait()
	for _, c := range w.readClaims(ids, attempt) {
		if ctx.Err() != nil {
			return
		}
		w.deliver(ctx, attempt, c, &records)
	}
}

// readClaims reads the claimed recipients back from local state (the
// leader has applied its own proposal).
func (w *domainWorker) readClaims(ids []uint64, attempt string) []claimed {
	var out []claimed
	_ = w.ss.s.st.View(func(r *raftstore.ReadTx) error {
		for _, id := range ids {
			e, err := r.QueueEntry(id)
			if err != nil {
				continue
			}
			c := claimed{entry: e}
			for i := range c.entry.Rcpts {
				if rc := &c.entry.Rcpts[i]; rc.Attempt == attempt {
					c.rcpts = append(c.rcpts, rc)
				}
			}
			if len(c.rcpts) > 0 {
				out = append(out, c)
			}
		}
		return nil
	})
	return out
}

// deliver makes one attempt for one message and records its outcome.
func (w *domainWorker) deliver(ctx context.Context, attempt string, c claimed, records *sync.WaitGroup) {
	ss := w.ss
	start := time.Now()
	results, mta, tlsUsed := w.transact(ctx, c)
	if ctx.Err() != nil {
		return // leadership lost mid-attempt: the next leader retries
	}
	now := ss.s.cfg.Now()
	res := &command.QueueResult{ID: c.entry.ID, Attempt: attempt, Now: now.UnixNano()}
	var maxAttempts uint32
	for _, r := range c.rcpts {
		maxAttempts = max(maxAttempts, r.Attempts+1)
	}
	expires := time.Unix(0, c.entry.Created).Add(ss.s.cfg.MaxAge)
	next := now.Add(ss.s.cfg.retryDelay(maxAttempts))
	if next.After(expires) {
		next = expires // one last try at the maximum age
	}
	res.NextAttempt = next.UnixNano()
	counts := map[command.QueueOutcome]int{}
	for i := range results {
		rr := &results[i]
		if rr.Outcome == command.OutcomeTempFail && !now.Before(expires) {
			rr.Outcome, rr.Status = command.OutcomePermFail, "4.4.7"
			rr.Reply = fmt.Sprintf("delivery time expired after %v; last error: %s", ss.s.cfg.MaxAge, rr.Reply)
		}
		counts[rr.Outcome]++
	}
	res.Rcpts = results
	w.count(counts)
	w.logAttempt(c, results, mta, tlsUsed, time.Since(start))
	records.Add(1)
	go func() {
		defer records.Done()
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if _, err := ss.propose(cctx, fmt.Sprintf("%s/r%d", attempt, c.entry.ID), res); err != nil && ctx.Err() == nil {
			ss.logger.Warn("record attempt", "queue_id", c.entry.ID, "err", err)
		}
	}()
}

func (w *domainWorker) count(counts map[command.QueueOutcome]int) {
	m := &w.ss.s.metrics
	m.Attempts.Add(1)
	m.Delivered.Add(uint64(counts[command.OutcomeDelivered]))
	m.Deferred.Add(uint64(counts[command.OutcomeTempFail]))
	m.Failed.Add(uint64(counts[command.OutcomePermFail]))
}

// logAttempt writes the one line per attempt.
func (w *domainWorker) logAttempt(c claimed, results []command.QueueRcptResult, mta string, tlsUsed bool, d time.Duration) {
	for _, rr := range results {
		outcome := map[command.QueueOutcome]string{command.OutcomeDelivered: "delivered",
			command.OutcomeTempFail: "deferred", command.OutcomePermFail: "failed"}[rr.Outcome]
		w.ss.logger.Info("outbound attempt", "queue_id", c.entry.ID, "from", c.entry.From, "rcpt", rr.Addr,
			"domain", w.domain, "mta", mta, "tls", tlsUsed, "outcome", outcome, "code", rr.Code, "status", rr.Status,
			"reply", rr.Reply, "ms", d.Milliseconds())
	}
}

// transact resolves the domain (once per worker), reads and signs the
// body and runs the SMTP transaction, reconnecting once when a reused
// connection turns out dead.
func (w *domainWorker) transact(ctx context.Context, c claimed) ([]command.QueueRcptResult, string, bool) {
	if !w.resolved {
		w.route, w.routeErr = w.ss.s.res.resolve(ctx, w.domain)
		w.resolved = true
	}
	if w.routeErr != nil {
		return allFailed(c.rcpts, w.routeErr), "", false
	}
	body, err := w.ss.s.messageFor(c.entry)
	if err != nil {
		w.ss.logger.Error("read queued body", "queue_id", c.entry.ID, "err", err)
		return allFailed(c.rcpts, tempFail("4.3.0", "local error reading the message: %v", err)), "", false
	}
	for try := 0; try < 2; try++ {
		reused := w.conn != nil
		if w.conn == nil {
			conn, f := w.ss.s.connect(ctx, w.route)
			if f != nil {
				return allFailed(c.rcpts, f), f.MTA, false
			}
			w.conn = conn
		} else {
			w.ss.s.metrics.Reused.Add(1)
		}
		results, err := w.conn.send(c.entry, c.rcpts, body)
		mta, tlsUsed := w.conn.host, w.conn.tls
		if err != nil || w.conn.used >= w.ss.s.cfg.MaxMessagesPerConn {
			w.conn.quit()
			w.conn = nil
		}
		var ne *netError
		if errors.As(err, &ne) && reused && ne.early {
			continue // the idle connection had died: once more on a new one
		}
		return results, mta, tlsUsed
	}
	return allFailed(c.rcpts, tempFail("4.4.2", "connection lost")), "", false
}

func allFailed(rcpts []*raftstore.QueueRcpt, f *Failure) []command.QueueRcptResult {
	out := make([]command.QueueRcptResult, len(rcpts))
	for i, r := range rcpts {
		out[i] = resultOf(r.Addr, f)
	}
	return out
}

func resultOf(addr string, f *Failure) command.QueueRcptResult {
	o := command.OutcomeTempFail
	if f.Permanent() {
		o = command.OutcomePermFail
	}
	return command.QueueRcptResult{Addr: addr, Outcome: o, Code: f.Code, Status: f.Status, Reply: f.Msg, MTA: f.MTA}
}
