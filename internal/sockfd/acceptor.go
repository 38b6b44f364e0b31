// Package sockfd is loginsvc's raw socket layer: listening TCP sockets
// that stay out of the Go netpoller (Listen), an accept loop shared by
// several processes (Acceptor; a login process's waits in the netpoller
// through its epoll set, NewPolledAcceptor), a client socket as a
// net.Conn whose reads and writes are raw system calls (Conn, raw.go),
// and the one conversion of a kernel socket address to a netip.AddrPort
// (AddrPort). docs/loginsvc.md ("How it works") tells why.
package sockfd

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrClosed is returned by Acceptor.Next after Stop, and
// ErrNotNow when its may function said no after a wake-up.
var (
	ErrClosed = errors.New("acceptor stopped")
	ErrNotNow = errors.New("not accepting now")
)

// Acceptor accepts from listening sockets that several processes share
// (the supervisor and a service's high-performance login processes): one
// socket in the supervisor, all of a service's sockets in a login process,
// which therefore takes exactly one client at a time whatever the number of
// listeners (so it never goes over client_limit). It waits in its own
// epoll set, never in the Go netpoller directly, so that a process that is
// not accepting is not woken by connections at all. The supervisor's
// (NewAcceptor) waits in epoll_wait on a thread of its own; a login
// process's (NewPolledAcceptor) puts that epoll set into the netpoller
// and takes the listening sockets out of it while the process is full
// (Pause).
type Acceptor struct {
	lfds   []int
	turn   int // the socket tried first by the next accept (round robin)
	from   int // the socket of the last connection Next returned
	ep     int
	efd    int // eventfd that Stop writes, to wake a waiting Next
	closed atomic.Bool

	// Polled (NewPolledAcceptor): the epoll set itself waits in the Go
	// netpoller (ep is pf's), and the listening sockets are in it only
	// while Next may wait (armed; Pause takes them out).
	pf    *os.File
	rc    syscall.RawConn
	armed bool

	evs []unix.EpollEvent // epoll_wait's (NewAcceptor)
}

// NewAcceptor waits on the listening sockets lfds (it does not own or
// close them), in epoll_wait on the thread that calls Next (the
// supervisor's). Its wait is not exclusive: a connection wakes it and
// every other process waiting on the sockets.
func NewAcceptor(lfds []int) (*Acceptor, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(ep)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	a := &Acceptor{lfds: lfds, ep: ep, efd: efd, evs: make([]unix.EpollEvent, len(lfds)+1)}
	if err := a.arm(); err != nil {
		a.Release()
		return nil, err
	}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, efd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(efd)}); err != nil {
		a.Release()
		return nil, fmt.Errorf("epoll_ctl: %w", err)
	}
	return a, nil
}

// NewPolledAcceptor is NewAcceptor for a login process, whose
// Next waits in the Go netpoller instead of on a thread of its own: its
// epoll set is a descriptor that the netpoller watches like a socket.
// No thread is then blocked in epoll_wait between connections, so the
// runtime's monitor can sleep, and a connection is accepted, greeted and
// its goroutine started on the thread that the netpoller woke, without a
// hand-off between threads (bench/README.md). As NewAcceptor's, its wait
// is not exclusive: EPOLLEXCLUSIVE would make no difference, since the
// kernel passes an exclusive wake-up on to the next waiter when no
// thread waits in the set's own epoll_wait, so while waiting the
// process is woken with every other waiting one. Pause takes the
// listening sockets out of the set while the process does not want
// clients (full), so that a full process is not woken at all.
func NewPolledAcceptor(lfds []int) (*Acceptor, error) {
	a, err := NewAcceptor(lfds)
	if err != nil {
		return nil, err
	}
	// os.NewFile registers a non-blocking descriptor with the netpoller.
	if err := unix.SetNonblock(a.ep, true); err != nil {
		a.Release()
		return nil, fmt.Errorf("epoll set non-blocking: %w", err)
	}
	a.pf = os.NewFile(uintptr(a.ep), "accept-epoll")
	if a.rc, err = a.pf.SyscallConn(); err != nil {
		a.Release()
		return nil, err
	}
	return a, nil
}

