package masterauth

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Send's system calls are raw system calls, without the runtime's
// entersyscall/exitsyscall around them, as a login process's other
// calls on its clients' sockets (internal/sockfd, raw.go): none of them
// waits (the socket is non-blocking and a unix socket's connect never
// waits), and an ordinary system call is what wakes the runtime's
// monitor thread after each moment the process was idle. This package
// keeps to the standard library and x/sys (pkg/dovecot/deps_test.go),
// so it has its own.

// connectUnix connects a new non-blocking, close-on-exec unix stream
// socket to path (socket, connect), as net.Dial("unix", path) names it:
// a leading '@' is an abstract socket. It fails at once when the
// connect would have to wait (EAGAIN: the listener's backlog is full)
// or nobody listens (ENOENT, ECONNREFUSED); then no descriptor is left
// open. A path too long for sun_path is EINVAL.
func connectUnix(path string) (int, syscall.Errno) {
	var sa unix.RawSockaddrUnix
	n := len(path)
	if n == 0 || n > len(sa.Path) || (n == len(sa.Path) && path[0] != '@') {
		return -1, unix.EINVAL
	}
	sa.Family = unix.AF_UNIX
	for i := 0; i < n; i++ {
		sa.Path[i] = int8(path[i])
	}
	// The family, the path and its NUL; an abstract name has no NUL.
	salen := unsafe.Offsetof(sa.Path) + uintptr(n) + 1
	if path[0] == '@' {
		sa.Path[0] = 0
		salen--
	}
	r, _, e := unix.RawSyscall(unix.SYS_SOCKET, unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if e != 0 {
		return -1, e
	}
	fd := int(r)
	for {
		_, _, e = unix.RawSyscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa)), salen)
		if e != unix.EINTR {
			break
		}
	}
	if e != 0 {
		unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0)
		return -1, e
	}
	return fd, 0
}

// cmsgRightsSpace is the size of a control message carrying one
// descriptor (unix.CmsgSpace(4) on 64-bit Linux).
const cmsgRightsSpace = 24

// sendFD is one sendmsg(2) on the non-blocking socket fd of p with the
// descriptor pass attached (SCM_RIGHTS), with MSG_NOSIGNAL (a closed
// peer is EPIPE, no SIGPIPE): the bytes sent, or the error (EAGAIN when
// the socket's buffer is full). It allocates nothing (unix.UnixRights
// and unix.SendmsgN do).
func sendFD(fd int, p []byte, pass int) (int, syscall.Errno) {
	var oob [cmsgRightsSpace]byte
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level = unix.SOL_SOCKET
	h.Type = unix.SCM_RIGHTS
	h.SetLen(unix.CmsgLen(4))
	*(*int32)(unsafe.Pointer(&oob[unix.CmsgLen(0)])) = int32(pass)
	var iov unix.Iovec
	if len(p) > 0 {
		iov.Base = &p[0]
		iov.SetLen(len(p))
	}
	var msg unix.Msghdr
	msg.Iov = &iov
	msg.SetIovlen(1)
	msg.Control = &oob[0]
	msg.SetControllen(len(oob))
	for {
		n, _, e := unix.RawSyscall(unix.SYS_SENDMSG, uintptr(fd), uintptr(unsafe.Pointer(&msg)), unix.MSG_NOSIGNAL)
		switch e {
		case 0:
			return int(n), 0
		case unix.EINTR:
		default:
			return 0, e
		}
	}
}

// readNow is one read(2) on the non-blocking socket fd: the bytes read
// (0: end of stream), or the error (EAGAIN when there is nothing yet).
func readNow(fd int, p []byte) (int, syscall.Errno) {
	n, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(n), 0
}
