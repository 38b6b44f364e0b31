// Package sockfd is loginsvc's raw socket layer: listening TCP sockets
// that stay out of the Go netpoller (Listen), an accept loop shared by
// several processes (Acceptor), and the one conversion of a kernel
// socket address to a netip.AddrPort (AddrPort).
package sockfd

import (
	"errors"
	"fmt"
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
// listeners (so it never goes over client_limit). The sockets are in the
// Acceptor's own epoll set, never in the Go netpoller itself: a process
// that is not accepting (full, or the supervisor while its gate is
// closed) is not woken by connections at all. While Next waits, that
// epoll set's descriptor is in the netpoller, so the wait holds no
// thread in a blocking system call: a goroutine in epoll_wait keeps its
// P in a system call, which keeps the runtime's sysmon thread polling
// every 20 µs (about 50 wake-ups per client in a login process at 150
// logins/s) and delays the goroutines the accept made runnable until
// sysmon takes the P back. The wake-up is not exclusive: the kernel
// honours EPOLLEXCLUSIVE only for a task waiting in epoll_wait on the
// set itself, not for a set polled from another one, so every process
// waiting in Next is woken and the losers find nothing (as Dovecot's
// processes, which all poll the sockets, do).
type Acceptor struct {
	lfds   []int
	turn   int // the socket tried first by the next accept (round robin)
	ep     *os.File
	rc     syscall.RawConn
	efd    int // eventfd that Stop writes, to wake a waiting Next
	evs    []unix.EpollEvent
	closed atomic.Bool
}

// NewAcceptor waits on the listening sockets lfds (it does not own or
// close them).
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
	a := &Acceptor{lfds: lfds, efd: efd, evs: make([]unix.EpollEvent, len(lfds)+1)}
	fail := func(err error) (*Acceptor, error) {
		if a.ep == nil {
			unix.Close(ep)
		}
		a.Release()
		return nil, err
	}
	for _, lfd := range lfds {
		if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, lfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(lfd)}); err != nil {
			return fail(fmt.Errorf("epoll_ctl(%d): %w", lfd, err))
		}
	}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, efd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(efd)}); err != nil {
		return fail(fmt.Errorf("epoll_ctl: %w", err))
	}
	// Non-blocking before os.NewFile, which then puts the set in the
	// netpoller (an epoll set is readable while it has events).
	if err := unix.SetNonblock(ep, true); err != nil {
		return fail(fmt.Errorf("set non-blocking: %w", err))
	}
	a.ep = os.NewFile(uintptr(ep), "acceptor")
	if a.rc, err = a.ep.SyscallConn(); err != nil {
		return fail(err)
	}
	return a, nil
}

// Next returns the next connection (non-blocking, close-on-exec) from any
// of the sockets, taking them in turn, waiting for one as long as needed. may, if not nil, is asked after each
// wake-up; if it says no, Next returns ErrNotNow without accepting.
// Other errors: ErrClosed after Stop, or accept4's (EMFILE and
// the like: the caller decides whether to retry). Only one goroutine may
// call Next at a time.
func (a *Acceptor) Next(may func() bool) (int, unix.Sockaddr, error) {
	nfd, sa, err := -1, unix.Sockaddr(nil), error(nil)
	woken := false
	werr := a.rc.Read(func(uintptr) bool {
		for {
			if a.closed.Load() {
				err = ErrClosed
				return true
			}
			if woken && may != nil && !may() {
				err = ErrNotNow
				return true
			}
			// Which sockets have a connection: one epoll_wait, not an
			// accept4 on each (most of which would find nothing).
			n, werr := unix.EpollWait(int(a.ep.Fd()), a.evs, 0)
			if werr == unix.EINTR {
				continue
			}
			if werr != nil {
				err = werr
				return true
			}
			if n == 0 {
				woken = true
				return false // wait in the netpoller
			}
			var ready uint64 // bit i: lfds[i] has a connection
			for _, ev := range a.evs[:n] {
				for i, lfd := range a.lfds {
					if int32(lfd) == ev.Fd && i < 64 {
						ready |= 1 << i
					}
				}
			}
			for range a.lfds {
				i := a.turn
				a.turn = (a.turn + 1) % len(a.lfds)
				if ready&(1<<i) == 0 {
					continue
				}
				var s syscall.Sockaddr
				nfd, s, err = syscall.Accept4(a.lfds[i], unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK)
				if err == nil {
					sa = unixSockaddr(s)
					return true
				}
				if err != unix.EAGAIN && err != unix.EINTR && err != unix.ECONNABORTED {
					return true
				}
				nfd, err = -1, nil // taken by another process, or aborted: next
			}
			if ready == 0 { // only Stop's eventfd
				continue
			}
		}
	})
	if werr != nil && err == nil {
		err = werr
	}
	return nfd, sa, err
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
	if a.ep != nil {
		a.ep.Close()
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
