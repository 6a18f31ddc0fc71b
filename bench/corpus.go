// Package bench holds raftmail's load generators and benchmarks: SMTP and
// LMTP delivery load, IMAP (FETCH or a mixed workload) and POP3 read load,
// idle IMAP connections, latency recording in HDR histograms, and the raw
// raft.Apply ceiling of a bare hashicorp/raft cluster on the same machine.
// "raftmail bench" drives them; bench/compare is the make bench comparison
// with Postfix + Dovecot.
package bench

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync/atomic"
	"time"
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
	fmt.Fprintf(&b, "From: bench@remote.test\r\nTo: user@example.test\r\nMessage-ID: <%d.%d.%s@bench.test>\r\nSubject: synthetic %d\r\n\r\n",
		seq, serial.Add(1), runID, seq)
	line := []byte("The quick brown fox jumps over the lazy dog, again and again, for benchmarking.\r\n")
	for b.Len() < size {
		fmt.Fprintf(&b, "%08d ", b.Len())
		b.Write(line)
	}
	return b.Bytes()
}

// runID keeps the Message-IDs of separate processes apart, and serial
// those of separate runs in one process: every run numbers its deliveries
// from 1, and a message repeated from an earlier run would be a duplicate
// to the store (the SMTP frontend's idempotency key hashes the envelope
// and the message), answered from its memory without storing anything.
var (
	runID  = fmt.Sprintf("%x", time.Now().UnixNano())
	serial atomic.Int64
)

// Unique gives a corpus message a fresh Message-ID (the original one is
// kept as X-Original-Message-ID) and an X-Bench-Seq header, so every
// delivery is a distinct message and a distinct body (no dedupe shortcut).
func Unique(msg []byte, seq int64) []byte {
	end := bytes.Index(msg, []byte("\r\n\r\n"))
	if end < 0 {
		end = len(msg)
	}
	out := make([]byte, 0, len(msg)+96)
	out = fmt.Appendf(out, "Message-ID: <%d.%d.%s@bench.raftmail>\r\nX-Bench-Seq: %d\r\n", seq, serial.Add(1), runID, seq)
	if i := indexFold(msg[:end], "message-id:"); i >= 0 {
		out = append(out, msg[:i]...)
		out = append(out, "X-Original-"...)
		return append(out, msg[i:]...)
	}
	return append(out, msg...)
}

// indexFold finds a header name at the start of a header line, ignoring case.
func indexFold(hdr []byte, name string) int {
	for i := 0; i < len(hdr); {
		if len(hdr)-i >= len(name) && bytes.EqualFold(hdr[i:i+len(name)], []byte(name)) {
			return i
		}
		nl := bytes.IndexByte(hdr[i:], '\n')
		if nl < 0 {
			return -1
		}
		i += nl + 1
	}
	return -1
}
