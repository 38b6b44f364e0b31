package accessd

import (
	"net"
	"net/netip"
	"strconv"
	"syscall"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
)

// endpoints returns the client (getpeername) and server (getsockname) ends
// of the socket fd, as libwrap's fromhost does for RQ_FILE. A descriptor
// that is not an AF_INET or AF_INET6 socket (a pipe, an AF_UNIX socket, a
// closed fd) gives empty endpoints: libwrap's "unknown" client.
func endpoints(fd int) (client, server hostsrules.Endpoint) {
	// The syscall package's versions: golang.org/x/sys/unix asks the
	// socket's protocol with an extra getsockopt for every inet address.
	peer, err := syscall.Getpeername(fd)
	if err != nil {
		return client, server
	}
	local, err := syscall.Getsockname(fd)
	if err != nil {
		return client, server
	}
	c, ok1 := addrPort(peer)
	s, ok2 := addrPort(local)
	if !ok1 || !ok2 {
		return client, server
	}
	return hostsrules.Endpoint{Addr: c}, hostsrules.Endpoint{Addr: s}
}

// addrPort converts an inet socket address; ok is false for other families.
func addrPort(sa syscall.Sockaddr) (netip.AddrPort, bool) {
	switch sa := sa.(type) {
	case *syscall.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port)), true
	case *syscall.SockaddrInet6:
		a := netip.AddrFrom16(sa.Addr)
		if sa.ZoneId != 0 {
			a = a.WithZone(zoneName(sa.ZoneId))
		}
		return netip.AddrPortFrom(a, uint16(sa.Port)), true
	}
	return netip.AddrPort{}, false
}

// zoneName returns the interface name of an IPv6 scope id, or the number.
func zoneName(id uint32) string {
	if ifi, err := net.InterfaceByIndex(int(id)); err == nil {
		return ifi.Name
	}
	return strconv.FormatUint(uint64(id), 10)
}
