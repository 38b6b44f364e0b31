package dovecotsock

import (
	"fmt"
	"log/slog"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/tcpwrapd/tcpwrapd/internal/sockfd"
	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
)

// fdError says why a request does not carry exactly one connected TCP
// socket. Server refuses such a request ("0\n") and logs Msg at Level with
// Attrs; Kind is its Stats error kind.
type fdError struct {
	Kind  string
	Level slog.Level
	Msg   string
	Attrs []any
}

func (e *fdError) Error() string { return e.Msg }

// clientSocket returns the one descriptor m carries, and the client
// (getpeername) and server (getsockname) ends of it, as libwrap's fromhost
// does for RQ_FILE. Unlike libwrap, which takes anything for an "unknown"
// client, it insists on exactly one connected TCP socket (AF_INET or
// AF_INET6, IPPROTO_TCP or IPPROTO_MPTCP): otherwise the *fdError says
// whether the kernel dropped descriptors (MSG_CTRUNC, for instance because
// our descriptor table is full), there were none or several, or the one
// is not a socket, not TCP, or not connected.
func clientSocket(m *message) (fd int, client, server hostsrules.Endpoint, ferr *fdError) {
	switch {
	case m.truncated:
		return -1, client, server, &fdError{Kind: ErrKindFDTruncated, Level: slog.LevelError,
			Msg:   "client descriptor not received (MSG_CTRUNC): descriptor table full?, refused",
			Attrs: []any{"fds", len(m.fds)}}
	case len(m.fds) == 0:
		return -1, client, server, &fdError{Kind: ErrKindNoFD, Level: slog.LevelWarn, Msg: "request carried no descriptor, refused"}
	case len(m.fds) > 1:
		return -1, client, server, &fdError{Kind: ErrKindManyFDs, Level: slog.LevelWarn,
			Msg: "request carried more than one descriptor, refused", Attrs: []any{"fds", len(m.fds)}}
	}
	fd = m.fds[0]
	// One getsockopt: the syscall package's Getpeername and Getsockname
	// below make no more (golang.org/x/sys/unix asks the protocol again
	// for every inet address).
	proto, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_PROTOCOL)
	if err != nil {
		return -1, client, server, &fdError{Kind: ErrKindNotSocket, Level: slog.LevelWarn,
			Msg: "descriptor is not a socket, refused", Attrs: []any{"err", err, "file_type", fileType(fd)}}
	}
	local, err := syscall.Getsockname(fd)
	s := sockfd.SyscallAddrPort(local)
	if err != nil || !s.IsValid() || (proto != syscall.IPPROTO_TCP && proto != unix.IPPROTO_MPTCP) {
		return -1, client, server, &fdError{Kind: ErrKindNotTCP, Level: slog.LevelWarn,
			Msg: "descriptor is not a TCP socket, refused", Attrs: []any{"socket", socketKind(fd, proto)}}
	}
	peer, err := syscall.Getpeername(fd)
	c := sockfd.SyscallAddrPort(peer)
	if err != nil || !c.IsValid() {
		return -1, client, server, &fdError{Kind: ErrKindNotConnected, Level: slog.LevelWarn,
			Msg: "TCP socket is not connected, refused", Attrs: []any{"err", err, "server_addr", s.String()}}
	}
	return fd, hostsrules.Endpoint{Addr: c}, hostsrules.Endpoint{Addr: s}, nil
}

// fileType describes what kind of file fd is, for the log.
func fileType(fd int) string {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err.Error()
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFREG:
		return "regular file"
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFCHR:
		return "character device"
	case unix.S_IFBLK:
		return "block device"
	case unix.S_IFSOCK:
		return "socket"
	}
	return "other"
}

// socketKind describes a socket that is not TCP, for the log:
// "family/type/protocol" with the names of the common values.
func socketKind(fd, proto int) string {
	family, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return err.Error()
	}
	typ, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_TYPE)
	if err != nil {
		return err.Error()
	}
	name := func(v int, names map[int]string) string {
		if n, ok := names[v]; ok {
			return n
		}
		return strconv.Itoa(v)
	}
	return fmt.Sprintf("%s/%s/%s",
		name(family, map[int]string{unix.AF_UNIX: "unix", unix.AF_INET: "inet", unix.AF_INET6: "inet6", unix.AF_NETLINK: "netlink"}),
		name(typ, map[int]string{unix.SOCK_STREAM: "stream", unix.SOCK_DGRAM: "dgram", unix.SOCK_SEQPACKET: "seqpacket", unix.SOCK_RAW: "raw"}),
		name(proto, map[int]string{unix.IPPROTO_TCP: "tcp", unix.IPPROTO_UDP: "udp", unix.IPPROTO_SCTP: "sctp", unix.IPPROTO_ICMP: "icmp"}))
}
