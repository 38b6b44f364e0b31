package sockfd

import (
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Conn is a client's TCP socket as a net.Conn, made straight from the
// accepted (non-blocking) descriptor: os.NewFile registers it with the Go
// netpoller as it is, where net.FileConn would dup it, probe it with
// getsockopt, getsockname and getpeername, and set TCP_NODELAY and four
// keep-alive options, about a dozen system calls per connection that a
// login process (which writes whole replies and holds a client for at
// most the pre-login timeout) has no use for. Reads, writes, deadlines
// and Close are os.File's; a timeout is os.ErrDeadlineExceeded, which
// is a net.Error with Timeout() true, and end of stream is io.EOF.
// The client's address comes from accept (see NewConn); the local
// one is asked of the kernel when first wanted (getsockname, which still
// answers after a reset).
type Conn struct {
	*os.File
	fd     int
	remote net.Addr
	local  net.Addr
}

// NewConn takes ownership of fd, a connected, non-blocking TCP socket.
// remote is the client's address as accept returned it (this process's
// accept4, or the supervisor's, sent with the socket): once the client
// has reset the connection, getpeername fails (ENOTCONN), so the address
// cannot be asked of the kernel later. nil leaves it to getpeername.
func NewConn(fd int, remote *net.TCPAddr) *Conn {
	c := &Conn{File: os.NewFile(uintptr(fd), "client"), fd: fd}
	if remote != nil {
		c.remote = remote
	}
	return c
}

// tcpAddr converts a socket address (nil or not AF_INET/AF_INET6: an
// empty *net.TCPAddr, so that callers need no nil check).
func tcpAddr(sa unix.Sockaddr) *net.TCPAddr { return net.TCPAddrFromAddrPort(AddrPort(sa)) }

// RemoteAddr is the client's address (*net.TCPAddr).
func (c *Conn) RemoteAddr() net.Addr {
	if c.remote == nil {
		sa, _ := unix.Getpeername(c.fd)
		c.remote = tcpAddr(sa)
	}
	return c.remote
}

// LocalAddr is the listener's address the client connected to
// (*net.TCPAddr).
func (c *Conn) LocalAddr() net.Addr {
	if c.local == nil {
		sa, _ := unix.Getsockname(c.fd)
		c.local = tcpAddr(sa)
	}
	return c.local
}

// SetAddrs replaces the addresses RemoteAddr and LocalAddr return (with
// those of a PROXY header).
func (c *Conn) SetAddrs(remote, local net.Addr) { c.remote, c.local = remote, local }

// Peek waits, at most until the read deadline, for unread bytes and
// copies as many as fit into p without consuming them (recv MSG_PEEK);
// io.EOF when the peer has closed and nothing is left. It is how the
// PROXY header is read without taking bytes past it (pkg/logind/login/haproxy.go).
func (c *Conn) Peek(p []byte) (int, error) {
	rc, err := c.File.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		for {
			n, _, rerr = unix.Recvfrom(int(fd), p, unix.MSG_PEEK)
			if rerr != unix.EINTR {
				return rerr != unix.EAGAIN
			}
		}
	})
	switch {
	case err != nil:
		return 0, err
	case rerr != nil:
		return 0, os.NewSyscallError("recvfrom", rerr)
	case n == 0 && len(p) > 0:
		return 0, io.EOF
	}
	return n, nil
}

// SetDeadline, SetReadDeadline and SetWriteDeadline are os.File's; they are
// listed here so that Conn is a net.Conn.
func (c *Conn) SetDeadline(t time.Time) error      { return c.File.SetDeadline(t) }
func (c *Conn) SetReadDeadline(t time.Time) error  { return c.File.SetReadDeadline(t) }
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.File.SetWriteDeadline(t) }

// SyscallConn gives the descriptor to the access-socket client, which
// passes it with SCM_RIGHTS (as Dovecot's login processes do).
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return c.File.SyscallConn() }

var _ net.Conn = (*Conn)(nil)

// WaitHangup waits until the peer of the socket rc has closed its side
// (POLLRDHUP, POLLHUP or POLLERR) and returns true, or until stop is
// closed and returns false, at once: the poll also waits on an eventfd
// that stop's closing signals, so the caller is never held up (a
// 100 ms polling step used to add up to 100 ms to every reply that
// followed the watch: each AUTHENTICATE took 100 ms). It holds rc's
// descriptor until it returns.
func WaitHangup(rc syscall.RawConn, stop <-chan struct{}) bool {
	select {
	case <-stop:
		return false
	default:
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		// No descriptor to spare: wait for stop alone (the hangup is
		// then seen when the session next reads).
		<-stop
		return false
	}
	defer unix.Close(efd)
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-stop:
			unix.Write(efd, []byte{1, 0, 0, 0, 0, 0, 0, 0})
		case <-done:
		}
	}()
	hup := false
	rc.Control(func(fd uintptr) {
		p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}, {Fd: int32(efd), Events: unix.POLLIN}}
		for {
			n, err := unix.Poll(p, -1)
			if err == unix.EINTR {
				continue
			}
			if err != nil || n <= 0 || p[1].Revents != 0 {
				return
			}
			hup = p[0].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0
			return
		}
	})
	if !hup {
		<-stop
	}
	return hup
}
