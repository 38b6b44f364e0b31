package sockfd

import (
	"net"
	"net/netip"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// AddrPort is sa's address and port, IPv4-mapped IPv6 addresses
// unmapped and a link-local address's scope kept as its interface name
// (fe80::1%eth0); the zero AddrPort if sa is not AF_INET or AF_INET6 (or
// nil). It is the one conversion of a kernel socket address that both
// daemons use (accept, getsockname, getpeername); SyscallAddrPort takes
// the syscall package's type.
func AddrPort(sa unix.Sockaddr) netip.AddrPort {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return inetAddrPort(a.Addr[:], a.Port, 0)
	case *unix.SockaddrInet6:
		return inetAddrPort(a.Addr[:], a.Port, a.ZoneId)
	}
	return netip.AddrPort{}
}

// SyscallAddrPort is AddrPort for a syscall.Sockaddr (the syscall
// package's Getpeername and Getsockname make fewer system calls than
// x/sys/unix's for inet sockets).
func SyscallAddrPort(sa syscall.Sockaddr) netip.AddrPort {
	switch a := sa.(type) {
	case *syscall.SockaddrInet4:
		return inetAddrPort(a.Addr[:], a.Port, 0)
	case *syscall.SockaddrInet6:
		return inetAddrPort(a.Addr[:], a.Port, a.ZoneId)
	}
	return netip.AddrPort{}
}

// inetAddrPort builds the AddrPort of a 4- or 16-byte address.
func inetAddrPort(ip []byte, port int, zone uint32) netip.AddrPort {
	a, _ := netip.AddrFromSlice(ip)
	a = a.Unmap()
	if zone != 0 && a.Is6() {
		a = a.WithZone(zoneName(zone))
	}
	return netip.AddrPortFrom(a, uint16(port))
}

// zoneName returns the interface name of an IPv6 scope id, or the number.
func zoneName(id uint32) string {
	if ifi, err := net.InterfaceByIndex(int(id)); err == nil {
		return ifi.Name
	}
	return strconv.FormatUint(uint64(id), 10)
}
