package raftstore

import (
	"bytes"
	"fmt"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/raftmail/raftmail/raftstore/command"
)

func TestBodyCacheEvictsLeastRecentlyUsed(t *testing.T) {
	c := newBodyCache(16 * 100) // limit 100 bytes per body
	id := func(i int) [32]byte { return [32]byte{byte(i)} }
	for i := 0; i < 16; i++ {
		if !c.put(id(i), bytes.Repeat([]byte{byte(i)}, 100)) {
			t.Fatalf("body %d not kept", i)
		}
	}
	if _, ok := c.get(id(0)); !ok { // 0 becomes the most recent
		t.Fatal("body 0 missing before the cache is full")
	}
	c.put(id(16), make([]byte, 100)) // evicts 1, the least recent
	if _, ok := c.get(id(1)); ok {
		t.Fatal("body 1 should have been evicted")
	}
	for _, i := range []int{0, 2, 15, 16} {
		if b, ok := c.get(id(i)); !ok || len(b) != 100 {
			t.Fatalf("body %d: kept %v, %d bytes", i, ok, len(b))
		}
	}
	if n, used, _, _ := c.stats(); n != 16 || used != 1600 {
		t.Fatalf("%d entries, %d bytes; want 16, 1600", n, used)
	}
	if c.put(id(99), make([]byte, 101)) {
		t.Fatal("a body over the per-body limit must not be cached")
	}
	b, _ := c.get(id(2))
	if cap(b) != len(b) {
		t.Fatal("a cached body's capacity must be clipped so appends copy")
	}
	var off *bodyCache
	if off.put(id(1), []byte("x")) {
		t.Fatal("a nil cache keeps nothing")
	}
	if _, ok := newBodyCache(-1).get(id(2)); ok {
		t.Fatal("a disabled cache returns nothing")
	}
}

// Through a ReadTx: the second read is a hit that shares the first one's
// bytes, Body hands out a private copy, and both equal the delivered body.
func TestSharedBodyReadsThroughCache(t *testing.T) {
	s := newScript(t)
	s.ok("", &command.AddDomain{Name: "example.org"})
	s.ok("", &command.AddAccount{Address: "a@example.org", PassHash: "h"})
	b := s.blob("cached", 20_000)
	s.ok("k", &command.Deliver{Blob: b, Rcpts: []string{"a@example.org"}})
	st := &Store{codec: testCodec(t), bodies: newBodyCache(1 << 20)}
	want := body("cached", 20_000)
	err := s.ref.view(func(tx *bolt.Tx) error {
		r := &ReadTx{tx: tx, store: st}
		first, err := r.SharedBody(b.ID)
		if err != nil {
			return err
		}
		second, err := r.SharedBody(b.ID)
		if err != nil {
			return err
		}
		own, err := r.Body(b.ID)
		if err != nil {
			return err
		}
		if !bytes.Equal(first, want) || !bytes.Equal(own, want) {
			return fmt.Errorf("body differs from what was delivered")
		}
		if &first[0] != &second[0] {
			return fmt.Errorf("second read did not come from the cache")
		}
		if &own[0] == &first[0] {
			return fmt.Errorf("Body must return a private copy")
		}
		own[0] ^= 0xff
		if again, _ := r.SharedBody(b.ID); !bytes.Equal(again, want) {
			return fmt.Errorf("modifying Body's result changed the cached body")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, hits, misses := st.bodies.stats(); hits != 3 || misses != 1 {
		t.Fatalf("hits %d misses %d; want 3, 1", hits, misses)
	}
}

// TestBodyCacheConcurrent: readers and writers at once (run under -race):
// every hit returns the bytes put under that key, and the cache never
// holds more than its bound.
func TestBodyCacheConcurrent(t *testing.T) {
	c := newBodyCache(64 * 100)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				k := byte((i*7 + w*13) % 200)
				if b, ok := c.get([32]byte{k}); ok {
					if len(b) != 50+int(k)%50 || b[0] != k {
						t.Errorf("key %d: got %d bytes starting %d", k, len(b), b[0])
						return
					}
					continue
				}
				c.put([32]byte{k}, bytes.Repeat([]byte{k}, 50+int(k)%50))
			}
		}(w)
	}
	wg.Wait()
	if _, used, hits, misses := c.stats(); used > 64*100 || hits == 0 || misses == 0 {
		t.Fatalf("%d bytes held (bound %d), %d hits, %d misses", used, 64*100, hits, misses)
	}
}
