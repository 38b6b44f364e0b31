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

// cacheKey names one DNS lookup: a PTR lookup of addr, or a forward
// lookup of name (lower-cased) in network.
type cacheKey struct {
	kind    int
	addr    netip.Addr
	network string
	name    string
}

func (k cacheKey) String() string {
	if k.kind == kindPTR {
		return k.addr.String()
	}
	return k.name
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

// lookup answers k from the cache (emptied first when resolv.conf
// changed), or joins the upstream lookup in flight for k, or starts one
// (for a forward lookup, of name as spelt by this caller).
// The upstream lookup runs in its own goroutine under the Resolver's
// context, not ctx. lookup returns when the result is there or ctx ends,
// whichever is first.
func (r *Resolver) lookup(ctx context.Context, k cacheKey, name string) result {
	conf := r.resolv.get()
	now := r.now()
	r.mu.Lock()
	if conf != r.conf {
		// resolv.conf changed (or this is the first lookup): answers
		// from other servers or search lists are no longer valid.
		clear(r.entries)
		r.conf = conf
	}
	if r.closed {
		r.mu.Unlock()
		return result{err: fmt.Errorf("lookup %s: %w", k, ErrClosed)}
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
		go r.run(k, c, name)
	}
	r.mu.Unlock()
	select {
	case <-c.done:
		return c.res
	case <-ctx.Done():
		r.stats.timeouts.Add(1)
		return result{err: fmt.Errorf("lookup %s: %w", k, ctx.Err())}
	}
}

// run performs one upstream lookup, caches its result for as long as the
// fetch says (zero: not at all) and wakes the callers waiting for it.
func (r *Resolver) run(k cacheKey, c *call, name string) {
	defer r.wg.Done()
	var res result
	var ttl time.Duration
	if k.kind == kindPTR {
		res, ttl = r.fetchPTR(r.base, k.addr)
	} else {
		res, ttl = r.fetchHost(r.base, k.network, name)
	}
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
