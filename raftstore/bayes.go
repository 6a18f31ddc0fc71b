package raftstore

import "encoding/binary"

// BayesTotals is the number of messages trained per class.
type BayesTotals struct {
	Spam uint64 `json:"spam"`
	Ham  uint64 `json:"ham"`
}

// BayesCount is one token's counts: in how many spam and ham messages it
// was seen.
type BayesCount struct {
	Spam uint32 `json:"spam"`
	Ham  uint32 `json:"ham"`
}

// BayesCounts returns the totals and each token's counts (zero for an
// unknown token), in the order asked.
func (r *ReadTx) BayesCounts(tokens []uint64) (BayesTotals, []BayesCount) {
	meta := r.tx.Bucket(bMeta)
	tot := BayesTotals{Spam: getU64(meta, kBayesSpam), Ham: getU64(meta, kBayesHam)}
	out := make([]BayesCount, len(tokens))
	b := r.tx.Bucket(bBayes)
	var k [8]byte
	for i, tok := range tokens {
		binary.BigEndian.PutUint64(k[:], tok)
		if v := b.Get(k[:]); len(v) == 8 {
			out[i] = BayesCount{Spam: binary.BigEndian.Uint32(v), Ham: binary.BigEndian.Uint32(v[4:])}
		}
	}
	return tot, out
}

// BayesStats returns the totals, the number of distinct tokens and the
// number of remembered messages.
func (r *ReadTx) BayesStats() (tot BayesTotals, tokens, seen int) {
	tot, _ = r.BayesCounts(nil)
	return tot, r.tx.Bucket(bBayes).Stats().KeyN, r.tx.Bucket(bBayesSeen).Stats().KeyN
}

// BayesTokens returns every token the model holds, in key order.
func (r *ReadTx) BayesTokens() []uint64 {
	var out []uint64
	c := r.tx.Bucket(bBayes).Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if len(k) == 8 {
			out = append(out, binary.BigEndian.Uint64(k))
		}
	}
	return out
}
