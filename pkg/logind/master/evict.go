package master

import (
	"container/heap"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/ipc"
)

// Eviction by source. A flood of connections from one address must not
// churn every other client out of a full service (Dovecot evicts the
// oldest pre-login client whoever holds the places, so 2,000
// reconnecting connections from one address evict every honest client
// within a fraction of a second of its greeting). loginsvc groups
// clients by source (an IPv4 address, or an IPv6 prefix of
// login_prelogin_ipv6_prefix bits) and:
//
//   - at the limit, evicts the oldest logging-in client of the source
//     that holds the most places (its pre-login clients, checking or
//     logging in, plus its connections waiting for a place); ties go to
//     the source whose oldest logging-in client is oldest, so that with
//     one client per source this is Dovecot's oldest-first rule;
//   - never evicts a client of a source that holds fewer places than
//     the waiting connection's own source (it waits for a place
//     instead, at most DropTimeout): a flood cannot take a place from a
//     smaller source even while its own clients are all being evicted;
//   - on a tie, evicts the waiting connection's own source's client, or
//     nobody, if that source still holds a pre-login client (see victim);
//   - caps each source at login_prelogin_ip_limit places: a connection
//     from a source at the cap evicts that source's own oldest
//     logging-in client, or, if it has none, is closed at once (see
//     pool.admit).
//
// Every operation is O(log n): a source keeps its logging-in clients in
// a min-heap by age, and the sources that have one are in a max-heap by
// places.

// source is one client source and the places it holds.
type source struct {
	key    netip.Prefix   // the zero Prefix: an unknown address, a source of its own
	n      int            // places: pre-login clients (checking, logging in) + waiting connections
	in     idxHeap[*conn] // its logging-in clients, oldest on top
	wait   []*pendingConn // its waiting connections, oldest first
	heapAt int            // index in sources.holders, -1 while in is empty
	waitAt int            // index in sources.waitq, -1 while wait is empty
}

// sources indexes a pool's clients and waiting connections by source.
// It is guarded by the pool's mu.
type sources struct {
	byKey   map[netip.Prefix]*source
	holders idxHeap[*source] // sources with a logging-in client, the next victim's on top
	waitq   idxHeap[*source] // sources with a waiting connection, the next served on top
	v6Bits  int              // login_prelogin_ipv6_prefix
}

func newSources(v6Bits int) sources {
	return sources{
		v6Bits: v6Bits,
		holders: idxHeap[*source]{
			less: func(a, b *source) bool { return before(a.in.top(), b.in.top()) },
			at:   func(src *source) *int { return &src.heapAt },
		},
		waitq: idxHeap[*source]{
			less: func(a, b *source) bool { return a.n < b.n || (a.n == b.n && a.wait[0].seq < b.wait[0].seq) },
			at:   func(src *source) *int { return &src.waitAt },
		},
	}
}

// sourceKey is the source addr belongs to: the address itself for IPv4
// (IPv4-mapped IPv6 addresses unmapped), its v6Bits prefix for IPv6, and
// the zero Prefix if addr is not valid.
func sourceKey(addr netip.Addr, v6Bits int) netip.Prefix {
	addr = addr.Unmap()
	switch {
	case addr.Is4():
		return netip.PrefixFrom(addr, 32)
	case addr.Is6():
		pf, _ := addr.WithZone("").Prefix(v6Bits)
		return pf
	}
	return netip.Prefix{}
}

// peek returns the source of addr, nil if it holds nothing.
func (s *sources) peek(addr netip.Addr) *source {
	return s.byKey[sourceKey(addr, s.v6Bits)]
}

// get returns the source of addr, created if need be; an unknown
// address gets a new anonymous source, never shared. A new source must
// be given a place (track or wait) at once.
func (s *sources) get(addr netip.Addr) *source {
	key := sourceKey(addr, s.v6Bits)
	if !key.IsValid() {
		return newSource(key)
	}
	if src := s.byKey[key]; src != nil {
		return src
	}
	if s.byKey == nil {
		s.byKey = map[netip.Prefix]*source{}
	}
	src := newSource(key)
	s.byKey[key] = src
	return src
}

func newSource(key netip.Prefix) *source {
	return &source{key: key, heapAt: -1, waitAt: -1,
		in: idxHeap[*conn]{less: older, at: func(c *conn) *int { return &c.inAt }}}
}

