// Package hostsfiles reads the two databases of glibc's "files" backend
// that libwrap consults: hosts(5), for tests and tools that must not touch
// DNS, and netgroup(5), for @group patterns. pkg/hostsrules exports them as
// HostsResolver and Netgroup.
package hostsfiles

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules/internal/ctext"
)

// HostsResolver answers lookups from hosts(5) text alone, with glibc's
// "files" semantics: a forward lookup returns the addresses of every line
// that lists the name (the canonical name is the first name of the first
// such line), and a reverse lookup returns the first name of the first
// line with that address. It is used by tests and by tools that must not
// touch DNS. It is safe for concurrent use.
type HostsResolver struct {
	lines []hostsLine
}

type hostsLine struct {
	addr  netip.Addr
	names []string
}

// ParseHosts parses hosts(5) text ("address name [alias...]", # comments).
// Lines whose address does not parse are skipped.
func ParseHosts(data []byte) *HostsResolver {
	h := &HostsResolver{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		a, err := netip.ParseAddr(f[0])
		if err != nil {
			continue
		}
		h.lines = append(h.lines, hostsLine{addr: a, names: f[1:]})
	}
	return h
}

// LookupAddr returns the first name of the first line with addr.
func (h *HostsResolver) LookupAddr(_ context.Context, addr netip.Addr) (string, error) {
	for _, l := range h.lines {
		if l.addr.Unmap() == addr.Unmap() {
			return l.names[0], nil
		}
	}
	return "", fmt.Errorf("%s: no reverse name", addr)
}

// LookupHost returns the addresses of every line naming name (any case) in
// the network's family; IPv4-mapped entries count as IPv4 for "ip4".
func (h *HostsResolver) LookupHost(_ context.Context, network, name string) (string, []netip.Addr, error) {
	var canon string
	var addrs []netip.Addr
	for _, l := range h.lines {
		for _, n := range l.names {
			if !ctext.EqualFold(n, name) {
				continue
			}
			a := l.addr
			switch network {
			case "ip":
			case "ip4":
				if !a.Unmap().Is4() {
					continue
				}
				a = a.Unmap()
			case "ip6":
				if !a.Is6() || a.Is4In6() {
					continue
				}
			}
			if canon == "" {
				canon = l.names[0]
			}
			addrs = append(addrs, a)
			break
		}
	}
	if len(addrs) == 0 {
		return "", nil, fmt.Errorf("%s: host not found", name)
	}
	return canon, addrs, nil
}

// Netgroup is a netgroup(5) database read from a file in the "files"
// backend format: "group member..." where a member is a triple
// "(host,user,domain)" or the name of another group. It answers host
// membership as glibc's innetgr(3) does: an empty host field matches every
// host, "-" matches none, host names compare case-insensitively and group
// names case-sensitively. It is safe for concurrent use.
type Netgroup struct {
	groups map[string][]string // group -> raw members
}

// ParseNetgroup parses netgroup(5) text. Backslash-newline continues a line.
func ParseNetgroup(data []byte) *Netgroup {
	ng := &Netgroup{groups: map[string][]string{}}
	text := strings.ReplaceAll(string(data), "\\\n", " ")
	for _, line := range strings.Split(text, "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := splitNetgroupFields(line)
		if len(f) == 0 {
			continue
		}
		if _, dup := ng.groups[f[0]]; !dup { // the files backend uses the first line of a group
			ng.groups[f[0]] = f[1:]
		}
	}
	return ng
}

// splitNetgroupFields splits at blanks outside parentheses.
func splitNetgroupFields(line string) []string {
	var out []string
	depth := 0
	start := -1
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '(':
			depth++
		case c == ')':
			depth--
		}
		blank := (c == ' ' || c == '\t' || c == '\r') && depth <= 0
		if blank {
			if start >= 0 {
				out = append(out, line[start:i])
				start = -1
			}
		} else if start < 0 {
			start = i
		}
	}
	if start >= 0 {
		out = append(out, line[start:])
	}
	return out
}

// NetgroupFile reads netgroup(5) data from path (normally /etc/netgroup).
// A missing or unreadable file gives an empty database.
func NetgroupFile(path string) *Netgroup {
	data, err := os.ReadFile(path)
	if err != nil {
		return ParseNetgroup(nil)
	}
	return ParseNetgroup(data)
}

// Exists reports whether group is defined and has members (what
// tcpdchk calls a known netgroup; `rules lint` asks it).
func (ng *Netgroup) Exists(group string) bool {
	return ng != nil && len(ng.groups[group]) > 0
}

// InNetgroup reports whether host is in group, following nested groups
// (each group at most once).
func (ng *Netgroup) InNetgroup(group, hostName string) bool {
	if ng == nil {
		return false
	}
	seen := map[string]bool{}
	return ng.in(group, hostName, seen)
}

func (ng *Netgroup) in(group, hostName string, seen map[string]bool) bool {
	if seen[group] {
		return false
	}
	seen[group] = true
	members, ok := ng.groups[group]
	if !ok {
		return false
	}
	for _, m := range members {
		if strings.HasPrefix(m, "(") {
			inner := strings.TrimSuffix(strings.TrimPrefix(m, "("), ")")
			parts := strings.SplitN(inner, ",", 3)
			h := strings.TrimSpace(parts[0])
			switch {
			case h == "":
				return true
			case h == "-":
				continue
			case ctext.EqualFold(h, hostName):
				return true
			}
			continue
		}
		if ng.in(m, hostName, seen) {
			return true
		}
	}
	return false
}
