package outbound

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/raftmail/raftmail/frontends"
	"github.com/raftmail/raftmail/raftstore"
	"github.com/raftmail/raftmail/raftstore/command"
)

// report builds the delivery status notification owed for a message and
// commits it (QueueDSN), which puts it into the sender's INBOX and marks
// the recipients reported in the same apply.
func (ss *session) report(ctx context.Context, id uint64) {
	defer ss.wg.Done()
	defer func() {
		ss.mu.Lock()
		delete(ss.reports, id)
		ss.mu.Unlock()
	}()
	s := ss.s
	var e raftstore.QueueEntry
	var raw []byte
	err := s.st.View(func(r *raftstore.ReadTx) error {
		var err error
		if e, err = r.QueueEntry(id); err != nil {
			return err
		}
		raw, err = r.Body(e.BlobID)
		return err
	})
	if err != nil {
		ss.logger.Warn("read message to report on", "queue_id", id, "err", err)
		return
	}
	var owed []*raftstore.QueueRcpt
	var addrs []string
	for i := range e.Rcpts {
		if r := &e.Rcpts[i]; r.Report && !r.Reported {
			owed = append(owed, r)
			addrs = append(addrs, r.Addr)
		}
	}
	if len(owed) == 0 {
		return
	}
	msg := s.buildDSN(e, owed, stripReturnPath(raw))
	meta, err := frontends.ParseMeta(msg)
	if err != nil {
		meta = nil
	}
	blob := s.st.Codec().NewBlob(msg, meta)
	key := fmt.Sprintf("dsn/%d/%s", id, hex.EncodeToString(blob.ID[:8]))
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	commit := func(ctx context.Context, c *command.Command) (raftstore.Result, error) { return s.st.Propose(ctx, c) }
	if err := frontends.SendBlob(cctx, commit, &blob, key); err != nil {
		ss.logger.Warn("upload status notification", "queue_id", id, "err", err)
		return
	}
	res, err := ss.propose(cctx, key, &command.QueueDSN{ID: id, Rcpts: addrs, Blob: blob})
	if err != nil {
		if ctx.Err() == nil {
			ss.logger.Warn("deliver status notification", "queue_id", id, "err", err)
		}
		return
	}
	for _, rr := range res.Rcpts {
		if err := rr.Status.Err(); err != nil {
			ss.logger.Warn("status notification refused by the sender's mailbox", "queue_id", id, "to", e.From, "err", err)
		}
	}
	s.metrics.DSNs.Add(1)
	ss.logger.Info("status notification delivered", "queue_id", id, "to", e.From, "rcpts", strings.Join(addrs, ","))
}

// buildDSN writes an RFC 3464 multipart/report (RFC 6522): a readable
// part, the message/delivery-status part, and the original headers
// (text/rfc822-headers) or, with RET=FULL and a body under
// MaxReturnBytes, the whole message (message/rfc822).
func (s *Service) buildDSN(e raftstore.QueueEntry, rcpts []*raftstore.QueueRcpt, orig []byte) []byte {
	var rb [12]byte
	_, _ = rand.Read(rb[:])
	boundary := "=_dsn_" + hex.EncodeToString(rb[:])
	now := s.cfg.Now()
	failed := false
	for _, r := range rcpts {
		failed = failed || r.State == raftstore.RcptFailed
	}
	subject := "Delivery Status Notification (Success)"
	if failed {
		subject = "Undelivered Mail Returned to Sender"
	}
	var b bytes.Buffer
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\r\n", args...) }
	w("From: Mail Delivery System <MAILER-DAEMON@%s>", s.cfg.Hostname)
	w("To: <%s>", e.From)
	w("Subject: %s", subject)
	w("Date: %s", now.Format(time.RFC1123Z))
	w("Message-ID: <dsn.%d.%s@%s>", e.ID, hex.EncodeToString(rb[:6]), s.cfg.Hostname)
	w("Auto-Submitted: auto-replied") // RFC 3834 §5
	w("MIME-Version: 1.0")
	w("Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"%s\"", boundary)
	w("")
	w("--%s", boundary)
	w("Content-Type: text/plain; charset=utf-8")
	w("Content-Description: Notification")
	w("")
	s.humanPart(w, e, rcpts)
	w("")
	w("--%s", boundary)
	w("Content-Type: message/delivery-status")
	w("Content-Description: Delivery report")
	w("")
	s.statusPart(w, e, rcpts)
	w("--%s", boundary)
	headers := orig
	if i := bytes.Index(orig, []byte("\r\n\r\n")); i >= 0 {
		headers = orig[:i+2]
	}
	if e.Ret == "FULL" && len(orig) <= s.cfg.MaxReturnBytes {
		w("Content-Type: message/rfc822")
		w("Content-Description: Undelivered message")
		w("")
		b.Write(orig)
	} else {
		w("Content-Type: text/rfc822-headers")
		w("Content-Description: Headers of the undelivered message")
		w("")
		b.Write(headers)
	}
	if !bytes.HasSuffix(b.Bytes(), []byte("\r\n")) {
		w("")
	}
	w("")
	w("--%s--", boundary)
	return b.Bytes()
}

func (s *Service) humanPart(w func(string, ...any), e raftstore.QueueEntry, rcpts []*raftstore.QueueRcpt) {
	w("This is the mail system at %s.", s.cfg.Hostname)
	w("")
	for _, r := range rcpts {
		switch r.State {
		case raftstore.RcptFailed:
			w("Your message could not be delivered to <%s>:", r.Addr)
		default:
			w("Your message was delivered to <%s> (the receiving system sends no further report).", r.Addr)
		}
		if r.LastReply != "" {
			w("    %s", oneLine(r.LastReply))
		}
		w("")
	}
}

// statusPart writes the per-message and per-recipient fields (RFC 3464
// §2.2, §2.3).
func (s *Service) statusPart(w func(string, ...any), e raftstore.QueueEntry, rcpts []*raftstore.QueueRcpt) {
	w("Reporting-MTA: dns; %s", s.cfg.Hostname)
	if e.EnvID != "" {
		w("Original-Envelope-Id: %s", oneLine(e.EnvID))
	}
	w("Arrival-Date: %s", time.Unix(0, e.Created).Format(time.RFC1123Z))
	for _, r := range rcpts {
		w("")
		if r.ORcpt != "" {
			w("Original-Recipient: %s", oneLine(r.ORcpt))
		}
		w("Final-Recipient: rfc822; %s", r.Addr)
		action, status := "relayed", "2.0.0"
		if r.State == raftstore.RcptFailed {
			action, status = "failed", r.LastStatus
			if status == "" {
				status = "5.0.0"
			}
		}
		w("Action: %s", action)
		w("Status: %s", status)
		if r.MTA != "" {
			w("Remote-MTA: dns; %s", r.MTA)
		}
		if r.LastCode != 0 && r.LastReply != "" {
			w("Diagnostic-Code: smtp; %d %s", r.LastCode, oneLine(r.LastReply))
		}
		if r.LastAttempt != 0 {
			w("Last-Attempt-Date: %s", time.Unix(0, r.LastAttempt).Format(time.RFC1123Z))
		}
	}
	w("")
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
