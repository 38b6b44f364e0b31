package hostsrules

import (
	"context"
	"fmt"
	"net/netip"
	"path"
	"strings"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules/internal/ctext"
	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules/internal/libwrapaddr"
)

// UsageError is an error in tcpdmatch-style arguments (an unresolvable
// host, a server with several addresses); tcpdmatch exits 1 on it.
type UsageError struct{ Msg string }

// Error returns the message tcpdmatch would print.
func (e *UsageError) Error() string { return e.Msg }

// SimulatedRequests builds the requests tcpdmatch(8) evaluates for its two
// operands, DAEMON[@SERVER] and [USER@]CLIENT:
//
//   - the daemon operand is split at its first unbracketed "@"; a daemon
//     starting with "/" is reduced to its base name;
//   - a server "unknown" or "paranoid" sets the server name; any other
//     server is resolved and must have exactly one address (port 0);
//   - the client operand is split at its first "@" into user and host; the
//     user defaults to Unknown;
//   - a client "unknown" or "paranoid" sets the name with no address; a
//     dotted quad or numeric IPv6 address is kept as typed with name
//     Unknown; anything else is resolved and gives one request per address,
//     whose names are verified lazily through r.
//
// It returns a *UsageError for an unresolvable client or server and for a
// server with several addresses.
func SimulatedRequests(ctx context.Context, r Resolver, daemonArg, clientArg string) ([]Request, error) {
	return simulatedRequests(ctx, r, daemonArg, clientArg, false)
}

// LiveRequests is SimulatedRequests, except that a client given as an
// address is treated as a live daemon sees it: the address is normalised
// and its name is looked up (with the double-reverse check) when a rule
// needs it, instead of tcpdmatch's "simulated failed lookup" that makes
// the name unknown. Use it to ask what tcpwrapd would answer for a
// connection from that address.
func LiveRequests(ctx context.Context, r Resolver, daemonArg, clientArg string) ([]Request, error) {
	return simulatedRequests(ctx, r, daemonArg, clientArg, true)
}

func simulatedRequests(ctx context.Context, r Resolver, daemonArg, clientArg string, live bool) ([]Request, error) {
	daemon, serverArg, hasServer := ctext.SplitAt(daemonArg, '@')
	if strings.HasPrefix(daemon, "/") {
		daemon = path.Base(daemon)
	}
	var server Endpoint
	if hasServer {
		switch {
		case ctext.EqualFold(serverArg, Unknown), ctext.EqualFold(serverArg, Paranoid):
			server.Name = serverArg
		default:
			addrs, err := resolveAll(ctx, r, serverArg)
			if err != nil {
				return nil, &UsageError{Msg: fmt.Sprintf("%s: host not found", serverArg)}
			}
			if len(addrs) != 1 {
				return nil, &UsageError{Msg: fmt.Sprintf("Error: %s has more than one address\nPlease specify an address instead", serverArg)}
			}
			server.Addr = netip.AddrPortFrom(addrs[0], 0)
			server.Name = linkLocalName(addrs[0])
		}
	}
	user, hostArg, hasUser := strings.Cut(clientArg, "@")
	if !hasUser {
		user, hostArg = Unknown, clientArg
	}
	if user == "" {
		user = Unknown
	}
	base := Request{Daemon: daemon, Server: server, User: user}
	switch {
	case ctext.EqualFold(hostArg, Unknown), ctext.EqualFold(hostArg, Paranoid):
		base.Client = Endpoint{Name: hostArg}
		return []Request{base}, nil
	}
	if v, ok := libwrapaddr.DotQuad(hostArg); ok {
		base.Client = Endpoint{AddrText: hostArg, Name: Unknown}
		if live {
			a := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
			base.Client = Endpoint{Addr: netip.AddrPortFrom(a, 0)}
		}
		return []Request{base}, nil
	}
	if a, ok := libwrapaddr.ParseIPv6(hostArg); ok {
		base.Client = Endpoint{AddrText: hostArg, Name: Unknown}
		if live {
			base.Client = Endpoint{Addr: netip.AddrPortFrom(a, 0)}
		}
		return []Request{base}, nil
	}
	addrs, err := resolveAll(ctx, r, hostArg)
	if err != nil {
		return nil, &UsageError{Msg: fmt.Sprintf("%s: host not found", hostArg)}
	}
	reqs := make([]Request, 0, len(addrs))
	for _, a := range addrs {
		q := base
		q.Client = Endpoint{Addr: netip.AddrPortFrom(a, 0), Name: linkLocalName(a)}
		reqs = append(reqs, q)
	}
	return reqs, nil
}

// linkLocalName: tcpdmatch does not evaluate names of IPv6 link-local
// results, so they stay unknown.
func linkLocalName(a netip.Addr) string {
	if a.Is6() && !a.Is4In6() && a.IsLinkLocalUnicast() {
		return Unknown
	}
	return ""
}

// resolveAll resolves a host name or numeric address to all its addresses
// (getaddrinfo with AF_UNSPEC).
func resolveAll(ctx context.Context, r Resolver, name string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(name); err == nil {
		return []netip.Addr{a}, nil
	}
	if v, ok := libwrapaddr.InetAddr(name); ok || name == "255.255.255.255" {
		if !ok {
			v = 0xffffffff
		}
		return []netip.Addr{netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})}, nil
	}
	if r == nil {
		return nil, fmt.Errorf("%s: host not found", name)
	}
	_, addrs, err := r.LookupHost(ctx, "ip", name)
	if err != nil || len(addrs) == 0 {
		return nil, fmt.Errorf("%s: host not found", name)
	}
	return addrs, nil
}
