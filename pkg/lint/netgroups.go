package lint

import "github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"

// NetgroupNames is a NetgroupDB holding the names of the netgroups that
// exist and have members (for tests and callers that know them).
type NetgroupNames map[string]bool

// Exists reports whether group is a known, non-empty netgroup. Group names
// are case-sensitive.
func (n NetgroupNames) Exists(group string) bool { return n[group] }

// ParseNetgroupNames returns the netgroup(5) database in data, read as the
// rules engine reads it (hostsrules.ParseNetgroup: "group member...", "#"
// comments, backslash continuations, the first line of a group counts);
// Exists is true for groups with at least one member.
func ParseNetgroupNames(data []byte) NetgroupDB { return hostsrules.ParseNetgroup(data) }

// NetgroupFile reads the netgroups of path (usually /etc/netgroup) as the
// rules engine does. A missing or unreadable file gives an empty set, so
// every @group is then reported as unknown, as tcpdchk does on a system
// without netgroups.
func NetgroupFile(path string) NetgroupDB { return hostsrules.NetgroupFile(path) }
