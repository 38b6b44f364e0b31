package sockfd

import (
	"io"
	"net"
	"os"
	"sync"
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
	rc     syscall.RawConn // the File's: Read and Write wait through it
	fd     int
	remote net.Addr
	local  net.Addr

	// Read's and Write's RawConn callbacks (method values made at the
	// first call) and their state, one set per direction: a closure per
	// call would cost allocations per call. rmu and wmu keep concurrent
	// Reads (Writes) apart, as os.File's own locks do.
	readFn, writeFn func(uintptr) bool
	rmu, wmu        sync.Mutex
	rbuf, wbuf      []byte
	rn, wn          int
	rerrno, werrno  syscall.Errno
}

// NewConn takes ownership of fd, a connected, non-blocking TCP socket.
// remote is the client's address as accept returned it (this process's
// accept4, or the supervisor's, sent with the socket): once the client
// has reset the connection, getpeername fails (ENOTCONN), so the address
// cannot be asked of the kernel later. nil leaves it to getpeername.
func NewConn(fd int, remote *net.TCPAddr) *Conn {
	c := &Conn{File: os.NewFile(uintptr(fd), "client"), fd: fd}
	c.rc, _ = c.File.SyscallConn()
	if remote != nil {
		c.remote = remote
	}
	return c
}

// Read is os.File's Read (the same results and errors, deadlines, EOF)
// with the read itself a raw system call (raw.go). It allocates nothing
// (its RawConn callback and the callback's state are the Conn's).
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 || c.rc == nil {
		return c.File.Read(p)
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.readFn == nil {
		c.readFn = c.read
	}
	c.rbuf, c.rn, c.rerrno = p, 0, 0
	err := c.rc.Read(c.readFn)
	n, errno := c.rn, c.rerrno
	c.rbuf = nil
	switch {
	case err != nil:
		// Nothing was read (closed, or past the deadline): os.File
		// finds the same and says so in its own words.
		return c.File.Read(p)
	case errno != 0:
		return 0, &os.PathError{Op: "read", Path: c.File.Name(), Err: errno}
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// read is Read's RawConn callback: false (wait) while there is nothing
// to read.
func (c *Conn) read(fd uintptr) bool {
	for {
		c.rn, c.rerrno = rawRead(int(fd), c.rbuf)
		if c.rerrno != unix.EINTR {
			return c.rerrno != unix.EAGAIN
		}
	}
}

// Write is os.File's Write (all of p unless an error, which it returns
// as os.File does) with the writes raw system calls (raw.go). It
// allocates nothing, as Read.
func (c *Conn) Write(p []byte) (int, error) {
	if len(p) == 0 || c.rc == nil {
		return c.File.Write(p)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.writeFn == nil {
		c.writeFn = c.write
	}
	c.wbuf, c.wn, c.werrno = p, 0, 0
	err := c.rc.Write(c.writeFn)
	written, errno := c.wn, c.werrno
	c.wbuf = nil
	switch {
	case err != nil:
		// Closed, or past the deadline: os.File's error for the rest.
		n, err := c.File.Write(p[written:])
		return written + n, err
	case errno != 0:
		return written, &os.PathError{Op: "write", Path: c.File.Name(), Err: errno}
	}
	return written, nil
}

// write is Write's RawConn callback: false (wait) while the socket's
// buffer is full.
func (c *Conn) write(fd uintptr) bool {
	for c.wn < len(c.wbuf) {
		n, e := RawWrite(int(fd), c.wbuf[c.wn:])
		switch e {
		case 0:
			c.wn += n
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		default:
			c.werrno = e
			return true
		}
	}
	return true
}

// tcpAddr converts a socket address (nil or not AF_INET/AF_INET6: an
// empty *net.TCPAddr, so that callers need no nil check).
func tcpAddr(sa syscall.Sockaddr) *net.TCPAddr {
	return net.TCPAddrFromAddrPort(SyscallAddrPort(sa))
}

// RemoteAddr is the client's address (*net.TCPAddr).
func (c *Conn) RemoteAddr() net.Addr {
	if c.remote == nil {
		sa, _ := syscall.Getpeername(c.fd)
		c.remote = tcpAddr(sa)
	}
	return c.remote
}

// LocalAddr is the listener's address the client connected to
// (*net.TCPAddr).
func (c *Conn) LocalAddr() net.Addr {
	if c.local == nil {
		sa, _ := syscall.Getsockname(c.fd)
		c.local = tcpAddr(sa)
	}
	return c.local
}

// SetLocalAddr sets the address LocalAddr returns, when it is known
// from the listening socket (BoundAddrs).
func (c *Conn) SetLocalAddr(local *net.TCPAddr) { c.local = local }

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

// SetDeadline is os.File's SetDeadline (reads and writes); it is listed
// here so that Conn is a net.Conn.
func (c *Conn) SetDeadline(t time.Time) error { return c.File.SetDeadline(t) }

// SetReadDeadline is os.File's SetReadDeadline: a Read past t fails with
// os.ErrDeadlineExceeded.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.File.SetReadDeadline(t) }

// SetWriteDeadline is os.File's SetWriteDeadline: a Write past t fails
// with os.ErrDeadlineExceeded.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.File.SetWriteDeadline(t) }

// SyscallConn gives the descriptor to the access-socket client, which
// passes it with SCM_RIGHTS (as Dovecot's login processes do).
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return c.File.SyscallConn() }

var _ net.Conn = (*Conn)(nil)

// Deadliner is a socket whose reads can be cut short by a read deadline
// (*Conn, *net.TCPConn).
type Deadliner interface {
	syscall.Conn
	// SetReadDeadline makes a blocked Read return
	// os.ErrDeadlineExceeded at t (a time in the past: at once).
	SetReadDeadline(t time.Time) error
}

// WatchHangup calls hup, once, from a goroutine of its own, when the
// peer of the socket c closes its side (POLLRDHUP, POLLHUP or POLLERR),
// until the returned stop is called. It waits through Go's netpoller,
// where c is already registered: the goroutine is parked, not a thread
// blocked in poll(2), and it looks at the socket only when it becomes
// readable (poll with a zero timeout). Unread input stays in the socket
// (nothing is read, not even with MSG_PEEK). stop wakes the goroutine
// with a read deadline in the past and returns once it has ended, at
// once; the read deadline stays in the past, so the caller sets the one
// it wants (the watch ends early, without calling hup, at the deadline
// c already had, and when c is not a socket).
func WatchHangup(c Deadliner, hup func()) (stop func()) {
	rc, err := c.SyscallConn()
	if err != nil {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var hung bool
		rc.Read(func(fd uintptr) bool {
			hung = peerClosed(int(fd))
			if watchLooked != nil {
				watchLooked()
			}
			return hung
		})
		if hung {
			hup()
		}
	}()
	return func() {
		c.SetReadDeadline(time.Unix(1, 0))
		<-done
	}
}

// watchLooked, when set (by a test), is called each time WatchHangup
// has looked at its socket.
var watchLooked func()

// peerClosed reports whether the peer of the socket fd has closed its
// side, without waiting.
func peerClosed(fd int) bool {
	p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
	for {
		n, err := unix.Poll(p, 0)
		if err == unix.EINTR {
			continue
		}
		return n > 0 && p[0].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR) != 0
	}
}
