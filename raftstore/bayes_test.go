package raftstore

import (
	"testing"

	"github.com/raftmail/raftmail/raftstore/command"
)

func bayesCounts(t *testing.T, f *fsm, toks ...uint64) (BayesTotals, []BayesCount) {
	t.Helper()
	var tot BayesTotals
	var cs []BayesCount
	s := &Store{fsm: f}
	if err := s.View(func(tx *ReadTx) error { tot, cs = tx.BayesCounts(toks); return nil }); err != nil {
		t.Fatal(err)
	}
	return tot, cs
}

// TestApplyBayes: training adds counts, a repeat is a no-op, training in
// the other class moves the message, untraining removes it, reset clears,
// and the whole sequence replays to the same digest.
func TestApplyBayes(t *testing.T) {
	s := newScript(t)
	m1 := command.BayesMsg{ID: []byte("m1"), Tokens: []uint64{1, 2, 3}}
	m2 := command.BayesMsg{ID: []byte("m2"), Tokens: []uint64{2, 3, 4}}
	type want struct {
		tot BayesTotals
		c   []BayesCount // tokens 1..4
	}
	steps := []struct {
		name string
		p    command.Payload
		want want
	}{
		{"train spam", &command.BayesTrain{Spam: true, Msgs: []command.BayesMsg{m1}},
			want{BayesTotals{1, 0}, []BayesCount{{1, 0}, {1, 0}, {1, 0}, {0, 0}}}},
		{"repeat is a no-op", &command.BayesTrain{Spam: true, Msgs: []command.BayesMsg{m1}},
			want{BayesTotals{1, 0}, []BayesCount{{1, 0}, {1, 0}, {1, 0}, {0, 0}}}},
		{"train ham", &command.BayesTrain{Msgs: []command.BayesMsg{m2}},
			want{BayesTotals{1, 1}, []BayesCount{{1, 0}, {1, 1}, {1, 1}, {0, 1}}}},
		{"move spam to ham", &command.BayesTrain{Msgs: []command.BayesMsg{m1}},
			want{BayesTotals{0, 2}, []BayesCount{{0, 1}, {0, 2}, {0, 2}, {0, 1}}}},
		{"untrain wrong class is a no-op", &command.BayesTrain{Spam: true, Untrain: true, Msgs: []command.BayesMsg{m2}},
			want{BayesTotals{0, 2}, []BayesCount{{0, 1}, {0, 2}, {0, 2}, {0, 1}}}},
		{"untrain", &command.BayesTrain{Untrain: true, Msgs: []command.BayesMsg{m2}},
			want{BayesTotals{0, 1}, []BayesCount{{0, 1}, {0, 1}, {0, 1}, {0, 0}}}},
		{"anonymous messages always count", &command.BayesTrain{Spam: true, Msgs: []command.BayesMsg{{Tokens: []uint64{4}}, {Tokens: []uint64{4}}}},
			want{BayesTotals{2, 1}, []BayesCount{{0, 1}, {0, 1}, {0, 1}, {2, 0}}}},
		{"reset", &command.BayesReset{}, want{BayesTotals{}, []BayesCount{{}, {}, {}, {}}}},
	}
	for i, st := range steps {
		s.ok("", st.p)
		tot, cs := bayesCounts(t, s.ref, 1, 2, 3, 4)
		if tot != st.want.tot {
			t.Fatalf("step %d %s: totals %+v, want %+v", i, st.name, tot, st.want.tot)
		}
		for j := range cs {
			if cs[j] != st.want.c[j] {
				t.Fatalf("step %d %s: token %d = %+v, want %+v", i, st.name, j+1, cs[j], st.want.c[j])
			}
		}
	}
	if n := bucketLen(t, s.ref, bBayes); n != 0 {
		t.Fatalf("bayes bucket keeps %d keys after reset", n)
	}
	if res := s.do("", &command.BayesTrain{Msgs: []command.BayesMsg{{ID: make([]byte, 33)}}}); res.Err() == nil {
		t.Fatal("a 33-byte id was accepted")
	}
	other := newFSM(t)
	replay(t, other, s.logs, 3)
	if a, b := fsmDigest(t, s.ref), fsmDigest(t, other); a != b {
		t.Fatalf("replay digest %s != %s", b, a)
	}
}
