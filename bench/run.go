package bench

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
)

// ProtocolNames are the loads Run knows.
const ProtocolNames = "smtp|lmtp|imap|pop3"

// Options is one load run, as "raftmail bench PROTO" takes it.
type Options struct {
	Proto       string
	Targets     []string
	Concurrency int
	Duration    time.Duration
	// Total, when above 0, ends an SMTP/LMTP run after that many
	// deliveries instead of after Duration.
	Total int
	// Message makes delivery seq (SMTP/LMTP and prefill).
	Message func(seq int64) []byte
	Users   []Cred
	Mixed   bool
	// Rcpt, if set, overrides the recipient of delivery seq (default: the
	// users in turn).
	Rcpt func(seq int64) string
	Rec  *Recorder
}

// MessageSource returns the message maker for a corpus directory or, when
// size > 0, synthetic messages of that size. Every message is unique.
func MessageSource(corpus string, size int) (func(seq int64) []byte, error) {
	if size > 0 {
		return func(seq int64) []byte { return Synthetic(size, int(seq)) }, nil
	}
	msgs, err := LoadCorpus(corpus, 0)
	if err != nil {
		return nil, err
	}
	return func(seq int64) []byte { return Unique(msgs[seq%int64(len(msgs))], seq) }, nil
}

// Run runs one load and returns its summary.
func Run(ctx context.Context, o Options) (Summary, error) {
	if len(o.Targets) == 0 || len(o.Users) == 0 {
		return Summary{}, fmt.Errorf("bench %s: need targets and users", o.Proto)
	}
	if o.Rec == nil {
		o.Rec = NewRecorder()
	}
	switch o.Proto {
	case "smtp", "lmtp":
		if o.Message == nil {
			return Summary{}, fmt.Errorf("bench %s: no message source", o.Proto)
		}
		rcpt := o.Rcpt
		if rcpt == nil {
			rcpt = func(seq int64) string { return o.Users[seq%int64(len(o.Users))].User }
		}
		return RunLMTP(ctx, LMTPLoad{SMTP: o.Proto == "smtp", Targets: o.Targets, Concurrency: o.Concurrency,
			Total: o.Total, Duration: o.Duration, Message: o.Message, Rcpt: rcpt, Rec: o.Rec}), nil
	case "imap", "pop3":
		l := ReadLoad{Targets: o.Targets, Concurrency: o.Concurrency, Duration: o.Duration, Users: o.Users,
			Mixed: o.Mixed, Rec: o.Rec}
		if o.Proto == "imap" {
			return RunIMAP(ctx, l), nil
		}
		return RunPOP3(ctx, l), nil
	}
	return Summary{}, fmt.Errorf("bench: unknown protocol %q (want %s)", o.Proto, ProtocolNames)
}

// Prefill delivers perUser messages to every user over LMTP (or SMTP when
// smtpProto is set) with concurrency conc, and fails unless all commit.
func Prefill(ctx context.Context, targets []string, smtpProto bool, users []Cred, perUser, conc int,
	msg func(seq int64) []byte) (Summary, error) {
	n := perUser * len(users)
	s := RunLMTP(ctx, LMTPLoad{SMTP: smtpProto, Targets: targets, Concurrency: conc, Total: n, Message: msg,
		Rcpt: func(seq int64) string { return users[seq%int64(len(users))].User }})
	if s.Ops != n {
		return s, fmt.Errorf("prefill: %d of %d deliveries committed (errors %s)", s.Ops, n, s.ErrorString())
	}
	return s, nil
}

// Progress draws a progress bar on w while a timed run goes on (or, with
// total > 0, until total operations); call the returned stop when done.
func Progress(w io.Writer, label string, rec *Recorder, d time.Duration, total int) (stop func()) {
	max := int64(d / (100 * time.Millisecond))
	if total > 0 {
		max = int64(total)
	}
	bar := progressbar.NewOptions64(max, progressbar.OptionSetWriter(w), progressbar.OptionSetDescription(label),
		progressbar.OptionSetWidth(30), progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionClearOnFinish())
	done := make(chan struct{})
	finished := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(finished)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				_ = bar.Finish()
				return
			case <-t.C:
				pos := int64(time.Since(start) / (100 * time.Millisecond))
				if total > 0 {
					pos = rec.Ops() + rec.Failed()
				}
				bar.Describe(fmt.Sprintf("%s %d ok, %d failed", label, rec.Ops(), rec.Failed()))
				_ = bar.Set64(min(pos, max))
			}
		}
	}()
	return func() { close(done); <-finished; fmt.Fprintln(w) }
}

// WriteTable prints a run's result as an aligned table.
func WriteTable(w io.Writer, title string, s Summary) {
	fmt.Fprintf(w, "%s\n", title)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "ops\tops/s\tMB/s\tp50\tp90\tp99\tmax\telapsed\t")
	fmt.Fprintf(tw, "%d\t%.0f\t%.2f\t%s\t%s\t%s\t%s\t%s\t\n", s.Ops, s.PerSec, s.MBPerS, FmtDur(s.P50), FmtDur(s.P90),
		FmtDur(s.P99), FmtDur(s.Max), s.Elapsed.Round(time.Millisecond))
	_ = tw.Flush()
	fmt.Fprintf(w, "errors by code: %s\n", s.ErrorString())
}

// FmtDur prints a latency in milliseconds with sensible precision.
func FmtDur(d time.Duration) string {
	ms := float64(d.Microseconds()) / 1000
	switch {
	case ms >= 100:
		return fmt.Sprintf("%.0fms", ms)
	case ms >= 10:
		return fmt.Sprintf("%.1fms", ms)
	}
	return fmt.Sprintf("%.2fms", ms)
}
