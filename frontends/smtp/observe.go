package smtp

import (
	"errors"
	"io"
	"strconv"
	"strings"

	"github.com/emersion/go-smtp"

	"github.com/raftmail/raftmail/filters"
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

// scoreList formats the filters' per-check scores for the transaction's
// log line: "dnsbl=3,spf=-0.5" (empty when no check scored).
func scoreList(scores []filters.CheckScore) string {
	var b strings.Builder
	for i, s := range scores {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(s.Check + "=" + strconv.FormatFloat(s.Score, 'g', 4, 64))
	}
	return b.String()
}
