package resolver

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// cache keeps answers for their TTL, positive ones and (RFC 2308) negative
// ones, up to a number of entries, evicting the least recently used; and it
// merges concurrent lookups of one question into one exchange with the
// servers. It lives in the back-end, so with the plugin placement every
// loop using the plugin shares it.
//
// Only what answerOf extracted from a checked answer goes in: a bad answer,
// a timeout or a server failure is an error, and errors are never kept
// (each lookup after one asks again), so a forged or broken datagram cannot
// poison the cache.
type cache struct {
	max       int           // entries; 0 keeps nothing (lookups are still merged)
	maxTTL    time.Duration // a cap on any TTL
	maxNegTTL time.Duration // a cap on negative TTLs
	now       func() time.Time

	mu      sync.Mutex
	entries map[cacheKey]*cacheEntry
	lru     cacheEntry // sentinel of the recency ring: lru.next is the newest
	flights map[cacheKey]*flight
	gen     uint64 // bumped by flush: a flight from before it does not store

	hits, misses, merged, evictions atomic.Uint64
}

type cacheKey struct {
	name  string // lower case, fully qualified
	qtype uint16
}

type cacheEntry struct {
	key        cacheKey
	ans        *answer
	expires    time.Time
	prev, next *cacheEntry
}

// flight is one exchange in progress, shared by every lookup of its key
// that arrives before it ends.
type flight struct {
	done      chan struct{}
	ans       *answer
	err       error
	abandoned bool // the caller running it gave up: the waiters ask again
}

func newCache(max int, maxTTL, maxNegTTL time.Duration) *cache {
	c := &cache{max: max, maxTTL: maxTTL, maxNegTTL: maxNegTTL, now: time.Now,
		entries: make(map[cacheKey]*cacheEntry), flights: make(map[cacheKey]*flight)}
	c.lru.next, c.lru.prev = &c.lru, &c.lru
	return c
}

// lookup returns the answer to key: from the cache while it is fresh, else
// from fetch, run once for every lookup of key that arrives while it runs.
// The first caller runs fetch on its own goroutine, with its own ctx (no
// goroutine hand-off on the path of a miss); the others wait for it, each
// within its own ctx. If the first caller gives up (its ctx ends), the
// flight ends without an answer and those still waiting start another.
func (c *cache) lookup(ctx context.Context, key cacheKey, fetch func(context.Context) (*answer, error)) (*answer, error) {
	for {
		c.mu.Lock()
		if e := c.entries[key]; e != nil {
			if c.now().Before(e.expires) {
				c.toFront(e)
				c.mu.Unlock()
				c.hits.Add(1)
				return e.ans, nil
			}
			c.remove(e)
		}
		f := c.flights[key]
		if f == nil {
			c.misses.Add(1)
			f = &flight{done: make(chan struct{})}
			c.flights[key] = f
			gen := c.gen
			c.mu.Unlock()
			ans, err := fetch(ctx)
			c.finish(key, f, gen, ans, err, ctx.Err() != nil)
			return ans, err
		}
		c.merged.Add(1)
		c.mu.Unlock()
		select {
		case <-f.done:
			if f.abandoned {
				continue // its caller gave up; ask again
			}
			return f.ans, f.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// finish ends a flight: the answer is stored (unless the cache was flushed
// since the flight began) and handed to the waiters.
func (c *cache) finish(key cacheKey, f *flight, gen uint64, ans *answer, err error, abandoned bool) {
	c.mu.Lock()
	delete(c.flights, key)
	if err == nil && gen == c.gen {
		c.store(key, ans)
	}
	c.mu.Unlock()
	f.ans, f.err, f.abandoned = ans, err, err != nil && abandoned
	close(f.done)
}

// peek returns the fresh answer to key, if the cache holds one, without
// asking anyone: the path of a hit, which needs no goroutine.
func (c *cache) peek(key cacheKey) (*answer, bool) {
	c.mu.Lock()
	e := c.entries[key]
	if e == nil || !c.now().Before(e.expires) {
		c.mu.Unlock()
		return nil, false
	}
	c.toFront(e)
	c.mu.Unlock()
	c.hits.Add(1)
	return e.ans, true
}

// store keeps ans for its TTL (capped); c.mu is held.
func (c *cache) store(key cacheKey, ans *answer) {
	ttl := time.Duration(ans.ttl) * time.Second
	limit := c.maxTTL
	if ans.negative() {
		if !ans.negCacheable {
			return
		}
		limit = c.maxNegTTL
	}
	ttl = min(ttl, limit)
	if ttl <= 0 || c.max <= 0 {
		return
	}
	if old := c.entries[key]; old != nil {
		c.remove(old)
	}
	e := &cacheEntry{key: key, ans: ans, expires: c.now().Add(ttl)}
	c.entries[key] = e
	c.pushFront(e)
	for len(c.entries) > c.max {
		c.remove(c.lru.prev)
		c.evictions.Add(1)
	}
}

// flush forgets every answer (the servers changed); flights in progress
// finish for their callers but do not store.
func (c *cache) flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	clear(c.entries)
	c.lru.next, c.lru.prev = &c.lru, &c.lru
}

func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

func (c *cache) pushFront(e *cacheEntry) {
	e.prev, e.next = &c.lru, c.lru.next
	c.lru.next.prev = e
	c.lru.next = e
}

func (c *cache) toFront(e *cacheEntry) {
	if c.lru.next == e {
		return
	}
	e.prev.next, e.next.prev = e.next, e.prev
	c.pushFront(e)
}

func (c *cache) remove(e *cacheEntry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
	delete(c.entries, e.key)
}
