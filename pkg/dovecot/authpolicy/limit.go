package authpolicy

import (
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/tcpwrapd/tcpwrapd/internal/sockfd"
)

// NewSilentAfter is how long a new connection must have sent nothing
// before it may be closed to make room at MaxConnections: Dovecot sends
// its request as soon as it connects.
const NewSilentAfter = 100 * time.Millisecond

// ErrKindEvictedIdle counts a connection closed between requests (or
// before its first one) to make room at MaxConnections (Server.Error).
const ErrKindEvictedIdle = "evicted_idle"

// limitListener lets at most max connections be open at once. When they
// are, Accept makes room by closing the connection idle longest: a
// keep-alive connection between requests (http.StateIdle), else one that
// has sent nothing for NewSilentAfter (http.StateNew), never one inside a
// request; when there is none, it waits for one. So connections that say
// nothing cannot keep a fresh request out.
type limitListener struct {
	net.Listener
	max     int
	log     *slog.Logger
	evicted func()

	mu      sync.Mutex
	conns   map[*limitConn]struct{}
	changed chan struct{} // a connection ended or went idle
	done    chan struct{}
	once    sync.Once
}

func newLimitListener(ln net.Listener, n int, log *slog.Logger, evicted func()) *limitListener {
	return &limitListener{Listener: ln, max: n, log: log, evicted: evicted,
		conns: map[*limitConn]struct{}{}, changed: make(chan struct{}, 1), done: make(chan struct{})}
}

func (l *limitListener) signal() {
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

// Accept accepts a connection, then makes room for it (see
// limitListener) before it returns it: room is made only for a client
// that is there. Only one goroutine (http.Server.Serve) calls it.
func (l *limitListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	for {
		l.mu.Lock()
		if len(l.conns) < l.max {
			break
		}
		victim, wait := l.victimLocked(time.Now())
		l.mu.Unlock()
		if victim != nil {
			l.log.Debug("auth policy: connection limit reached: closed the connection idle longest",
				"remote_addr", victim.RemoteAddr().String(), "limit", l.max)
			if l.evicted != nil {
				l.evicted()
			}
			victim.Close()
			continue
		}
		if !l.wait(wait) {
			c.Close()
			return nil, net.ErrClosed
		}
	}
	lc := &limitConn{Conn: c, l: l, state: http.StateNew, since: time.Now()}
	l.conns[lc] = struct{}{}
	l.mu.Unlock()
	return lc, nil
}

// wait waits for a connection to end or go idle, or for d (0: no limit);
// false means the listener was closed.
func (l *limitListener) wait(d time.Duration) bool {
	var timer <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timer = t.C
	}
	select {
	case <-l.changed:
	case <-timer:
	case <-l.done:
		return false
	}
	return true
}

// victimLocked returns the connection to close to make room, or how long
// until a new connection will have been silent for NewSilentAfter (0:
// none will; wait for a change). A connection whose next request is in
// its socket buffer, not yet read, is left alone: it is about to be
// served.
func (l *limitListener) victimLocked(now time.Time) (*limitConn, time.Duration) {
	skip := map[*limitConn]bool{}
	for range 8 {
		victim, wait := l.oldestLocked(now, skip)
		if victim == nil || !sockfd.HasInput(victim.Conn) {
			return victim, wait
		}
		skip[victim] = true
	}
	return nil, NewSilentAfter
}

// oldestLocked returns the connection idle longest, not in skip, as
// victimLocked.
func (l *limitListener) oldestLocked(now time.Time, skip map[*limitConn]bool) (*limitConn, time.Duration) {
	var idle, fresh *limitConn
	for c := range l.conns {
		if skip[c] {
			continue
		}
		switch c.state {
		case http.StateIdle:
			if idle == nil || c.since.Before(idle.since) {
				idle = c
			}
		case http.StateNew:
			if fresh == nil || c.since.Before(fresh.since) {
				fresh = c
			}
		}
	}
	switch {
	case idle != nil:
		return idle, 0
	case fresh == nil:
		return nil, 0
	case now.Sub(fresh.since) >= NewSilentAfter:
		return fresh, 0
	}
	return nil, NewSilentAfter - now.Sub(fresh.since)
}

// connState is the http.Server.ConnState hook that tracks each
// connection's state for victimLocked.
func (l *limitListener) connState(c net.Conn, st http.ConnState) {
	lc, ok := c.(*limitConn)
	if !ok {
		return
	}
	switch st {
	case http.StateClosed, http.StateHijacked:
		lc.release()
		return
	}
	// Only an idle or new connection's since is read (oldestLocked): an
	// active one's costs no clock read.
	var since time.Time
	if st != http.StateActive {
		since = time.Now()
	}
	l.mu.Lock()
	lc.state, lc.since = st, since
	l.mu.Unlock()
	if st == http.StateIdle {
		l.signal()
	}
}

func (l *limitListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type limitConn struct {
	net.Conn
	l     *limitListener
	state http.ConnState // under l.mu
	since time.Time      // under l.mu: when state (idle or new) was entered
	once  sync.Once
}

func (c *limitConn) release() {
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
		c.l.signal()
	})
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.release()
	return err
}

func itoa(n int) string { return strconv.Itoa(n) }
