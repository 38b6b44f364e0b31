package master

import (
	"net/netip"
	"syscall"
	"time"
)

// Waiting connections. A connection that finds no place (at
// process_limit, or while spawning is throttled) waits for one, at most
// DropTimeout. Places that come back go first to the waiting connection
// of the source that holds the fewest places (see evict.go), then to
// the oldest: a flood that fills the queue from one address does not
// make a client from another address wait behind it. p.pending keeps
// every waiting connection in arrival order for the deadlines; each
// source keeps its own in arrival order; the sources with a waiting
// connection are in a heap (sources.waitq).

// queue makes the new connection fd from remote (source srcAddr) wait.
// mu is held.
func (p *pool) queue(fd int, remote netip.AddrPort, srcAddr netip.Addr, now time.Time) {
	p.waitSeq++
	pc := &pendingConn{fd: fd, remote: remote, srcAddr: srcAddr, deadline: now.Add(DropTimeout), src: p.srcs.get(srcAddr), seq: p.waitSeq}
	p.pending = append(p.pending, pc)
	p.waiting++
	p.srcs.wait(pc)
}

// unqueue takes pc out of the waiting connections (given, or closed).
// mu is held.
func (p *pool) unqueue(pc *pendingConn) {
	pc.gone = true
	p.waiting--
	p.srcs.unwait(pc)
	for len(p.pending) > 0 && p.pending[0].gone {
		p.pending[0] = nil
		p.pending = p.pending[1:]
	}
	if len(p.pending) == 0 {
		p.pending = nil
	}
}

// closeWaiting closes waiting connection pc unserved. mu is held.
func (p *pool) closeWaiting(pc *pendingConn) {
	syscall.Close(pc.fd)
	p.counters.Dropped++
	p.unqueue(pc)
}

// giveWaiting closes the waiting connections past their deadline (all
// of them when stopping), then hands the others to processes that can
// take them, spawning where allowed, in the order above. mu is held.
func (p *pool) giveWaiting(now time.Time) {
	for len(p.pending) > 0 && (p.stopping || !now.Before(p.pending[0].deadline)) {
		p.closeWaiting(p.pending[0])
	}
	for p.waiting > 0 {
		pr := p.pick()
		if pr == nil && p.roomy() == nil {
			pr = p.spawnIfAllowed(now)
		}
		if pr == nil {
			return
		}
		pc := p.srcs.nextWaiting()
		p.give(pr, pc.fd, pc.remote, pc.srcAddr, now)
		p.unqueue(pc) // after give: the place passes from pc to its client
	}
}

// dropPending closes every waiting connection. mu is held.
func (p *pool) dropPending() {
	for len(p.pending) > 0 {
		p.closeWaiting(p.pending[0])
	}
}

func (p *pool) armDropTimer() {
	if p.dropTimer != nil || len(p.pending) == 0 {
		return
	}
	d := time.Until(p.pending[0].deadline)
	p.dropTimer = time.AfterFunc(d, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.dropTimer = nil
		p.dispatch(time.Now())
		p.armDropTimer()
	})
}
