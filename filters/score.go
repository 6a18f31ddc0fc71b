package filters

import (
	"fmt"
	"strconv"
	"strings"
)

// score applies the profile's thresholds to a transaction's merged
// verdict (SpamAssassin's model: every check adds a weighted score; the
// total decides). A check's own Reject or TempFail (a virus, DMARC
// p=reject) stands whatever the score. With TagScore set, every message
// gets X-Spam-Score and X-Spam-Status headers.
func (p *Pipeline) score(v Verdict) Verdict {
	if p == nil || (p.cfg.TagScore <= 0 && p.cfg.RejectScore <= 0) {
		return v
	}
	total := v.Score
	switch {
	case v.Action >= TempFail:
	case p.cfg.RejectScore > 0 && total >= p.cfg.RejectScore:
		v.Action, v.Check, v.Reason = Reject, "score", "Message rejected as spam"
		v.Err = fmt.Errorf("score %.2f ≥ reject %.2f", total, p.cfg.RejectScore)
	case p.cfg.TagScore > 0 && total >= p.cfg.TagScore && v.Action < Tag:
		v.Action, v.Check = Tag, "score"
	}
	if p.cfg.TagScore > 0 {
		spam := "No"
		if total >= p.cfg.TagScore || v.Action == Tag {
			spam = "Yes"
		}
		v.Headers = append(v.Headers,
			Header{Key: "X-Spam-Score", Value: strconv.FormatFloat(total, 'f', 2, 64)},
			Header{Key: "X-Spam-Status", Value: fmt.Sprintf("%s, score=%.2f required=%.2f tests=%s",
				spam, total, p.cfg.TagScore, formatScores(v.Scores, false))})
	}
	return v
}

// formatScores renders scores as "name=1.50,other=-0.10" (all of them, or
// only the non-zero ones).
func formatScores(sc []CheckScore, withZero bool) string {
	var b strings.Builder
	for _, s := range sc {
		if s.Score == 0 && !withZero {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(s.Check)
		b.WriteByte('=')
		b.WriteString(strconv.FormatFloat(s.Score, 'f', 2, 64))
	}
	if b.Len() == 0 {
		return "none"
	}
	return b.String()
}

// logVerdict writes the transaction's one verdict line with every check's
// score (checks that scored 0 at DATA included).
func (s *Session) logVerdict(v Verdict) {
	if s.p == nil {
		return
	}
	s.p.logger.Info("filter verdict", "conn", s.info.ID, "ip", s.info.IP.String(), "profile", s.info.Profile,
		"action", v.Action.String(), "check", v.Check, "score", strconv.FormatFloat(v.Score, 'f', 2, 64),
		"scores", formatScores(v.Scores, true), "err", v.Err)
}