// arm puts the listening sockets into the epoll set (all or, with an
// error, none).
func (a *Acceptor) arm() error {
	for i, lfd := range a.lfds {
		if err := unix.EpollCtl(a.ep, unix.EPOLL_CTL_ADD, lfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(lfd)}); err != nil {
			for _, done := range a.lfds[:i] {
				unix.EpollCtl(a.ep, unix.EPOLL_CTL_DEL, done, nil)
			}
			return fmt.Errorf("epoll_ctl(%d): %w", lfd, err)
		}
	}
	a.armed = true
	return nil
}

// Pause takes the listening sockets out of a polled Acceptor's epoll
// set (NewPolledAcceptor) until the next Next that has to wait: call it
// when the process stops accepting for a while (it is full), so that
// connections do not wake it meanwhile. Only the goroutine that calls
// Next may call it; it does nothing on other Acceptors.
func (a *Acceptor) Pause() {
	if a.pf == nil || !a.armed {
		return
	}
	for _, lfd := range a.lfds {
		unix.EpollCtl(a.ep, unix.EPOLL_CTL_DEL, lfd, nil)
	}
	a.armed = false
}

// Next returns the next connection (non-blocking, close-on-exec) from any
// of the sockets, taking them in turn, waiting for one as long as needed. may, if not nil, is asked after each
// wake-up; if it says no, Next returns ErrNotNow without accepting.
// Other errors: ErrClosed after Stop, or accept4's (EMFILE and
// the like: the caller decides whether to retry). Only one goroutine may
// call Next at a time.
func (a *Acceptor) Next(may func() bool) (int, unix.Sockaddr, error) {
	if a.pf != nil {
		return a.nextPolled(may)
	}
	for woken := false; ; woken = true {
		if a.closed.Load() {
			return -1, nil, ErrClosed
		}
		if woken && may != nil && !may() {
			return -1, nil, ErrNotNow
		}
		nfd, sa, err := a.try()
		switch err {
		case nil:
			return nfd, sa, nil
		case unix.EAGAIN:
			if _, err := unix.EpollWait(a.ep, a.evs, -1); err != nil && err != unix.EINTR {
				return -1, nil, err
			}
		case unix.EINTR, unix.ECONNABORTED: // try again before waiting
		default:
			return -1, nil, err
		}
	}
}

// nextPolled is Next of a polled Acceptor (NewPolledAcceptor). It
// accepts inside the netpoller wait's callback: the wait resets the
// readiness the netpoller recorded before it looks (RawConn.Read), so
// a connection whose wake-up was recorded between an accept4 that
// found nothing and the wait would otherwise wait for the next
// connection's wake-up. Every wake-up of a socket in the set wakes the
// set's own waiters, the netpoller among them, whether or not the
// set's ready list was emptied: so the set is never read (no
// epoll_wait), and a wake-up only sends the callback to accept4 again
// (the netpoller reports only events with something ready; one that
// came while Next was accepting makes at most one accept4 more, which
// finds nothing).
func (a *Acceptor) nextPolled(may func() bool) (int, unix.Sockaddr, error) {
	for {
		if a.closed.Load() {
			return -1, nil, ErrClosed
		}
		if !a.armed {
			// Paused: a connection that came meanwhile is taken
			// without the sockets going back into the set; else back
			// in, and the first accept4 below finds one that came in
			// between.
			switch nfd, sa, err := a.try(); err {
			case nil:
				return nfd, sa, nil
			case unix.EAGAIN:
			case unix.EINTR, unix.ECONNABORTED:
				continue
			default:
				return -1, nil, err
			}
			if err := a.arm(); err != nil {
				return -1, nil, err
			}
		}
		nfd, sa, err := -1, unix.Sockaddr(nil), error(unix.EAGAIN)
		woken := false
		werr := a.rc.Read(func(uintptr) bool {
			switch {
			case a.closed.Load():
				err = ErrClosed
			case woken && may != nil && !may():
				err = ErrNotNow
			default:
				woken = true
				if beforeWait != nil {
					beforeWait()
				}
				nfd, sa, err = a.try()
			}
			return err != unix.EAGAIN
		})
		if werr != nil {
			return -1, nil, werr
		}
		if err == unix.EINTR || err == unix.ECONNABORTED {
			continue // try again before waiting
		}
		return nfd, sa, err
	}
}

