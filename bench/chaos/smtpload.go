package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
)

// maxMessageBytes is the frontends' SIZE limit; the workload sends a few
// messages over it to provoke 552.
const maxMessageBytes = 64 << 10

// smtpLoad is the SMTP workload: Senders goroutines each deliver one
// message at a time through the frontends, every message with a unique
// Message-ID. A 4xx or a broken connection is retried with identical
// bytes (as an MTA would) through the other frontend; a 250 or 5xx ends
// the message. A few messages go to an unknown user (550) or are too
// large (552): those must be stored nowhere.
type smtpLoad struct {
	frontends []string
	rcpts     []string
	senders   int
	seed      int64
	// attemptTimeout bounds one SMTP transaction.
	attemptTimeout time.Duration

	seq   atomic.Int64
	mu    sync.Mutex
	sends []Send
}

const maxAttempts = 8

func (l *smtpLoad) run(ctx context.Context) {
	var wg sync.WaitGroup
	for w := 0; w < l.senders; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(l.seed), uint64(w)+1))
			for ctx.Err() == nil {
				s := l.deliver(ctx, rng, w)
				l.mu.Lock()
				l.sends = append(l.sends, s)
				l.mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
}

// history returns the sends recorded so far.
func (l *smtpLoad) history() []Send {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Send(nil), l.sends...)
}

// deliver sends one new message until 250, 5xx, maxAttempts or the end.
func (l *smtpLoad) deliver(ctx context.Context, rng *rand.Rand, w int) Send {
	seq := l.seq.Add(1)
	msgID := fmt.Sprintf("%d.%d@%s", l.seed, seq, chaosDomain)
	rcpt := l.rcpts[rng.IntN(len(l.rcpts))]
	size := 200 + rng.IntN(1800)
	switch r := rng.IntN(100); {
	case r == 0:
		rcpt = fmt.Sprintf("nobody%d@%s", seq, chaosDomain) // 550 5.1.1
	case r == 1:
		size = maxMessageBytes + 1024 // 552 5.3.4
	}
	body := message(msgID, rcpt, size, rng)
	s := Send{MsgID: msgID, Rcpt: rcpt}
	backoff := 200 * time.Millisecond
	for i := 0; i < maxAttempts; i++ {
		fe := (w + i) % len(l.frontends)
		a := l.attempt(fe, rcpt, body)
		s.Attempts = append(s.Attempts, a)
		if a.Code >= 200 && a.Code < 300 || a.Code >= 500 || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
			return s
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
	return s
}

// message builds an RFC 5322 message of about size bytes.
func message(msgID, rcpt string, size int, rng *rand.Rand) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "From: sender@remote.example\r\nTo: %s\r\nSubject: chaos %s\r\nMessage-ID: <%s>\r\n"+
		"Date: Mon, 02 Jan 2026 15:04:05 +0000\r\n\r\n", rcpt, msgID, msgID)
	const words = "mail raft leader follower commit quorum term index snapshot partition heal "
	for b.Len() < size {
		line := 0
		for line < 70 {
			start := rng.IntN(len(words) - 10)
			w := words[start : start+1+rng.IntN(9)]
			b.WriteString(w)
			line += len(w)
		}
		b.WriteString("\r\n")
	}
	return []byte(b.String())
}

// attempt is one SMTP transaction through frontend fe.
func (l *smtpLoad) attempt(fe int, rcpt string, body []byte) Attempt {
	a := Attempt{Start: time.Now(), Frontend: fe}
	err := sendOnce(l.frontends[fe], rcpt, body, l.attemptTimeout)
	a.End = time.Now()
	var se *smtp.SMTPError
	switch {
	case err == nil:
		a.Code = 250
	case errors.As(err, &se):
		a.Code, a.Err = se.Code, se.Message
	default:
		a.Err = err.Error()
	}
	return a
}

func sendOnce(addr, rcpt string, body []byte, timeout time.Duration) error {
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	_ = conn.SetDeadline(time.Now().Add(timeout))
	c := smtp.NewClient(conn)
	defer c.Close()
	if err := c.Hello("sender.remote.example"); err != nil {
		return err
	}
	if err := c.SendMail("sender@remote.example", []string{rcpt}, bytes.NewReader(body)); err != nil {
		return err
	}
	_ = c.Quit()
	return nil
}
