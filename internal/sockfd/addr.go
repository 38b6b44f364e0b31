package sockfd

import (
	"net/netip"

	"golang.org/x/sys/unix"
)

// AddrPort is sa's address and port, IPv4-mapped IPv6 addresses
// unmapped; the zero AddrPort if sa is not AF_INET or AF_INET6 (or nil).
// It is the one conversion of a kernel socket address that loginsvc
// uses (accept, getsockname, getpeername).
func AddrPort(sa unix.Sockaddr) netip.AddrPort {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port))
	}
	return netip.AddrPort{}
}
