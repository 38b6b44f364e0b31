package resolve

import (
	"context"
	"fmt"
	"net/netip"
	"time"
)

// Kinds of cached lookups.
const (
	kindPTR = iota
	kindHost
)

// cacheKey names one DNS lookup: a PTR lookup of an address, or a forward
// lookup of a (lower-cased) name in a network.
type cacheKey struct {
	kind    int
	network string
	name    string
}

// result is the outcome of one lookup: a name (PTR target or canonical
// name) and addresses, or an error.
type result struct {
	name  string
	addrs []netip.Addr
	err   error
}

type entry struct {
	res     result
	expires time.Time
}

// call is one upstream lookup in flight; res is set before done closes.
type call struct {
	done chan struct{}
	res  result
}

// lookup answers k from the cache, or joins the upstream lookup in flight
// for k, or starts one with fetch. fetch runs in its own goroutine under
// the Resolver's context, not ctx, and returns the result and how long to
// cache it (zero: not at all). lookup returns when the result is there or
// ctx ends, whichever is first.
func (r *Resolver) lookup(ctx context.Context, k cacheKey, fetch func(context.Context) (result, time.Duration)) result {
	now := r.now()
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return result{err: fmt.Errorf("lookup %s: %w", k.name, ErrClosed)}
	}
	if e, ok := r.entries[k]; ok {
		if now.Before(e.expires) {
			r.mu.Unlock()
			if e.res.err != nil {
				r.stats.negHits.Add(1)
			} else {
				r.stats.hits.Add(1)
			}
			return e.res
		}
		delete(r.entries, k)
	}
	c, ok := r.inflight[k]
	if ok {
		r.stats.joins.Add(1)
	} else {
		r.stats.misses.Add(1)
		c = &call{done: make(chan struct{})}
		r.inflight[k] = c
		r.wg.Add(1)
		go r.run(k, c, fetch)
	}
	r.mu.Unlock()
	select {
	case <-c.done:
		return c.res
	case <-ctx.Done():
		r.stats.timeouts.Add(1)
		return result{err: fmt.Errorf("lookup %s: %w", k.name, ctx.Err())}
	}
}

// run performs one upstream lookup, caches its result and wakes the
// callers waiting for it.
func (r *Resolver) run(k cacheKey, c *call, fetch func(context.Context) (result, time.Duration)) {
	defer r.wg.Done()
	res, ttl := fetch(r.base)
	now := r.now()
	r.mu.Lock()
	delete(r.inflight, k)
	if ttl > 0 && !r.closed {
		if len(r.entries) >= r.cfg.MaxEntries {
			r.evict(now)
		}
		r.entries[k] = &entry{res: res, expires: now.Add(ttl)}
	}
	r.mu.Unlock()
	c.res = res
	close(c.done)
}

// evict makes room in a full cache: expired entries go first, then
// arbitrary ones (map order) until a tenth of the cache is free. r.mu
// must be held.
func (r *Resolver) evict(now time.Time) {
	for k, e := range r.entries {
		if !now.Before(e.expires) {
			delete(r.entries, k)
		}
	}
	target := r.cfg.MaxEntries - r.cfg.MaxEntries/10 - 1
	for k := range r.entries {
		if len(r.entries) <= target {
			break
		}
		delete(r.entries, k)
	}
}
