package hostsrules

import (
	"context"
	"net/netip"
	"time"
)

// Verdict is the outcome of an access check, as hosts_access(3) returns it.
type Verdict int

const (
	// Denied refuses the client (hosts_access returned 0).
	Denied Verdict = iota
	// Granted admits the client (hosts_access returned 1).
	Granted
)

// String returns "granted" or "denied", the words tcpdmatch(8) prints.
func (v Verdict) String() string {
	if v == Granted {
		return "granted"
	}
	return "denied"
}

// Sentinel values of the name, address and user fields, as libwrap stores them.
const (
	// Unknown is the value of a name, address or user that could not be found.
	Unknown = "unknown"
	// Paranoid is the value of a host name that failed the double-reverse check.
	Paranoid = "paranoid"
)

// Endpoint describes one end of the connection being checked (the client or
// the server), as libwrap's struct host_info does.
//
// A live connection sets Addr (from getpeername/getsockname) and leaves the
// rest empty: the address text is derived from Addr and the name is looked up
// on first use through the Env's Resolver. A simulated request (tcpdmatch)
// may instead set AddrText and Name directly.
type Endpoint struct {
	// Addr is the socket address (IP and port). The zero value means there is
	// no socket address: port patterns never match and no lookup is made.
	Addr netip.AddrPort
	// AddrText, when not empty, is used as the address text verbatim instead
	// of the numeric form of Addr (tcpdmatch keeps "010.0.0.1" as typed).
	AddrText string
	// Name, when not empty, is used as the host name verbatim (e.g. Unknown or
	// Paranoid) and no reverse lookup is made.
	Name string
}

// Request is one access question: may Client talk to Daemon on Server?
// It corresponds to libwrap's struct request_info.
type Request struct {
	// Daemon is the daemon (process) name, e.g. "imap". Values longer than
	// 127 bytes are truncated as libwrap does.
	Daemon string
	// Client is the remote end; Server the local end of the connection.
	Client, Server Endpoint
	// User is the client user name. Empty means "not looked up yet": an
	// RFC 931 lookup is made through Env.Ident when a rule needs it.
	User string
	// PID is the value of %p; zero means the current process id.
	PID int
}

// Resolver looks host names up for the double-reverse check of
// hosts_access(5) (libwrap's sock_hostname). Implementations must be safe for
// concurrent use.
type Resolver interface {
	// LookupAddr returns the reverse (PTR) name of addr, or an error when
	// there is none.
	LookupAddr(ctx context.Context, addr netip.Addr) (string, error)
	// LookupHost returns the canonical name and the addresses of name in the
	// given network ("ip4" or "ip6"), like getaddrinfo with AI_CANONNAME.
	LookupHost(ctx context.Context, network, name string) (canonical string, addrs []netip.Addr, err error)
}

// Netgroups answers @group patterns (innetgr(3) with a host only).
// Implementations must be safe for concurrent use.
type Netgroups interface {
	// InNetgroup reports whether host is a member of group. Group names are
	// case-sensitive; host names are compared case-insensitively.
	InNetgroup(group, host string) bool
}

// IdentFunc performs an RFC 931/1413 lookup for the TCP connection from
// client to server, giving up after timeout. It returns the user name, or an
// error when there is no usable answer (the user then becomes Unknown).
type IdentFunc func(ctx context.Context, client, server netip.AddrPort, timeout time.Duration) (string, error)

// Env holds what a check may consult besides the compiled rules. The zero
// value makes no lookups: names are Unknown, users are Unknown, netgroups
// never match, and options run in dry-run mode.
type Env struct {
	// Resolver, if set, resolves client and server host names on demand.
	Resolver Resolver
	// Netgroups, if set, answers @group patterns.
	Netgroups Netgroups
	// Ident, if set, is called when a rule needs the client user name.
	Ident IdentFunc
	// Effects, if set, carries out option side effects (spawn, twist,
	// banners, aclexec, ...). Nil means dry run: options are parsed and
	// validated, allow/deny decide, nothing is executed.
	Effects Effects
	// ReadFile reads /file pattern lists that were not loaded with the
	// policy. Nil means os.ReadFile.
	ReadFile func(name string) ([]byte, error)
	// Logf, if set, receives libwrap-style warnings raised while checking,
	// e.g. "host name/name mismatch: ...".
	Logf func(format string, args ...any)
	// Explain, if set, records every rule considered in Decision.Trace.
	Explain bool
}
