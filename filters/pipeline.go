package filters

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime/debug"
	"sync"
	"time"
)

// OnHit says what a check's hit does (maddy's FailAction, set in config).
type OnHit int

const (
	// HitDefault keeps the check's own action.
	HitDefault OnHit = iota
	// HitReject turns a Tag into a Reject.
	HitReject
	// HitTag turns a Reject into a Tag (quarantine instead of refusing).
	HitTag
	// HitIgnore only logs: Reject, Tag and TempFail become Accept (dry
	// run). Headers are still added.
	HitIgnore
)

// OnError says what a failing check (error, panic, timeout) does.
type OnError int

const (
	// ErrorTempFail answers 4xx: fail closed (the default).
	ErrorTempFail OnError = iota
	// ErrorAccept ignores the failure: fail open (e.g. a DNSBL that is down).
	ErrorAccept
)

// Policy is the per-check configuration.
type Policy struct {
	OnHit   OnHit
	OnError OnError
	// Timeout bounds each call of the check; 0 takes the pipeline's.
	Timeout time.Duration
	// Weight multiplies the check's Score (0 means 1).
	Weight float64
}

// Configured is a check with its policy.
type Configured struct {
	Check  Check
	Policy Policy
}

// With pairs a check with a policy.
func With(c Check, p Policy) Configured { return Configured{Check: c, Policy: p} }

// Config configures a Pipeline.
type Config struct {
	// Trusted client networks (allow list): ConnInfo.Trusted is set for
	// them, and the built-in client checks (deny list, rate limits) let
	// them through.
	Trusted []netip.Prefix
	// Timeout bounds one check call at connect, HELO, MAIL and RCPT
	// (default 5s).
	Timeout time.Duration
	// BodyTimeout bounds one body check (default 30s).
	BodyTimeout time.Duration
	// TagScore, when > 0, tags (Junk) a message whose total score reaches
	// it, and adds X-Spam-Score and X-Spam-Status headers to every
	// message. RejectScore, when > 0, rejects at or above it (550 5.7.1).
	TagScore    float64
	RejectScore float64
	Logger      *slog.Logger
	// Observer counts each check's verdicts (observe.go); nil: none.
	Observer VerdictObserver
}

