package login

import (
	"net/netip"
	"syscall"

	"github.com/tcpwrapd/tcpwrapd/internal/sockfd"
)

// Per-listener options that a login process needs for each client
// (ssl = yes, haproxy = yes). Dovecot's master passes them with each
// listening socket (SOCKETn_SETTINGS); here the supervisor passes the
// local addresses of the listeners that have them (ipc.Settings.SSLListen,
// HAProxyListen), and a login process looks a client socket's local
// address up, because in high-security mode it only ever sees the
// accepted socket.

// listenerFlags are the options of the listener a client came in on.
type listenerFlags uint8

const (
	listenSSL     listenerFlags = 1 << iota // ssl = yes: implicit TLS
	listenHAProxy                           // haproxy = yes: a PROXY header comes first
)

// listenSet maps the local addresses of the listeners that have options
// to those options.
type listenSet map[netip.AddrPort]listenerFlags

// newListenSet builds the set from the addresses of the ssl = yes and the
// haproxy = yes listeners (as listenAddrs returns them).
func newListenSet(ssl, haproxy []string) listenSet {
	s := listenSet{}
	for _, l := range []struct {
		addrs []string
		flag  listenerFlags
	}{{ssl, listenSSL}, {haproxy, listenHAProxy}} {
		for _, a := range l.addrs {
			if ap, err := netip.ParseAddrPort(a); err == nil {
				s[ap] |= l.flag
			}
		}
	}
	return s
}

// lookup returns the options of the listener client socket fd was
// accepted on: those of its exact local address, else those of a
// wildcard listener of the same family and port. It costs one
// getsockname, none when no listener has options; 0 if that fails.
func (s listenSet) lookup(fd int) listenerFlags {
	if len(s) == 0 {
		return 0
	}
	sa, err := syscall.Getsockname(fd) // x/sys/unix's adds a getsockopt
	if err != nil {
		return 0
	}
	ap := sockfd.SyscallAddrPort(sa)
	any := netip.IPv4Unspecified()
	switch {
	case !ap.IsValid():
		return 0
	case ap.Addr().Is6():
		any = netip.IPv6Unspecified()
	}
	if f, ok := s[ap]; ok {
		return f
	}
	return s[netip.AddrPortFrom(any, ap.Port())]
}
