package sockfd

import (
	"encoding/binary"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A login process makes the system calls of a client's way through it
// (accept4, the greeting, reading the command, the reply) as raw system
// calls, without the runtime's entersyscall/exitsyscall around them:
// these never wait (every socket is non-blocking), and with one P
// (GOMAXPROCS=1) an ordinary system call is what wakes the runtime's
// monitor thread from its sleep (a futex wake, then at least one more
// sleep of 20 µs and a futex wait on that thread) after each moment the
// process was idle, and what lets the monitor hand the P to another
// thread when a loopback write or close takes more than 20 µs (the
// kernel runs the peer's side of loopback TCP inside the call). See
// bench/README.md for what that costs per connection.

// rawAccept4 is accept4(2) on lfd (flags: SOCK_CLOEXEC|SOCK_NONBLOCK),
// and the peer's address for an inet socket (nil otherwise).
func rawAccept4(lfd int) (int, unix.Sockaddr, syscall.Errno) {
	var rsa unix.RawSockaddrAny
	n := uint32(unix.SizeofSockaddrAny)
	fd, _, e := unix.RawSyscall6(unix.SYS_ACCEPT4, uintptr(lfd), uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&n)),
		unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0, 0)
	if e != 0 {
		return -1, nil, e
	}
	return int(fd), inetSockaddr(&rsa), 0
}

// inetSockaddr converts an AF_INET or AF_INET6 address from the kernel
// (nil for other families).
func inetSockaddr(rsa *unix.RawSockaddrAny) unix.Sockaddr {
	switch rsa.Addr.Family {
	case unix.AF_INET:
		p := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		return &unix.SockaddrInet4{Port: port(p.Port), Addr: p.Addr}
	case unix.AF_INET6:
		p := (*unix.RawSockaddrInet6)(unsafe.Pointer(rsa))
		return &unix.SockaddrInet6{Port: port(p.Port), ZoneId: p.Scope_id, Addr: p.Addr}
	}
	return nil
}

// port is a port in network byte order as the kernel stores it.
func port(p uint16) int {
	var b [2]byte
	*(*uint16)(unsafe.Pointer(&b[0])) = p
	return int(binary.BigEndian.Uint16(b[:]))
}

// RawWrite is write(2) on the non-blocking socket fd as a raw system
// call (see above): the bytes written, or the error (EAGAIN when the
// socket's buffer is full).
func RawWrite(fd int, p []byte) (int, syscall.Errno) {
	if len(p) == 0 {
		return 0, 0
	}
	n, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(n), 0
}

// rawRead is read(2) on the non-blocking socket fd as a raw system call.
func rawRead(fd int, p []byte) (int, syscall.Errno) {
	n, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(n), 0
}
