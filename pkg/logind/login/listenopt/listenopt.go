// Package listenopt tells a login process the options of the listener a
// client socket came in on (ssl = yes, haproxy = yes; docs/loginsvc.md).
// Dovecot's master passes them with each listening socket
// (SOCKETn_SETTINGS); here the supervisor passes the local addresses of
// the listeners that have them (ipc.Settings.SSLListen, HAProxyListen),
// and a login process looks a client socket's local address up, because
// in high-security mode it only ever sees the accepted socket.
package listenopt

import (
	"net/netip"
	"syscall"

	"github.com/tcpwrapd/tcpwrapd/internal/sockfd"
)

// Flags are the options of the listener a client came in on.
type Flags uint8

const (
	SSL     Flags = 1 << iota // ssl = yes: implicit TLS
	HAProxy                   // haproxy = yes: a PROXY header comes first
)

// Set maps the local addresses of the listeners that have options to
// those options. It is not changed after New and is safe for concurrent
// use.
type Set map[netip.AddrPort]Flags

// New builds the set from the addresses ("IP:port") of the ssl = yes
// and the haproxy = yes listeners; an address that does not parse is
// left out.
func New(ssl, haproxy []string) Set {
	s := Set{}
	for _, l := range []struct {
		addrs []string
		flag  Flags
	}{{ssl, SSL}, {haproxy, HAProxy}} {
		for _, a := range l.addrs {
			if ap, err := netip.ParseAddrPort(a); err == nil {
				s[ap] |= l.flag
			}
		}
	}
	return s
}

// Lookup returns the options of the listener client socket fd was
// accepted on: those of its exact local address, else those of a
// wildcard listener of the same family and port. local, if valid, is
// the socket's local address already known (its listener's, when that
// is bound to one address: sockfd.BoundAddrs), and Lookup asks the
// kernel nothing; else it costs one getsockname, none when no listener
// has options; 0 if that fails. It also returns the local address it
// used (the zero AddrPort when it read none), which the caller keeps
// instead of asking again.
func (s Set) Lookup(fd int, local netip.AddrPort) (Flags, netip.AddrPort) {
	if len(s) == 0 {
		return 0, local
	}
	ap := local
	if !ap.IsValid() {
		sa, err := syscall.Getsockname(fd) // x/sys/unix's adds a getsockopt
		if err != nil {
			return 0, netip.AddrPort{}
		}
		ap = sockfd.SyscallAddrPort(sa)
	}
	any := netip.IPv4Unspecified()
	switch {
	case !ap.IsValid():
		return 0, ap
	case ap.Addr().Is6():
		any = netip.IPv6Unspecified()
	}
	if f, ok := s[ap]; ok {
		return f, ap
	}
	return s[netip.AddrPortFrom(any, ap.Port())], ap
}