// try accepts from the sockets in turn, starting where the last try
// left off: a connection, EAGAIN when no socket has one, or the first
// other error of accept4 (EINTR and ECONNABORTED: the caller tries
// again).
func (a *Acceptor) try() (int, unix.Sockaddr, error) {
	for range a.lfds {
		lfd := a.lfds[a.turn]
		a.turn = (a.turn + 1) % len(a.lfds)
		nfd, sa, errno := rawAccept4(lfd)
		if errno == 0 {
			a.from = lfd
			return nfd, sa, nil
		}
		if errno != unix.EAGAIN {
			return -1, nil, errno
		}
	}
	return -1, nil, unix.EAGAIN
}

// Stop makes Next return ErrClosed (at once if it is waiting).
// It is safe to call from any goroutine, more than once.
func (a *Acceptor) Stop() {
	if !a.closed.Swap(true) {
		unix.Write(a.efd, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	}
}

// Release closes the epoll set and the eventfd (not the listening
// socket); call it when Next will not be called again.
func (a *Acceptor) Release() {
	if a.pf != nil {
		a.pf.Close() // out of the netpoller, and closes ep
	} else {
		unix.Close(a.ep)
	}
	unix.Close(a.efd)
}

// Listen opens a listening TCP socket (SO_REUSEADDR, SO_REUSEPORT if
// reusePort (inet_listener reuse_port = yes, as Dovecot's master sets it:
// other programs may then bind the same port too), IPV6_V6ONLY for
// tcp6, backlog capped by net.core.somaxconn) and returns it as an
// *os.File that is NOT registered with the Go netpoller (see Acceptor)
// but is in non-blocking mode.
func Listen(network, addr string, reusePort bool) (*os.File, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, err
	}
	var family int
	var sa unix.Sockaddr
	switch a := ap.Addr().Unmap(); {
	case network == "tcp4" && a.Is4():
		family, sa = unix.AF_INET, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.As4()}
	case network == "tcp6":
		family, sa = unix.AF_INET6, &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	default:
		return nil, fmt.Errorf("listen %s %s: address family mismatch", network, addr)
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	fail := func(call string, err error) (*os.File, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("%s %s: %w", call, addr, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return fail("setsockopt", err)
	}
	if reusePort {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			return fail("setsockopt", err)
		}
	}
	if family == unix.AF_INET6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			return fail("setsockopt", err)
		}
	}
	if err := unix.Bind(fd, sa); err != nil {
		return fail("bind", err)
	}
	if err := unix.Listen(fd, 65535); err != nil {
		return fail("listen", err)
	}
	// Still blocking here, so os.NewFile does not register it with the
	// netpoller; then non-blocking for accept4.
	f := os.NewFile(uintptr(fd), strings.Join([]string{network, addr}, " "))
	if err := unix.SetNonblock(fd, true); err != nil {
		f.Close()
		return nil, fmt.Errorf("set non-blocking: %w", err)
	}
	return f, nil
}

// Listeners returns the listening sockets a waits on (it does not own
// them).
func (a *Acceptor) Listeners() []int { return a.lfds }

// From is the listening socket that the last connection Next returned
// came from.
func (a *Acceptor) From() int { return a.from }

// BoundAddrs returns the local address of each of the listening sockets
// fds that is bound to one address (not 0.0.0.0 or ::): every connection
// accepted from such a socket has that local address, which therefore
// need not be asked of the kernel per connection (Conn.SetLocalAddr).
func BoundAddrs(fds []int) map[int]*net.TCPAddr {
	m := map[int]*net.TCPAddr{}
	for _, fd := range fds {
		sa, err := unix.Getsockname(fd)
		if err != nil {
			continue
		}
		if ap := AddrPort(sa); ap.IsValid() && !ap.Addr().IsUnspecified() {
			m[fd] = net.TCPAddrFromAddrPort(ap)
		}
	}
	return m
}

// beforeWait, when set (by a test), is called in a polled Acceptor's
// wait callback before its accept4, after the wait reset the
// netpoller's readiness: a connection that arrives then is the one
// that used to be missed (see nextPolled).
var beforeWait func()
