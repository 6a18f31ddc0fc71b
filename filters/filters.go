// Package filters is the in-session check pipeline of the SMTP frontends:
// checks see a connection at connect, HELO, MAIL, RCPT and end of DATA and
// answer with a Verdict value (mox style), which the pipeline merges
// (Reject > TempFail > Tag > Accept, maddy style). The package knows no
// SMTP library types; frontends map a Verdict to their protocol reply.
// See DESIGN.md.
package filters

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/netip"
	"sync"
)

// Action is what a verdict asks the frontend to do with the message (or
// connection, at the connect stage).
type Action int

// Actions in increasing order of precedence: merging keeps the highest.
const (
	// Accept lets the message through (possibly with headers).
	Accept Action = iota
	// Tag delivers the message into the recipients' Junk mailboxes with the
	// verdict's headers added (quarantine).
	Tag
	// TempFail answers 4xx so the client retries later.
	TempFail
	// Reject answers 5xx.
	Reject
)

func (a Action) String() string {
	switch a {
	case Accept:
		return "accept"
	case Tag:
		return "tag"
	case TempFail:
		return "tempfail"
	case Reject:
		return "reject"
	}
	return fmt.Sprintf("action(%d)", int(a))
}

// Stage names the SMTP phase a verdict was given in; it chooses the
// default reply codes.
type Stage int

// Stages in session order.
const (
	StageConnect Stage = iota
	StageHelo
	StageMail
	StageRcpt
	StageData
)

func (s Stage) String() string {
	return [...]string{"connect", "helo", "mail", "rcpt", "data"}[s]
}

// Header is one header field a check wants added to the message.
type Header struct {
	Key, Value string
}

// Verdict is a check's (or the pipeline's merged) decision. The zero value
// accepts.
type Verdict struct {
	Action Action
	// Code and Enhanced override the default SMTP reply for the action and
	// stage (see Reply). Zero means default.
	Code     int
	Enhanced [3]int
	// Reason is the text the client sees. Keep it generic ("message
	// rejected by policy"); details belong in Err.
	Reason string
	// Err is the detail for logs only, never sent to the client.
	Err error
	// Check names the check that decided (set by the pipeline).
	Check string
	// Headers are added to the message (accumulated across checks and
	// stages, whatever the action).
	Headers []Header
	// Score is the check's contribution to the message's spam score (the
	// pipeline multiplies it by the check's Policy.Weight; merged verdicts
	// carry the sum). Profiles with thresholds (Config.TagScore,
	// Config.RejectScore) turn the total into Tag or Reject at DATA.
	Score float64
	// Scores lists every check's weighted score (set by the pipeline,
	// accumulated by Merge) for the verdict log line and X-Spam-Status.
	Scores []CheckScore
}

// CheckScore is one check's weighted score in a merged verdict.
type CheckScore struct {
	Check string
	Score float64
}

// Reply returns the SMTP reply for a verdict at a stage: the verdict's own
// code if set, else the default. Accept and Tag return 0.
//
// Defaults: at connect, Reject is 554 5.7.1 (RFC 5321 §3.1: 554 instead of
// the greeting) and TempFail 421 4.7.0 (the frontend then closes); at later
// stages Reject is 550 5.7.1 and TempFail 451 4.7.1 (RFC 3463 §3.8).
func (v Verdict) Reply(stage Stage) (code int, enhanced [3]int, text string) {
	if v.Action < TempFail {
		return 0, [3]int{}, ""
	}
	switch {
	case v.Action == Reject && stage == StageConnect:
		code, enhanced, text = 554, [3]int{5, 7, 1}, "Connection refused by policy"
	case v.Action == Reject:
		code, enhanced, text = 550, [3]int{5, 7, 1}, "Message rejected by policy"
	case stage == StageConnect:
		code, enhanced, text = 421, [3]int{4, 7, 0}, "Try again later"
	default:
		code, enhanced, text = 451, [3]int{4, 7, 1}, "Try again later"
	}
	if v.Code != 0 {
		code = v.Code
		if v.Enhanced != ([3]int{}) {
			enhanced = v.Enhanced
		} else {
			enhanced = [3]int{code / 100, 0, 0}
		}
	}
	if v.Reason != "" {
		text = v.Reason
	}
	return code, enhanced, text
}

// ConnInfo describes the client. The frontend fills it before Connect and
// updates TLS and Account between stages (never while a stage runs), so
// checks may read it from any stage.
type ConnInfo struct {
	// ID is the frontend's connection id (for logs).
	ID string
	// IP is the client address (from the PROXY header when trusted).
	IP netip.Addr
	// Proxied is true when IP came from a trusted PROXY header.
	Proxied bool
	// Profile is the frontend profile ("mx" or "submission").
	Profile string
	// Trusted is set by the pipeline when IP is in Config.Trusted: checks
	// that judge the client (deny lists, rate limits, DNSBL) skip it.
	Trusted bool
	// Helo is the HELO/EHLO name once given.
	Helo string
	// TLS is the TLS state once negotiated, nil before.
	TLS *tls.ConnectionState
	// Account is the authenticated account (submission), "" before.
	Account string
}

