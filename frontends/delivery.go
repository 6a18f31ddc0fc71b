package frontends

import (
	"context"
	"fmt"

	"github.com/raftmail/raftmail/raftstore"
	"github.com/raftmail/raftmail/raftstore/command"
)

// Envelope is what a delivery needs besides the body.
type Envelope struct {
	From  string
	Rcpts []string
	// Junk delivers into the recipients' Junk mailboxes (filter verdict
	// "tag").
	Junk bool
	// Key is the idempotency key; NewDeliver picks one if empty.
	Key string
}

// MetaFunc parses a raw message into the structure stored with its body
// (envelope and body structure for IMAP). frontends/mailmeta provides it.
type MetaFunc func(raw []byte) ([]byte, error)

// NewDeliver builds a Deliver command on the receiving node or frontend:
// the body is parsed, hashed and zstd-compressed here, once, so the leader
// and the followers store the bytes as they come (DESIGN.md invariant 6).
func NewDeliver(codec *raftstore.Codec, env Envelope, raw []byte) (*command.Command, error) {
	if len(env.Rcpts) == 0 {
		return nil, fmt.Errorf("delivery without recipients")
	}
	meta, err := ParseMeta(raw)
	if err != nil {
		return nil, fmt.Errorf("parse message: %w", err)
	}
	key := env.Key
	if key == "" {
		key = command.NewKey()
	}
	return &command.Command{Key: key, Payload: &command.Deliver{
		From:  env.From,
		Rcpts: env.Rcpts,
		Blob:  codec.NewBlob(raw, meta),
		Junk:  env.Junk,
	}}, nil
}

// ChunkSize is the largest compressed body sent inline in one raft entry.
// Raft replicates an entry whole, and entries of many megabytes delay
// heartbeats long enough to cost the leader its lease (measured: a 30 MiB
// entry made a 3-node cluster on 2 cores lose its leader repeatedly), so
// larger bodies travel ahead in BlobChunk pieces of this size.
const ChunkSize = 512 << 10

// CommitFunc commits one command and returns its result.
type CommitFunc func(ctx context.Context, c *command.Command) (raftstore.Result, error)

// SendBlob uploads a large body ahead of the command that will reference
// it, in BlobChunk commands keyed from key, and leaves only the reference
// (ID, size, piece count) in blob. Small bodies are left inline.
func SendBlob(ctx context.Context, commit CommitFunc, blob *command.Blob, key string) error {
	if len(blob.Data) <= ChunkSize {
		return nil
	}
	var seq uint32
	for off := 0; off < len(blob.Data); off += ChunkSize {
		end := min(off+ChunkSize, len(blob.Data))
		res, err := commit(ctx, &command.Command{Key: fmt.Sprintf("%s/c%d", key, seq),
			Payload: &command.BlobChunk{ID: blob.ID, Seq: seq, Data: blob.Data[off:end]}})
		if err == nil {
			err = res.Err()
		}
		if err != nil {
			return fmt.Errorf("upload body piece %d: %w", seq, err)
		}
		seq++
	}
	blob.Data, blob.Chunks = nil, seq
	return nil
}

// CommitDeliver commits a Deliver command built by NewDeliver through a
// Committer, uploading a large body in pieces first.
func CommitDeliver(ctx context.Context, c Committer, cmd *command.Command) (raftstore.Result, error) {
	commit := func(ctx context.Context, cc *command.Command) (raftstore.Result, error) {
		data, err := command.Marshal(cc)
		if err != nil {
			return raftstore.Result{}, err
		}
		return c.Commit(ctx, data)
	}
	if d, ok := cmd.Payload.(*command.Deliver); ok {
		if err := SendBlob(ctx, commit, &d.Blob, cmd.Key); err != nil {
			return raftstore.Result{}, err
		}
	}
	return commit(ctx, cmd)
}
