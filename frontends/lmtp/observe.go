package lmtp

import (
	"errors"
	"io"

	"github.com/emersion/go-smtp"
)

// LMTPData observes the reply each recipient gets (Config.Observer) and
// delivers with lmtpData. RFC 2033 §4.2: one reply per accepted RCPT.
func (ss *session) LMTPData(r io.Reader, status smtp.StatusCollector) error {
	obs := ss.s.cfg.Observer
	if obs == nil {
		return ss.lmtpData(r, status)
	}
	n := len(ss.rcpts)
	if status == nil {
		err := ss.lmtpData(r, nil)
		obs.Delivery("lmtp", ReplyCode(err))
		return err
	}
	oc := &observedStatus{inner: status, observe: func(err error) { obs.Delivery("lmtp", ReplyCode(err)) }}
	err := ss.lmtpData(r, oc)
	for i := oc.set; i < n; i++ { // recipients the returned error answers
		obs.Delivery("lmtp", ReplyCode(err))
	}
	return err
}

type observedStatus struct {
	inner   smtp.StatusCollector
	observe func(error)
	set     int
}

func (o *observedStatus) SetStatus(rcpt string, err error) {
	o.set++
	o.observe(err)
	o.inner.SetStatus(rcpt, err)
}

// ReplyCode is the SMTP reply code go-smtp sends for an error returned by
// a session: 250 for nil, the code of an *smtp.SMTPError, else 554 (DATA's
// generic failure).
func ReplyCode(err error) int {
	if err == nil {
		return 250
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	return 554
}
