package smtp

import (
	"errors"
	"io"

	"github.com/emersion/go-smtp"
)

// Data delivers with data and counts the reply (Config.Observer).
// RFC 5321 §4.1.1.4 (DATA), RFC 3030 (BDAT).
func (ss *session) Data(r io.Reader) error {
	err := ss.data(r)
	if obs := ss.s.cfg.Observer; obs != nil {
		obs.Delivery("smtp", replyCode(err))
	}
	return err
}

// replyCode is the code go-smtp answers for a Data error: 250 for nil or
// an *smtp.SMTPError with code 250 (deliver's success with its own text),
// its code, else 554.
func replyCode(err error) int {
	if err == nil {
		return 250
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	return 554
}