// Mail is the MAIL FROM command. RFC 5321 §4.1.1.2.
type Mail struct {
	From string
	// Size is the SIZE= parameter (RFC 1870), 0 if absent.
	Size int64
	// UTF8 is the SMTPUTF8 parameter (RFC 6531).
	UTF8 bool
}

// Rcpt is one accepted-so-far RCPT TO (the frontend has checked it against
// the directory). RFC 5321 §4.1.1.3.
type Rcpt struct {
	To string
	// Account is the local account the address resolves to.
	Account string
}

// Body gives each body check its own reader over the spooled message
// (header and body, CRLF line ends).
type Body interface {
	Open() (io.ReadCloser, error)
	Len() int64
}

// BytesBody is a Body over a byte slice.
type BytesBody []byte

// Open returns a reader over the bytes.
func (b BytesBody) Open() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }

// Len returns the size.
func (b BytesBody) Len() int64 { return int64(len(b)) }

// ReadBody returns the whole message. A BytesBody is returned as is, not
// copied: callers must not modify the result.
func ReadBody(b Body) ([]byte, error) {
	if bb, ok := b.(BytesBody); ok {
		return bb, nil
	}
	r, err := b.Open()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var buf bytes.Buffer
	buf.Grow(int(min(b.Len(), 64<<20)) + bytes.MinRead)
	if _, err := buf.ReadFrom(r); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Message is what body checks see at the end of DATA.
type Message struct {
	From  string
	Rcpts []string
	// Body is the whole message (header and body); mimetext.FromMessage
	// parses it once for every check that reads it.
	Body Body

	memo sync.Map // key → *memoEntry, see Memo
}

type memoEntry struct {
	once sync.Once
	v    any
	err  error
}

// Memo returns fn's result computed once per message and key, so that
// concurrent body checks share work such as MIME parsing (the first
// caller computes, the others wait for it).
func (m *Message) Memo(key any, fn func() (any, error)) (any, error) {
	e, _ := m.memo.LoadOrStore(key, &memoEntry{})
	me := e.(*memoEntry)
	me.once.Do(func() { me.v, me.err = fn() })
	return me.v, me.err
}

// Check is one filter. NewState is called once per connection, before
// the SMTP greeting; the State then sees every stage of that connection.
type Check interface {
	Name() string
	NewState(ctx context.Context, conn *ConnInfo) (State, error)
}

// State is a check's per-connection state. Methods of one State are called
// from one goroutine at a time, in session order; Body may run
// concurrently with other checks' Body. Every method must honour ctx (the
// pipeline abandons a call at its timeout, but cannot stop it). Embed
// NopState to implement only the stages a check cares about.
type State interface {
	Connect(ctx context.Context) Verdict
	Helo(ctx context.Context, name string) Verdict
	Mail(ctx context.Context, m Mail) Verdict
	Rcpt(ctx context.Context, r Rcpt) Verdict
	Body(ctx context.Context, m *Message) Verdict
	// Reset ends a transaction (RSET, a new MAIL, end of DATA).
	Reset()
	// Close ends the connection; it releases what the state holds.
	Close() error
}

// Inline is implemented by a State whose calls at some stages only
// compute: no network, no disk, no waiting on others, time bounded by
// the message's size limit. The pipeline makes those calls on the SMTP
// session's goroutine, without the goroutine and the timer that bound a
// call that may wait (they were about 4% of an MX frontend's CPU, for
// checks that mostly answer "accept" at once). The check's timeout does
// not apply to them; a panic still disables the check for the rest of
// the connection. NewState and the connect stage are never inline.
// Declare each stage explicitly: a check that embeds NopState and adds a
// method that waits must not report that stage inline.
type Inline interface {
	Inline(stage Stage) bool
}

// NopState accepts at every stage.
type NopState struct{}

func (NopState) Connect(context.Context) Verdict        { return Verdict{} }
func (NopState) Helo(context.Context, string) Verdict   { return Verdict{} }
func (NopState) Mail(context.Context, Mail) Verdict     { return Verdict{} }
func (NopState) Rcpt(context.Context, Rcpt) Verdict     { return Verdict{} }
func (NopState) Body(context.Context, *Message) Verdict { return Verdict{} }
func (NopState) Reset()                                 {}
func (NopState) Close() error                           { return nil }

var _ State = NopState{}
