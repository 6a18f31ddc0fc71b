package command

// Bayes commands: the replicated token counts of the spam classifier
// (filters/bayes). Tokens are 64-bit hashes; raftstore keeps per token a
// spam and a ham count, plus the number of messages trained per class.

// BayesTrain adds one batch of messages to the spam (Spam) or ham counts,
// or with Untrain removes them. A message with an ID is remembered with
// its class: training it again in the same class does nothing, training
// it in the other class moves it (its tokens are subtracted from the old
// class first), and Untrain only removes what was trained. Each message's
// Tokens must be distinct. Proposers keep one command well under a
// megabyte (about 30,000 tokens).
type BayesTrain struct {
	Spam    bool       `msgpack:"spam"`
	Untrain bool       `msgpack:"untrain,omitempty"`
	Msgs    []BayesMsg `msgpack:"msgs"`
}

// BayesMsg is one message of a BayesTrain.
type BayesMsg struct {
	// ID identifies the message (e.g. its body's content hash), at most
	// 32 bytes; empty means "not remembered" (always trained, never
	// untrained).
	ID     []byte   `msgpack:"id,omitempty"`
	Tokens []uint64 `msgpack:"tokens"`
}

// BayesReset clears the whole model (token counts, totals and the
// remembered messages).
type BayesReset struct{}

// Type implementations.
func (*BayesTrain) Type() Type { return TypeBayesTrain }
func (*BayesReset) Type() Type { return TypeBayesReset }
