package pop3

import (
	"bufio"
	"bytes"
	"testing"
)

func TestWriteBody(t *testing.T) {
	for _, tc := range []struct {
		name  string
		body  string
		lines int
		want  string
		size  int64 // before dot-stuffing and terminator
	}{
		{"crlf", "A: b\r\n\r\nx\r\n", -1, "A: b\r\n\r\nx\r\n.\r\n", 11},
		{"bare lf", "A: b\n\nx\n", -1, "A: b\r\n\r\nx\r\n.\r\n", 11},
		{"mixed", "A: b\r\n\nx\ny\r\n", -1, "A: b\r\n\r\nx\r\ny\r\n.\r\n", 14},
		{"no final eol", "A: b\r\n\r\nx", -1, "A: b\r\n\r\nx\r\n.\r\n", 11},
		{"empty", "", -1, ".\r\n", 0},
		{"dots", ".\r\n..\r\n.x\r\nx.\r\n", -1, "..\r\n...\r\n..x\r\nx.\r\n.\r\n", 15},
		{"lone cr kept", "a\rb\r\n", -1, "a\rb\r\n.\r\n", 5},
		{"cr cr lf", "a\r\r\n", -1, "a\r\r\n.\r\n", 4},
		{"top 0", "A: b\r\nC: d\r\n\r\nl1\r\nl2\r\n", 0, "A: b\r\nC: d\r\n\r\n.\r\n", 14},
		{"top 1", "A: b\r\nC: d\r\n\r\nl1\r\nl2\r\n", 1, "A: b\r\nC: d\r\n\r\nl1\r\n.\r\n", 18},
		{"top beyond", "A: b\r\n\r\nl1\r\n", 5, "A: b\r\n\r\nl1\r\n.\r\n", 12},
		{"top no body", "A: b\r\nC: d\r\n", 0, "A: b\r\nC: d\r\n.\r\n", 12},
		{"top dot body", "A: b\r\n\r\n.l1\r\n.l2\r\n", 1, "A: b\r\n\r\n..l1\r\n.\r\n", 13},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			w := bufio.NewWriter(&buf)
			n, err := writeBody(w, []byte(tc.body), tc.lines)
			if err != nil {
				t.Fatal(err)
			}
			w.Flush()
			if buf.String() != tc.want {
				t.Fatalf("wrote %q, want %q", buf.String(), tc.want)
			}
			if n != tc.size {
				t.Fatalf("counted %d, want %d", n, tc.size)
			}
			if tc.lines < 0 && wireSize([]byte(tc.body)) != n {
				t.Fatalf("wireSize %d != written %d", wireSize([]byte(tc.body)), n)
			}
		})
	}
}

// TestWireSizeUndoesStuffing checks, for many shapes, that the size told
// to the client is what it holds after removing the dot-stuffing.
func TestWireSizeUndoesStuffing(t *testing.T) {
	bodies := []string{"", "\n", "\r\n", ".", "..\n.", "a\nb\r\nc", "Subject: x\r\n\r\n.\r\n.\r\n", "\r", "\r\r\n\n"}
	for _, b := range bodies {
		var buf bytes.Buffer
		w := bufio.NewWriter(&buf)
		if _, err := writeBody(w, []byte(b), -1); err != nil {
			t.Fatal(err)
		}
		w.Flush()
		out := bytes.TrimSuffix(buf.Bytes(), []byte(".\r\n"))
		var unstuffed []byte
		for _, l := range bytes.SplitAfter(out, []byte("\r\n")) {
			unstuffed = append(unstuffed, bytes.TrimPrefix(l, []byte("."))...)
		}
		if int64(len(unstuffed)) != wireSize([]byte(b)) {
			t.Errorf("body %q: unstuffed %d octets, wireSize %d", b, len(unstuffed), wireSize([]byte(b)))
		}
	}
}

func TestSizeCache(t *testing.T) {
	c := newSizeCache(2)
	a, b, d := [32]byte{1}, [32]byte{2}, [32]byte{3}
	c.put(a, 1)
	c.put(b, 2)
	c.put(a, 99) // present: kept
	if n, ok := c.get(a); !ok || n != 1 {
		t.Fatalf("a = %d, %v", n, ok)
	}
	c.put(d, 3) // evicts a, the oldest
	if _, ok := c.get(a); ok {
		t.Fatal("a not evicted")
	}
	if n, ok := c.get(d); !ok || n != 3 {
		t.Fatalf("d = %d, %v", n, ok)
	}
}
