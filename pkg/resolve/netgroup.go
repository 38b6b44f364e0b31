package resolve

import "github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"

// Netgroups is a netgroup(5) database in the "files" format, read from a
// file that is read again whenever a stat shows it changed (mtime, size,
// inode or ctime), so a long-running service sees edits of /etc/netgroup
// without a restart. Membership follows glibc's innetgr(3) with a host
// only, as libwrap asks it (spec §6.4): group names are case-sensitive,
// host names compare case-insensitively, an empty host field matches
// every host, "-" matches none, and nested groups are followed (each at
// most once). The NIS domain field is not compared, as on a host without
// a NIS domain name. A missing or unreadable file is an empty database.
// It implements [hostsrules.Netgroups] and is safe for concurrent use.
type Netgroups struct {
	w *watchedFile[*hostsrules.Netgroup]
}

var _ hostsrules.Netgroups = (*Netgroups)(nil)

// NetgroupFile returns the database in path (normally /etc/netgroup). The
// file is first read by the first InNetgroup call.
func NetgroupFile(path string) *Netgroups {
	return &Netgroups{w: newWatched(path, hostsrules.ParseNetgroup)}
}

// InNetgroup reports whether host is a member of group, as the file is
// now. It costs one stat(2) when the file has not changed.
func (n *Netgroups) InNetgroup(group, host string) bool {
	return n.w.get().InNetgroup(group, host)
}
