package raftstore

import (
	"encoding/binary"

	"github.com/raftmail/raftmail/raftstore/command"
)

// Bayes token counts (filters/bayes). bBayes maps a token (8 bytes,
// big-endian hash) to its counts: spam uint32, ham uint32 (8 bytes,
// big-endian); a token whose counts fall to zero is deleted. bBayesSeen
// maps a trained message's ID to its class ('s' or 'h'). The number of
// messages trained per class is in bMeta.

var (
	kBayesSpam = []byte("bayes_spam_msgs")
	kBayesHam  = []byte("bayes_ham_msgs")
)

const (
	classSpam = 's'
	classHam  = 'h'
	// maxBayesIDLen bounds a remembered message ID.
	maxBayesIDLen = 32
)

// bayesTrain applies a BayesTrain: per message, in command order (see
// the command's doc for the remembered-class rules). Result.UIDs[0] is
// the number of messages whose counts changed.
func (t *txn) bayesTrain(p *command.BayesTrain) Result {
	for _, m := range p.Msgs {
		if len(m.ID) > maxBayesIDLen {
			return fail(errf(ErrInvalid, "bayes message id of %d bytes", len(m.ID)))
		}
	}
	changed := uint32(0)
	for _, m := range p.Msgs {
		if t.bayesMsg(p.Spam, p.Untrain, m) {
			changed++
		}
	}
	return Result{UIDs: []uint32{changed}}
}

func (t *txn) bayesMsg(spam, untrain bool, m command.BayesMsg) bool {
	class := byte(classHam)
	if spam {
		class = classSpam
	}
	var prev byte
	if len(m.ID) > 0 {
		if v := t.b(bBayesSeen).Get(m.ID); len(v) == 1 {
			prev = v[0]
		}
	}
	switch {
	case untrain:
		if prev != class {
			return false
		}
		t.bayesAdd(m.Tokens, spam, -1)
		t.del(bBayesSeen, m.ID)
		return true
	case prev == class:
		return false
	case prev != 0:
		t.bayesAdd(m.Tokens, !spam, -1)
	}
	t.bayesAdd(m.Tokens, spam, 1)
	if len(m.ID) > 0 {
		t.put(bBayesSeen, append([]byte(nil), m.ID...), []byte{class})
	}
	return true
}

// bayesAdd adds delta to one class's count of each token and to the
// class's message total; counts saturate at 0 and at 2^32-1.
func (t *txn) bayesAdd(tokens []uint64, spam bool, delta int64) {
	b := t.b(bBayes)
	off := 4
	if spam {
		off = 0
	}
	for _, tok := range tokens {
		k := binary.BigEndian.AppendUint64(make([]byte, 0, 8), tok)
		v := make([]byte, 8)
		copy(v, b.Get(k))
		n := int64(binary.BigEndian.Uint32(v[off:])) + delta
		n = max(0, min(n, 1<<32-1))
		binary.BigEndian.PutUint32(v[off:], uint32(n))
		if binary.BigEndian.Uint64(v) == 0 {
			t.del(bBayes, k)
			continue
		}
		t.put(bBayes, k, v)
	}
	key := kBayesHam
	if spam {
		key = kBayesSpam
	}
	n := int64(getU64(t.b(bMeta), key)) + delta
	t.put(bMeta, key, u64(uint64(max(0, n))))
}

// bayesReset clears the model.
func (t *txn) bayesReset() Result {
	for _, name := range [][]byte{bBayes, bBayesSeen} {
		if err := t.tx.DeleteBucket(name); err != nil {
			panic(storageError{err})
		}
		if _, err := t.tx.CreateBucket(name); err != nil {
			panic(storageError{err})
		}
	}
	t.put(bMeta, kBayesSpam, u64(0))
	t.put(bMeta, kBayesHam, u64(0))
	return Result{}
}
