package filters

import (
	"context"
	"fmt"
)

// Size refuses messages over Max bytes: at MAIL from the SIZE= parameter
// (RFC 1870 §6.1) and at the end of DATA from the real size. The SMTP
// server's own limit (MaxMessageBytes) still bounds what is read; Size lets
// a deployment set a lower policy limit without touching the protocol cap.
type Size struct {
	Max int64
}

var _ Check = (*Size)(nil)

// Name implements Check.
func (c *Size) Name() string { return "size" }

// NewState implements Check.
func (c *Size) NewState(context.Context, *ConnInfo) (State, error) { return sizeState{max: c.Max}, nil }

type sizeState struct {
	NopState
	max int64
}

// Inline implements Inline: every stage compares two numbers.
func (sizeState) Inline(Stage) bool { return true }

func tooBig(size, max int64) Verdict {
	return Verdict{Action: Reject, Code: 552, Enhanced: [3]int{5, 3, 4},
		Reason: "Message size exceeds fixed maximum message size", Err: fmt.Errorf("size %d over %d", size, max)}
}

func (s sizeState) Mail(_ context.Context, m Mail) Verdict {
	if s.max > 0 && m.Size > s.max {
		return tooBig(m.Size, s.max)
	}
	return Verdict{}
}

func (s sizeState) Body(_ context.Context, m *Message) Verdict {
	if s.max > 0 && m.Body.Len() > s.max {
		return tooBig(m.Body.Len(), s.max)
	}
	return Verdict{}
}
