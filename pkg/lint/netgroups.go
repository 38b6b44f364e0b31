package lint

import (
	"os"
	"strings"
)

// NetgroupNames is a NetgroupDB holding the names of the netgroups that
// exist and have members.
type NetgroupNames map[string]bool

// Exists reports whether group is a known, non-empty netgroup. Group names
// are case-sensitive.
func (n NetgroupNames) Exists(group string) bool { return n[group] }

// ParseNetgroupNames returns the groups defined in netgroup(5) text
// ("group member...", "#" comments, backslash continuations) that have at
// least one member.
func ParseNetgroupNames(data []byte) NetgroupNames {
	n := NetgroupNames{}
	text := strings.ReplaceAll(string(data), "\\\n", " ")
	for _, line := range strings.Split(text, "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) >= 2 {
			n[f[0]] = true
		}
	}
	return n
}

// NetgroupFile reads the netgroup names of path (usually /etc/netgroup). A
// missing or unreadable file gives an empty set, so every @group is then
// reported as unknown, as tcpdchk does on a system without netgroups.
func NetgroupFile(path string) NetgroupNames {
	data, err := os.ReadFile(path)
	if err != nil {
		return NetgroupNames{}
	}
	return ParseNetgroupNames(data)
}
