// Package workpool runs a login process's per-client work on reused
// goroutines, so that a client does not start on a fresh goroutine whose
// stack the runtime then grows, copying it each time, on the way
// through its login.
//
// A new goroutine starts with a small stack (Go's adaptive initial size
// is the average of all goroutines' stacks at the last collection: in a
// login process most goroutines are clients parked in a read, so it
// stays small), and a login (the auth client, SASL, the hand-off, a log
// line; the TLS handshake deeper still) grows it several times:
// runtime.morestack, newstack and copystack, which walks and adjusts
// every frame on the stack, cost about 6% of a high-performance login
// process's CPU (bench/README.md, "Reused client goroutines"). A worker
// whose client has gone waits, for a bounded time, for the next one
// instead of exiting: its stack is already grown. The collector halves
// a parked goroutine's stack when it uses less than a quarter of it, so
// a worker that waits long enough shrinks, and an idle process keeps at
// most MaxIdle waiting workers for at most IdleTimeout each: nothing is
// kept for a connection held idle (its client's goroutine is parked in
// its read as before).
package workpool

import (
	"sync"
	"time"
)

// Pool runs functions on goroutines it keeps for reuse. The zero Pool
// keeps no idle worker: Go then starts a goroutine for each function,
// which ends with it. A Pool must not be copied after first use. Its
// methods are safe for concurrent use.
type Pool struct {
	// MaxIdle is the most workers that wait for a function at once;
	// one that finishes its function while MaxIdle wait ends. 0: none
	// waits.
	MaxIdle int
	// IdleTimeout is how long a worker waits for a function before it
	// ends. 0: it ends at once (MaxIdle has no effect).
	IdleTimeout time.Duration

	once  sync.Once
	work  chan func() // unbuffered: a send succeeds only into a waiting worker
	mu    sync.Mutex
	idle  int // workers waiting on work
	total int // workers running or waiting
}

// Go runs f on a waiting worker, or on a new one if none waits. It
// never blocks. f runs exactly once. If f panics, the panic is not
// recovered (as with a go statement, it ends the process); if f calls
// runtime.Goexit, its worker ends and is no longer counted.
func (p *Pool) Go(f func()) {
	p.once.Do(func() { p.work = make(chan func()) })
	select {
	case p.work <- f: // a waiting worker took it
		return
	default:
	}
	p.mu.Lock()
	p.total++
	p.mu.Unlock()
	go p.worker(f)
}

// worker runs f, then waits for the next function while the pool
// wants it to (wait).
func (p *Pool) worker(f func()) {
	var t *time.Timer
	defer func() {
		// Also when f panics or calls runtime.Goexit.
		if t != nil {
			t.Stop()
		}
		p.mu.Lock()
		p.total--
		p.mu.Unlock()
	}()
	for {
		f()
		f = nil // not kept alive while waiting
		if !p.wait() {
			return
		}
		if t == nil {
			t = time.NewTimer(p.IdleTimeout)
		} else {
			t.Reset(p.IdleTimeout) // Go 1.23 timers: no stale fire to drain
		}
		select {
		case f = <-p.work:
			t.Stop()
			p.mu.Lock()
			p.idle--
			p.mu.Unlock()
		case <-t.C:
			p.mu.Lock()
			p.idle--
			p.mu.Unlock()
			t = nil // fired: nothing to stop
			return
		}
	}
}

// wait reports whether a worker that finished its function may wait
// for another, and counts it as waiting if so.
func (p *Pool) wait() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.IdleTimeout <= 0 || p.idle >= p.MaxIdle {
		return false
	}
	p.idle++
	return true
}

// Stats returns the number of workers (running a function or waiting)
// and of those waiting for one.
func (p *Pool) Stats() (workers, idle int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.total, p.idle
}