// hold adds d places to src (d = -1 releases one), puts src where it
// now belongs in the heaps, and forgets src once it holds nothing.
func (s *sources) hold(src *source, d int) {
	src.n += d
	s.holders.place(src, src.in.len() > 0)
	s.waitq.place(src, len(src.wait) > 0)
	if src.n <= 0 && src.key.IsValid() {
		delete(s.byKey, src.key)
	}
}

// track starts counting c, a new client from addr in state c.state.
func (s *sources) track(c *conn, addr netip.Addr) {
	c.src, c.inAt = s.get(addr), -1
	if c.state != ipc.StateProxying {
		c.counted = true
		c.src.n++
	}
	s.setState(c, c.state)
}

// setState records that c is now in state st: a logging-in client is an
// eviction candidate, a proxying one no longer holds a pre-login place.
func (s *sources) setState(c *conn, st ipc.ConnState) {
	c.state = st
	src := c.src
	if src == nil {
		return
	}
	d := 0
	if st == ipc.StateProxying && c.counted {
		c.counted, d = false, -1
	}
	src.in.place(c, st == ipc.StateLoggingIn && c.login == nil)
	s.hold(src, d)
}

// loggedIn stops counting c as a pre-login client of its source, as a
// proxying one is not counted: it has logged in (who.go), and is no
// longer a candidate for eviction.
func (s *sources) loggedIn(c *conn) {
	if c.src != nil {
		s.release(c)
	}
}

// release takes c (of a source) out of the eviction candidates and the
// places of its source.
func (s *sources) release(c *conn) {
	c.src.in.place(c, false)
	d := 0
	if c.counted {
		c.counted, d = false, -1
	}
	s.hold(c.src, d)
}

// untrack stops counting c (gone, evicted, or its process exited).
func (s *sources) untrack(c *conn) {
	if c.src != nil {
		s.release(c)
		c.src = nil
	}
}

// wait counts waiting connection pc (pc.src set by get).
func (s *sources) wait(pc *pendingConn) {
	pc.src.wait = append(pc.src.wait, pc)
	s.hold(pc.src, 1)
}

// unwait stops counting pc, given or closed: the oldest waiting
// connection of its source, or (closed by dropPending or at its
// deadline, in arrival order) the oldest of its source too.
func (s *sources) unwait(pc *pendingConn) {
	src := pc.src
	if len(src.wait) > 0 && src.wait[0] == pc {
		src.wait[0] = nil
		src.wait = src.wait[1:]
	} else if i := slices.Index(src.wait, pc); i >= 0 {
		src.wait = slices.Delete(src.wait, i, i+1)
	}
	s.hold(src, -1)
}

// nextWaiting returns the waiting connection to serve next: the oldest
// of the source holding the fewest places. There must be one.
func (s *sources) nextWaiting() *pendingConn { return s.waitq.top().wait[0] }

// victimSource returns the source that holds the most places among
// those with a logging-in client (nil if none).
func (s *sources) victimSource() *source {
	if s.holders.len() == 0 {
		return nil
	}
	return s.holders.top()
}

// older orders clients by age: accepted earlier, then the lower id.
func older(a, b *conn) bool {
	return a.accepted.Before(b.accepted) || (a.accepted.Equal(b.accepted) && a.id < b.id)
}

// before orders eviction candidates: the client of the source holding
// more places, then the older one.
func before(a, b *conn) bool {
	return a.src.n > b.src.n || (a.src.n == b.src.n && older(a, b))
}

// idxHeap is a binary heap (container/heap) whose elements know their
// index (at), so that any of them can be moved or removed in O(log n).
type idxHeap[T any] struct {
	s    []T
	less func(a, b T) bool
	at   func(T) *int // -1 while not in the heap
}

func (h *idxHeap[T]) Len() int           { return len(h.s) }
func (h *idxHeap[T]) Less(i, j int) bool { return h.less(h.s[i], h.s[j]) }
func (h *idxHeap[T]) Swap(i, j int) {
	h.s[i], h.s[j] = h.s[j], h.s[i]
	*h.at(h.s[i]), *h.at(h.s[j]) = i, j
}
func (h *idxHeap[T]) Push(x any) {
	v := x.(T)
	*h.at(v) = len(h.s)
	h.s = append(h.s, v)
}
func (h *idxHeap[T]) Pop() any {
	v := h.s[len(h.s)-1]
	var zero T
	h.s[len(h.s)-1] = zero
	h.s = h.s[:len(h.s)-1]
	*h.at(v) = -1
	return v
}

