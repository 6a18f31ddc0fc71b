package bayes

import (
	"context"
	"fmt"

	"github.com/raftmail/raftmail/filters"
	"github.com/raftmail/raftmail/filters/mimetext"
)

// Default cutoffs and scores of the check.
const (
	DefaultSpamCutoff = 0.8
	DefaultHamCutoff  = 0.2
	DefaultSpamScore  = 6.0
	DefaultHamScore   = -1.0
	DefaultMinTrained = 20
)

// Config configures the Bayes check.
type Config struct {
	// Model supplies token counts (required).
	Model  Model
	Params Params
	// SpamCutoff: a probability at or above it scores SpamScore (default 0.8,
	// 6.0); HamCutoff: at or below it scores HamScore (default 0.2,
	// -1.0); in between scores 0 ("unsure").
	SpamCutoff, HamCutoff float64
	SpamScore, HamScore   float64
	// MinTrained is the fewest messages per class before the check has an
	// opinion (default 20).
	MinTrained uint64
}

func (c *Config) setDefaults() {
	if c.SpamCutoff == 0 {
		c.SpamCutoff = DefaultSpamCutoff
	}
	if c.HamCutoff == 0 {
		c.HamCutoff = DefaultHamCutoff
	}
	if c.SpamScore == 0 {
		c.SpamScore = DefaultSpamScore
	}
	if c.HamScore == 0 {
		c.HamScore = DefaultHamScore
	}
	if c.MinTrained == 0 {
		c.MinTrained = DefaultMinTrained
	}
}

// Check is the Bayes filter: a body check that scores the message by its
// spam probability and adds an X-Spam-Bayes header.
type Check struct{ cfg Config }

var _ filters.Check = (*Check)(nil)

// New returns the check.
func New(cfg Config) (*Check, error) {
	if cfg.Model == nil {
		return nil, fmt.Errorf("bayes: no model")
	}
	cfg.setDefaults()
	return &Check{cfg: cfg}, nil
}

// Name implements filters.Check.
func (c *Check) Name() string { return "bayes" }

// NewState implements filters.Check.
func (c *Check) NewState(context.Context, *filters.ConnInfo) (filters.State, error) {
	return state{c: c}, nil
}

type state struct {
	filters.NopState
	c *Check
}

// Inline implements filters.Inline: only Body works (it may ask a node
// for token counts).
func (state) Inline(stage filters.Stage) bool { return stage != filters.StageData }

func (s state) Body(ctx context.Context, m *filters.Message) filters.Verdict {
	txt, err := mimetext.FromMessage(m)
	if err != nil {
		return filters.Failure(fmt.Errorf("read body: %w", err))
	}
	toks := Tokenize(txt)
	tot, counts, err := s.c.cfg.Model.Counts(ctx, toks)
	if err != nil {
		return filters.Failure(fmt.Errorf("token counts: %w", err))
	}
	if tot.Spam < s.c.cfg.MinTrained || tot.Ham < s.c.cfg.MinTrained {
		return filters.Verdict{Headers: []filters.Header{{Key: "X-Spam-Bayes",
			Value: fmt.Sprintf("untrained (%d spam, %d ham)", tot.Spam, tot.Ham)}}}
	}
	prob, clues := Classify(tot, counts, s.c.cfg.Params)
	v := filters.Verdict{Headers: []filters.Header{{Key: "X-Spam-Bayes", Value: fmt.Sprintf("%.4f (%d clues)", prob, clues)}}}
	switch {
	case prob >= s.c.cfg.SpamCutoff:
		v.Score = s.c.cfg.SpamScore
		v.Err = fmt.Errorf("spam probability %.4f", prob)
	case prob <= s.c.cfg.HamCutoff:
		v.Score = s.c.cfg.HamScore
	}
	return v
}
