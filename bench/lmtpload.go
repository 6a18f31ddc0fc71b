package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
)

// LMTPLoad describes an LMTP (or, with SMTP set, SMTP) delivery load.
type LMTPLoad struct {
	// SMTP speaks SMTP (EHLO) instead of LMTP (LHLO).
	SMTP bool
	// Targets are LMTP addresses; connections spread over them.
	Targets []string
	// Concurrency is the number of connections sending at once.
	Concurrency int
	// Total deliveries to make (0: until Duration).
	Total int
	// Duration bounds the run when Total is 0.
	Duration time.Duration
	// Message returns the body of delivery seq.
	Message func(seq int64) []byte
	// Rcpt returns the recipient of delivery seq.
	Rcpt func(seq int64) string
	// From is the envelope sender (default bench@remote.test).
	From string
	// Rec receives the results (default: a new recorder); pass one to
	// watch progress while the load runs.
	Rec *Recorder
}

// RunLMTP runs the load over persistent LMTP connections (one transaction
// at a time per connection, as an MTA's LMTP client does) and reports.
func RunLMTP(ctx context.Context, l LMTPLoad) Summary {
	rec := l.Rec
	if rec == nil {
		rec = NewRecorder()
	}
	if l.From == "" {
		l.From = "bench@remote.test"
	}
	var next atomic.Int64
	if l.Duration > 0 && l.Total == 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, l.Duration)
		defer cancel()
	}
	var wg sync.WaitGroup
	for w := 0; w < l.Concurrency; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			var c *smtp.Client
			defer func() {
				if c != nil {
					c.Close()
				}
			}()
			for ctx.Err() == nil {
				seq := next.Add(1)
				if l.Total > 0 && seq > int64(l.Total) {
					return
				}
				if c == nil {
					var err error
					if c, err = dial(l.Targets[(w+int(seq))%len(l.Targets)], l.SMTP); err != nil {
						rec.Fail("connect")
						time.Sleep(50 * time.Millisecond) // back off a refused connection
						continue
					}
				}
				body := l.Message(seq)
				start := time.Now()
				if err := lmtpOne(c, l.From, l.Rcpt(seq), body); err != nil {
					rec.Fail(replyClass(err))
					// A refused command leaves the session usable:
					// RSET and go on; anything else reconnects.
					var se *smtp.SMTPError
					if !errors.As(err, &se) || c.Reset() != nil {
						c.Close()
						c = nil
					}
					continue
				}
				rec.Ok(time.Since(start), len(body))
			}
		}(w)
	}
	wg.Wait()
	rec.Stop()
	return rec.Summary()
}

func dial(addr string, smtpProto bool) (*smtp.Client, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c := smtp.NewClientLMTP(conn)
	if smtpProto {
		c = smtp.NewClient(conn)
	}
	if err := c.Hello("bench.local"); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func lmtpOne(c *smtp.Client, from, rcpt string, body []byte) error {
	return c.SendMail(from, []string{rcpt}, bytes.NewReader(body))
}

// replyClass names an error by its SMTP code, for the error table.
func replyClass(err error) string {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return fmt.Sprint(se.Code)
	}
	var le smtp.LMTPDataError
	if errors.As(err, &le) {
		for _, e := range le {
			return fmt.Sprint(e.Code)
		}
	}
	return "io"
}
