package hostsrules

import (
	"context"
	"net/netip"
	"strings"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules/internal/ctext"
	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules/internal/hostsfiles"
	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules/internal/libwrapaddr"
)

// verifiedName performs libwrap's double-reverse check (sock_hostname)
// and returns the host name, Unknown or Paranoid.
func verifiedName(ctx context.Context, r Resolver, addr netip.Addr, logf func(string, ...any)) string {
	addr = addr.Unmap()
	name, err := r.LookupAddr(ctx, addr)
	if err != nil || name == "" {
		return Unknown
	}
	name = strings.TrimSuffix(name, ".")
	name = truncate(name)
	if _, err := netip.ParseAddr(name); err == nil {
		logf("host name/name mismatch: reverse lookup results in non-FQDN %s", name)
		return Paranoid
	}
	if _, ok := libwrapaddr.InetAddr(name); ok {
		logf("host name/name mismatch: reverse lookup results in non-FQDN %s", name)
		return Paranoid
	}
	network, fam := "ip4", "AF_INET"
	if addr.Is6() {
		network, fam = "ip6", "AF_INET6"
	}
	canon, addrs, err := r.LookupHost(ctx, network, name)
	if err != nil {
		logf("can't verify hostname: getaddrinfo(%s, %s) failed", name, fam)
		return Paranoid
	}
	canon = strings.TrimSuffix(canon, ".")
	if (canon == "" || !ctext.EqualFold(canon, name)) && !ctext.EqualFold(name, "localhost") {
		logf("host name/name mismatch: %s != %s", name, canon)
		return Paranoid
	}
	for _, a := range addrs {
		if a.Unmap() == addr || (a == addr) {
			return name
		}
	}
	logf("host name/address mismatch: %s != %s", addr, canon)
	return Paranoid
}

// HostsResolver answers lookups from hosts(5) text alone, with glibc's
// "files" semantics: a forward lookup returns the addresses of every line
// that lists the name (the canonical name is the first name of the first
// such line), and a reverse lookup returns the first name of the first
// line with that address. It is used by tests and by tools that must not
// touch DNS. It is safe for concurrent use.
type HostsResolver = hostsfiles.HostsResolver

// ParseHosts parses hosts(5) text ("address name [alias...]", # comments).
// Lines whose address does not parse are skipped.
func ParseHosts(data []byte) *HostsResolver { return hostsfiles.ParseHosts(data) }

// Netgroup is a netgroup(5) database read from a file in the "files"
// backend format: "group member..." where a member is a triple
// "(host,user,domain)" or the name of another group. It answers host
// membership as glibc's innetgr(3) does: an empty host field matches every
// host, "-" matches none, host names compare case-insensitively and group
// names case-sensitively. A nil *Netgroup has no groups. It is safe for
// concurrent use.
type Netgroup = hostsfiles.Netgroup

// ParseNetgroup parses netgroup(5) text. Backslash-newline continues a line.
func ParseNetgroup(data []byte) *Netgroup { return hostsfiles.ParseNetgroup(data) }

// NetgroupFile reads netgroup(5) data from path (normally /etc/netgroup).
// A missing or unreadable file gives an empty database.
func NetgroupFile(path string) *Netgroup { return hostsfiles.NetgroupFile(path) }
