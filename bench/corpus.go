// Package bench holds raftmail's load generators and benchmarks: LMTP (and
// later SMTP, IMAP, POP3) load against a cluster, and the raw raft.Apply
// ceiling of a bare hashicorp/raft cluster on the same machine.
package bench

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// LoadCorpus reads up to max .eml files under dir (recursively, in name
// order), converting LF line endings to CRLF as SMTP requires.
func LoadCorpus(dir string, max int) ([][]byte, error) {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && filepath.Ext(p) == ".eml" {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read corpus %s: %w", dir, err)
	}
	sort.Strings(files)
	if max > 0 && len(files) > max {
		// Take an even spread so ham and spam both appear.
		step := len(files) / max
		var pick []string
		for i := 0; i < len(files) && len(pick) < max; i += step {
			pick = append(pick, files[i])
		}
		files = pick
	}
	out := make([][]byte, 0, len(files))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		out = append(out, ToCRLF(b))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no .eml files under %s", dir)
	}
	return out, nil
}

// ToCRLF turns bare LF into CRLF (and leaves CRLF alone).
func ToCRLF(b []byte) []byte {
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	return bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))
}

// Synthetic returns a text message of about size bytes, unique by seq.
func Synthetic(size, seq int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: bench@remote.test\r\nTo: user@example.test\r\nMessage-ID: <%d@bench.test>\r\nSubject: synthetic %d\r\n\r\n", seq, seq)
	line := []byte("The quick brown fox jumps over the lazy dog, again and again, for benchmarking.\r\n")
	for b.Len() < size {
		fmt.Fprintf(&b, "%08d ", b.Len())
		b.Write(line)
	}
	return b.Bytes()
}

// Unique prefixes a Message-ID header so every delivery of a corpus message
// is a distinct body (no dedupe shortcut).
func Unique(msg []byte, seq int64) []byte {
	return append([]byte(fmt.Sprintf("X-Bench-Seq: %d\r\n", seq)), msg...)
}
