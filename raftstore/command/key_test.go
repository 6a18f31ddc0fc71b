package command

import (
	"testing"
	"time"
)

// TestNewKeyOrdered: keys drawn later sort after earlier ones (the dedupe
// index appends), keys of one millisecond differ, and every key fits the
// encoding's limit.
func TestNewKeyOrdered(t *testing.T) {
	t0 := time.UnixMilli(1_700_000_000_000)
	prev := newKeyAt(t0)
	seen := map[string]bool{prev: true}
	for i := 1; i < 2000; i++ {
		k := newKeyAt(t0.Add(time.Duration(i/10) * time.Millisecond))
		if len(k) != 32 || len(k) > MaxKeyLen {
			t.Fatalf("key %q: length %d", k, len(k))
		}
		if seen[k] {
			t.Fatalf("key %q drawn twice", k)
		}
		seen[k] = true
		if i%10 == 0 && k <= prev {
			t.Fatalf("key %q of a later millisecond sorts before %q", k, prev)
		}
		prev = k
	}
	if k := NewKey(); k[:12] < newKeyAt(t0)[:12] {
		t.Fatalf("NewKey %q does not start with the current time", k)
	}
}
