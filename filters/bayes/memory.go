package bayes

import (
	"context"
	"sync"
)

// Memory is an in-process Model with the store's training rules minus
// message memory: for tests, evaluation and benchmarks.
type Memory struct {
	mu     sync.RWMutex
	tot    Totals
	counts map[Token]Counts
}

var _ Model = (*Memory)(nil)

// NewMemory returns an empty model.
func NewMemory() *Memory { return &Memory{counts: make(map[Token]Counts)} }

// Train adds one message's distinct tokens to a class.
func (m *Memory) Train(tokens []Token, spam bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if spam {
		m.tot.Spam++
	} else {
		m.tot.Ham++
	}
	for _, t := range tokens {
		c := m.counts[t]
		if spam {
			c.Spam++
		} else {
			c.Ham++
		}
		m.counts[t] = c
	}
}

// Counts implements Model.
func (m *Memory) Counts(_ context.Context, tokens []Token) (Totals, []Counts, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]Counts, len(tokens))
	for i, t := range tokens {
		out[i] = m.counts[t]
	}
	return m.tot, out, nil
}