func (c *Config) setDefaults() {
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
	if c.BodyTimeout <= 0 {
		c.BodyTimeout = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Pipeline runs checks. It is immutable after New and shared by all
// connections. A nil *Pipeline runs no checks.
type Pipeline struct {
	cfg    Config
	checks []Configured
	logger *slog.Logger
}

// New returns a pipeline running checks in the given order.
func New(cfg Config, checks ...Configured) *Pipeline {
	cfg.setDefaults()
	return &Pipeline{cfg: cfg, checks: checks, logger: cfg.Logger.With("component", "filters")}
}

// failed marks a verdict as "the check could not decide".
type failure struct{ err error }

func (f failure) Error() string { return f.err.Error() }
func (f failure) Unwrap() error { return f.err }

// Failure is what a check returns when it cannot decide (a lookup failed):
// the check's OnError policy turns it into TempFail or Accept.
func Failure(err error) Verdict {
	return Verdict{Action: TempFail, Err: failure{err}}
}

// IsFailure reports whether v is a Failure.
func IsFailure(v Verdict) bool {
	var f failure
	return errors.As(v.Err, &f)
}

// Merge combines two verdicts: the higher action wins (Reject > TempFail >
// Tag > Accept; the first on a tie) and headers accumulate.
func Merge(a, b Verdict) Verdict {
	out := a
	if b.Action > a.Action {
		out = b
	}
	out.Headers = append(append([]Header(nil), a.Headers...), b.Headers...)
	out.Score = a.Score + b.Score
	out.Scores = append(append([]CheckScore(nil), a.Scores...), b.Scores...)
	return out
}

// Session is the pipeline's per-connection state. Its methods are called
// from the connection's goroutine, one at a time, in SMTP order.
type Session struct {
	p      *Pipeline
	info   *ConnInfo
	states []*stateEntry

	mu   sync.Mutex
	conn Verdict // Tag and headers from connect and HELO
	tx   Verdict // Tag and headers from MAIL and RCPT of this transaction
}

type stateEntry struct {
	cfg Configured
	st  State
	// busy is set when a call was abandoned (timeout) or panicked: it is
	// closed when that call returns. The state is not called again (one
	// goroutine at a time), and every later stage gets its OnError outcome.
	busy chan struct{}
}

var errDisabled = errors.New("check disabled after an earlier timeout or panic")

// inline reports whether the state's call at stage runs on the caller's
// goroutine (Inline).
func (e *stateEntry) inline(stage Stage) bool {
	in, ok := e.st.(Inline)
	return ok && stage != StageConnect && e.busy == nil && in.Inline(stage)
}

// closedBusy marks a check disabled by a panic in an inline call: no call
// of it is still running.
var closedBusy = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// protect runs fn, turning a panic into a failure verdict (logged with
// its stack) and reporting it: the caller then disables the check.
func (s *Session) protect(name string, stage Stage, fn func() Verdict) (v Verdict, panicked bool) {
	defer func() {
		if r := recover(); r != nil {
			s.p.logger.Error("filter panic", "check", name, "stage", stage.String(), "conn", s.info.ID,
				"panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			v, panicked = Failure(fmt.Errorf("panic: %v", r)), true
		}
	}()
	return fn(), false
}

// Connect builds every check's state for a new connection and runs the
// connect stage. The caller must Close the session whatever the verdict.
func (p *Pipeline) Connect(ctx context.Context, info *ConnInfo) (*Session, Verdict) {
	s := &Session{p: p, info: info}
	if p == nil {
		return s, Verdict{}
	}
	for _, pfx := range p.cfg.Trusted {
		if pfx.Contains(info.IP.Unmap()) {
			info.Trusted = true
		}
	}
	var merged Verdict
	for _, c := range p.checks {
		e := &stateEntry{cfg: c}
		v := s.call(ctx, e, StageConnect, func(ctx context.Context, _ State) Verdict {
			st, err := c.Check.NewState(ctx, info)
			if err != nil {
				return Failure(fmt.Errorf("new state: %w", err))
			}
			e.st = st
			return st.Connect(ctx)
		})
		s.states = append(s.states, e)
		merged = Merge(merged, v)
		if merged.Action >= TempFail {
			break
		}
	}
	s.conn = merged
	return s, merged
}

// Helo runs the HELO stage.
func (s *Session) Helo(ctx context.Context, name string) Verdict {
	s.info.Helo = name
	v := s.sequential(ctx, StageHelo, func(ctx context.Context, st State) Verdict { return st.Helo(ctx, name) })
	s.mu.Lock()
	s.conn = Merge(s.conn, keep(v))
	s.mu.Unlock()
	return v
}

// Mail runs the MAIL stage; it starts a new transaction.
func (s *Session) Mail(ctx context.Context, m Mail) Verdict {
	s.Reset()
	v := s.sequential(ctx, StageMail, func(ctx context.Context, st State) Verdict { return st.Mail(ctx, m) })
	s.mu.Lock()
	s.tx = Merge(s.tx, keep(v))
	s.mu.Unlock()
	return v
}

// Rcpt runs the RCPT stage for one recipient. A Reject or TempFail refuses
// only this recipient; a Tag applies to the whole message.
func (s *Session) Rcpt(ctx context.Context, r Rcpt) Verdict {
	v := s.sequential(ctx, StageRcpt, func(ctx context.Context, st State) Verdict { return st.Rcpt(ctx, r) })
	s.mu.Lock()
	s.tx = Merge(s.tx, keep(v))
	s.mu.Unlock()
	return v
}

// Data runs every body check concurrently and returns the final verdict of
// the transaction, merged with the tags and headers of earlier stages. A
// final Tag carries an X-Raftmail-Reason header naming the check.
func (s *Session) Data(ctx context.Context, m *Message) Verdict {
	out := make([]Verdict, len(s.states))
	body := func(ctx context.Context, st State) Verdict { return st.Body(ctx, m) }
	inline := make([]bool, len(s.states)) // decided before any call runs
	for i, e := range s.states {
		inline[i] = e.inline(StageData)
	}
	var wg sync.WaitGroup
	for i, e := range s.states {
		if !inline[i] {
			wg.Go(func() { out[i] = s.call(ctx, e, StageData, body) })
		}
	}
	for i, e := range s.states { // meanwhile, on this goroutine
		if inline[i] {
			out[i] = s.call(ctx, e, StageData, body)
		}
	}
	wg.Wait()
	s.mu.Lock()
	final := Merge(s.conn, s.tx)
	s.mu.Unlock()
	for _, v := range out {
		final = Merge(final, v)
	}
	final = s.p.score(final)
	s.logVerdict(final)
	if final.Action == Tag {
		final.Headers = append(final.Headers, Header{Key: "X-Raftmail-Reason", Value: "junk; check=" + final.Check})
	}
	return final
}

// Reset ends the transaction (RSET, new MAIL, end of DATA).
func (s *Session) Reset() {
	s.mu.Lock()
	s.tx = Verdict{}
	s.mu.Unlock()
	for _, e := range s.states {
		if e.busy == nil && e.st != nil {
			e.st.Reset()
		}
	}
}

// Close releases every check's state (after any abandoned call returns).
func (s *Session) Close() {
	for _, e := range s.states {
		if e.busy != nil {
			go func() {
				<-e.busy
				if e.st != nil {
					_ = e.st.Close()
				}
			}()
			continue
		}
		if e.st == nil {
			continue
		}
		if err := e.st.Close(); err != nil {
			s.p.logger.Warn("filter close", "check", e.cfg.Check.Name(), "err", err)
		}
	}
}

// keep returns what a stage verdict leaves for later stages: its headers
// and a Tag.
func keep(v Verdict) Verdict {
	if v.Action > Tag {
		return Verdict{Headers: v.Headers, Score: v.Score, Scores: v.Scores}
	}
	return v
}

// sequential runs a cheap stage check by check, stopping at the first
// TempFail or Reject.
func (s *Session) sequential(ctx context.Context, stage Stage, fn func(context.Context, State) Verdict) Verdict {
	var merged Verdict
	for _, e := range s.states {
		merged = Merge(merged, s.call(ctx, e, stage, fn))
		if merged.Action >= TempFail {
			break
		}
	}
	return merged
}

// call runs one check under its timeout with panic recovery and applies
// its policy.
func (s *Session) call(ctx context.Context, e *stateEntry, stage Stage, fn func(context.Context, State) Verdict) Verdict {
	name := e.cfg.Check.Name()
	var v Verdict
	switch {
	case e.busy != nil:
		v = Failure(errDisabled)
	case e.st == nil && stage != StageConnect:
		return Verdict{} // NewState failed and its OnError accepted
	case e.inline(stage):
		var panicked bool
		if v, panicked = s.protect(name, stage, func() Verdict { return fn(ctx, e.st) }); panicked {
			e.busy = closedBusy // disabled from now on
		}
	default:
		timeout := e.cfg.Policy.Timeout
		if timeout <= 0 {
			timeout = s.p.cfg.Timeout
			if stage == StageData {
				timeout = s.p.cfg.BodyTimeout
			}
		}
		cctx, cancel := context.WithTimeout(ctx, timeout)
		type outcome struct {
			v        Verdict
			panicked bool
		}
		ch := make(chan outcome, 1)
		done := make(chan struct{})
		go func() {
			defer close(done)
			v, panicked := s.protect(name, stage, func() Verdict { return fn(cctx, e.st) })
			ch <- outcome{v: v, panicked: panicked}
		}()
		select {
		case o := <-ch:
			v = o.v
			if o.panicked {
				e.busy = done // disabled from now on
			} else if cctx.Err() != nil && !IsFailure(v) {
				// An answer given after the deadline (a check that gave up
				// on ctx) is a timeout, whatever it says.
				v = Failure(fmt.Errorf("%s stage: %w", stage, cctx.Err()))
			}
		case <-cctx.Done():
			select {
			case o := <-ch:
				v = o.v
				if o.panicked {
					e.busy = done
				} else if !IsFailure(v) {
					v = Failure(fmt.Errorf("%s stage: %w", stage, cctx.Err()))
				}
			default:
				e.busy = done
				v = Failure(fmt.Errorf("%s stage timed out after %v", stage, timeout))
			}
		}
		cancel()
	}
	v.Check = name
	s.p.observe(name, stage, v)
	v = s.apply(e.cfg.Policy, v, stage)
	if w := e.cfg.Policy.Weight; w != 0 {
		v.Score *= w
	}
	if v.Score != 0 || stage == StageData {
		v.Scores = []CheckScore{{Check: name, Score: v.Score}}
	}
	return v
}

// apply turns a check's verdict into the pipeline's according to its
// policy, and logs anything but a plain accept.
func (s *Session) apply(p Policy, v Verdict, stage Stage) Verdict {
	// Built only when there is something to log: most verdicts are plain
	// accepts, and Logger.With formats its attributes at once (measured:
	// 5% of a frontend's CPU when it ran for every check at every stage).
	log := func() *slog.Logger {
		return s.p.logger.With("check", v.Check, "stage", stage.String(), "conn", s.info.ID, "ip", s.info.IP.String())
	}
	if IsFailure(v) {
		if p.OnError == ErrorAccept {
			log().Warn("filter failed, accepting (fail open)", "err", v.Err)
			return Verdict{Check: v.Check, Headers: v.Headers, Score: v.Score}
		}
		log().Warn("filter failed, temporary failure (fail closed)", "err", v.Err)
		// A check may choose the reply of its failure (clamav: 451 4.7.0).
		return Verdict{Action: TempFail, Code: v.Code, Enhanced: v.Enhanced, Reason: v.Reason,
			Err: v.Err, Check: v.Check, Headers: v.Headers}
	}
	orig := v.Action
	switch {
	case p.OnHit == HitIgnore && (v.Action != Accept || v.Score != 0):
		v = Verdict{Check: v.Check, Headers: v.Headers, Err: v.Err}
	case p.OnHit == HitTag && v.Action == Reject:
		v.Action, v.Code, v.Enhanced, v.Reason = Tag, 0, [3]int{}, ""
	case p.OnHit == HitReject && v.Action == Tag:
		v.Action = Reject
	}
	if orig != Accept {
		log().Info("filter hit", "verdict", orig.String(), "applied", v.Action.String(), "err", v.Err)
	}
	return v
}