func (h *idxHeap[T]) len() int { return len(h.s) }
func (h *idxHeap[T]) top() T   { return h.s[0] }

// place puts v in the heap, at its right place after a change of its
// key, if in, and takes it out otherwise.
func (h *idxHeap[T]) place(v T, in bool) {
	switch i := *h.at(v); {
	case in && i < 0:
		heap.Push(h, v)
	case !in && i >= 0:
		heap.Remove(h, i)
	case in:
		heap.Fix(h, i)
	}
}

// victim returns the client to evict to make room for a connection
// from forSrc (nil: any source), or nil if there is none: the oldest
// logging-in client of the source holding the most places, provided its
// eviction makes room (evictionFrees) and that source holds at least as
// many places as forSrc. On a tie with forSrc, when forSrc holds a
// pre-login client besides its waiting connections, the victim is
// forSrc's own oldest logging-in client, or nobody if it has none yet
// (all being checked): a source that comes back before its last client
// is gone evicts its own, never another source's equal share. A source
// whose only places are waiting connections (a newcomer) gets Dovecot's
// oldest-first rule among the sources tied with it. When the top
// candidate's eviction would not make room (a draining high-performance
// process, or one that has served its service_count: rare), the
// candidates are scanned in full. mu is held.
func (p *pool) victim(forSrc *source) *conn {
	top := p.srcs.victimSource()
	if top == nil || (forSrc != nil && top.n < forSrc.n) {
		return nil
	}
	var only *source // the source the victim must be of, if just one
	if forSrc != nil && forSrc.n > len(forSrc.wait) && forSrc.n >= top.n {
		if forSrc.in.len() == 0 {
			return nil
		}
		top, only = forSrc, forSrc
	}
	if c := top.in.top(); p.evictionFrees(c) {
		return c
	}
	var best *conn
	for _, c := range p.conns {
		if c.state != ipc.StateLoggingIn || c.login != nil || c.src == nil || (forSrc != nil && c.src.n < forSrc.n) || (only != nil && c.src != only) || !p.evictionFrees(c) {
			continue
		}
		if best == nil || before(c, best) {
			best = c
		}
	}
	return best
}

// evict evicts client c ("Connection queue full"). reserve: c's slot is
// for the supervisor's next client (an eviction for a waiting
// connection), not for a direct accept of its high-performance process.
// mu is held.
func (p *pool) evict(c *conn, reserve bool) {
	pr := c.p
	p.counters.Evicted++
	pr.w.Evict(c.id, reserve)
	p.forget(c)
	if pr.evicted == nil {
		pr.evicted = map[uint64]struct{}{}
	}
	pr.evicted[c.id] = struct{}{} // until the process reports it closed
	p.noteOutgoing(pr)            // its place comes back when the process is reaped
	if len(pr.evicted) > maxUnclosedEvictions {
		p.violation(pr, fmt.Sprintf("left %d evicted clients unclosed", len(pr.evicted)))
	}
}

// forget removes client c from the pool's books. mu is held.
func (p *pool) forget(c *conn) {
	p.acked(c)
	p.srcs.untrack(c)
	delete(c.p.conns, c.id)
	delete(p.conns, c.id)
}

// admit applies login_prelogin_ip_limit to a new client from src. In
// high-security mode (newc nil) the supervisor has just accepted it and
// src does not count it yet; in high-performance mode newc was accepted
// by a process and is counted. If src holds more than the limit with
// it, src's oldest logging-in client is evicted (newc itself if it is
// the only one, or if src has none: it is then refused). admit reports
// whether the new client may go on; false only for newc == nil: the
// caller closes the connection. mu is held.
func (p *pool) admit(src *source, newc *conn) bool {
	limit := p.cfg.PreloginIPLimit
	if src == nil {
		return true // holds nothing
	}
	n := src.n
	if newc == nil {
		n++
	}
	if limit <= 0 || !src.key.IsValid() || n <= limit {
		return true
	}
	if now := time.Now(); now.Sub(p.lastIPLimitLog) >= time.Second {
		p.lastIPLimitLog = now
		p.log.Warn("login_prelogin_ip_limit reached, evicting the source's oldest logging-in client", "login_prelogin_ip_limit", limit, "source", src.key.String())
	}
	c := newc
	if src.in.len() > 0 {
		c = src.in.top()
	}
	if c == nil {
		return false
	}
	p.evict(c, false)
	return c != newc || newc == nil
}
