package bayes

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"sync"
	"time"

	"github.com/raftmail/raftmail/filters/mimetext"
	"github.com/raftmail/raftmail/raftstore"
	"github.com/raftmail/raftmail/raftstore/command"
)

// MaxCommandTokens bounds the tokens of one BayesTrain command (about
// 300 KB encoded), so no raft entry is huge; trainers split into several.
const MaxCommandTokens = 32_000

// Batcher groups tokenized messages into BayesTrain commands of at most
// MaxCommandTokens tokens.
type Batcher struct {
	spam, untrain bool
	cur           []command.BayesMsg
	n             int
	emit          func(*command.BayesTrain) error
}

// NewBatcher returns a batcher calling emit with each full command.
func NewBatcher(spam, untrain bool, emit func(*command.BayesTrain) error) *Batcher {
	return &Batcher{spam: spam, untrain: untrain, emit: emit}
}

// Add adds one message (raw RFC 5322 bytes), identified by its content
// hash so that training it twice counts once.
func (b *Batcher) Add(raw []byte) error {
	sum := sha256.Sum256(raw)
	toks := Tokenize(mimetext.Parse(raw, mimetext.Limits{}))
	if len(toks) > MaxCommandTokens {
		toks = toks[:MaxCommandTokens]
	}
	if b.n+len(toks) > MaxCommandTokens {
		if err := b.Flush(); err != nil {
			return err
		}
	}
	u := make([]uint64, len(toks))
	for i, t := range toks {
		u[i] = uint64(t)
	}
	b.cur = append(b.cur, command.BayesMsg{ID: sum[:16], Tokens: u})
	b.n += len(u)
	return nil
}

// Flush emits what is pending.
func (b *Batcher) Flush() error {
	if len(b.cur) == 0 {
		return nil
	}
	p := &command.BayesTrain{Spam: b.spam, Untrain: b.untrain, Msgs: b.cur}
	b.cur, b.n = nil, 0
	return b.emit(p)
}

// LearnStore is what the Learner needs from a mailbox node
// (cluster.Node implements it).
type LearnStore interface {
	View(fn func(*raftstore.ReadTx) error) error
	Propose(ctx context.Context, c *command.Command) (raftstore.Result, error)
}

// Learner trains the model from users' judgement: the IMAP server calls
// JunkMoved after a MOVE/COPY into Junk (spam) or out of it (ham) has
// committed. Work runs in the background (the IMAP reply never waits),
// at most 4 trainings at a time; more are dropped with a log line.
type Learner struct {
	store   LearnStore
	logger  *slog.Logger
	timeout time.Duration
	sem     chan struct{}
	wg      sync.WaitGroup
}

// NewLearner returns a learner proposing through store.
func NewLearner(store LearnStore, logger *slog.Logger) *Learner {
	if logger == nil {
		logger = slog.Default()
	}
	return &Learner{store: store, logger: logger.With("component", "bayes-learn"),
		timeout: time.Minute, sem: make(chan struct{}, 4)}
}

// JunkMoved trains the messages uids of mailboxID (their new place) as
// spam or ham.
func (l *Learner) JunkMoved(account string, mailboxID uint64, uids []uint32, spam bool) {
	select {
	case l.sem <- struct{}{}:
	default:
		l.logger.Warn("bayes training dropped: too many in flight", "account", account, "messages", len(uids))
		return
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer func() { <-l.sem }()
		if err := l.train(account, mailboxID, uids, spam); err != nil {
			l.logger.Warn("bayes training failed", "account", account, "spam", spam, "err", err)
		}
	}()
}

// Wait waits for the trainings in flight (tests, shutdown).
func (l *Learner) Wait() { l.wg.Wait() }

func (l *Learner) train(account string, mailboxID uint64, uids []uint32, spam bool) error {
	var bodies [][]byte
	ranges := make([]command.UIDRange, len(uids))
	for i, u := range uids {
		ranges[i] = command.UIDRange{Start: u, Stop: u}
	}
	err := l.store.View(func(tx *raftstore.ReadTx) error {
		return tx.Messages(mailboxID, ranges, func(m *raftstore.Message) error {
			b, err := tx.Body(m.BlobID)
			if err == nil {
				bodies = append(bodies, b)
			}
			return err
		})
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	defer cancel()
	n := 0
	b := NewBatcher(spam, false, func(p *command.BayesTrain) error {
		h := sha256.New()
		h.Write([]byte{boolByte(spam)})
		for _, m := range p.Msgs {
			h.Write(m.ID)
		}
		key := "bayes-" + hex.EncodeToString(h.Sum(nil)[:16])
		res, err := l.store.Propose(ctx, &command.Command{Key: key, Payload: p})
		if err == nil {
			err = res.Err()
		}
		n += len(p.Msgs)
		return err
	})
	for _, body := range bodies {
		if err := b.Add(body); err != nil {
			return err
		}
	}
	if err := b.Flush(); err != nil {
		return err
	}
	l.logger.Info("bayes trained from IMAP", "account", account, "spam", spam, "messages", n)
	return nil
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}
