package raftstore

import (
	"container/list"
	"sync"
)

// bodyCache keeps recently read bodies decompressed, bounded in bytes,
// least recently used out first. It is keyed by the body's SHA-256, so an
// entry can never go stale: the same key always names the same bytes, on
// every node, before and after a snapshot restore. It plays the part the
// page cache plays for Dovecot's uncompressed Maildir files: a mailbox read
// again (a client syncing, a second device, IDLE then FETCH) does not pay
// zstd again. Measured in docs/benchmarks-components.md.
type bodyCache struct {
	mu    sync.Mutex
	max   int64 // bytes; 0 disables the cache
	limit int64 // largest body kept (max/16), so one huge message cannot flush the rest
	used  int64
	lru   *list.List // front = most recent; values *bodyEntry
	byID  map[[32]byte]*list.Element

	hits, misses uint64
}

type bodyEntry struct {
	id   [32]byte
	body []byte
}

// A nil *bodyCache caches nothing.
func newBodyCache(max int64) *bodyCache {
	if max < 0 {
		max = 0
	}
	return &bodyCache{max: max, limit: max / 16, lru: list.New(), byID: make(map[[32]byte]*list.Element)}
}

// get returns a cached body (read-only: shared with other readers).
func (c *bodyCache) get(id [32]byte) ([]byte, bool) {
	if c == nil || c.max == 0 {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byID[id]
	if !ok {
		c.misses++
		return nil, false
	}
	c.hits++
	c.lru.MoveToFront(e)
	return e.Value.(*bodyEntry).body, true
}

// put keeps body, which the caller must not modify afterwards, and reports
// whether it did. Its capacity is clipped so that an append by a reader
// copies instead of writing into the shared array.
func (c *bodyCache) put(id [32]byte, body []byte) bool {
	if c == nil {
		return false
	}
	n := int64(len(body))
	if c.max == 0 || n > c.limit {
		return false
	}
	body = body[:len(body):len(body)]
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.byID[id]; ok {
		return true
	}
	c.byID[id] = c.lru.PushFront(&bodyEntry{id: id, body: body})
	c.used += n
	for c.used > c.max {
		old := c.lru.Back()
		ent := old.Value.(*bodyEntry)
		c.lru.Remove(old)
		delete(c.byID, ent.id)
		c.used -= int64(len(ent.body))
	}
	return true
}

// stats reports the cache's size and hit counts (for metrics and tests).
func (c *bodyCache) stats() (entries int, bytes int64, hits, misses uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len(), c.used, c.hits, c.misses
}

// BodyCacheStats describes the decompressed-body cache of a store.
type BodyCacheStats struct {
	Entries      int
	Bytes, Limit int64
	Hits, Misses uint64
}

// BodyCacheStats reports the body cache's size and hit counts.
func (s *Store) BodyCacheStats() BodyCacheStats {
	if s.bodies == nil {
		return BodyCacheStats{}
	}
	n, used, hits, misses := s.bodies.stats()
	return BodyCacheStats{Entries: n, Bytes: used, Limit: s.bodies.max, Hits: hits, Misses: misses}
}
