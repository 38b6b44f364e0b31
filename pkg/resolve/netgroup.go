package resolve

import (
	"time"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
)

// Netgroups is a netgroup(5) database in the "files" format, read from a
// file that is read again when a stat shows it changed (mtime, size,
// inode or ctime; checked at most once a second), so a long-running service sees edits of /etc/netgroup
// without a restart. Membership follows glibc's innetgr(3) with a host
// only, as libwrap asks it: group names are case-sensitive,
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
// file is first read by the first InNetgroup call, and checked for changes
// at most once per DefaultFileCheckInterval.
func NetgroupFile(path string) *Netgroups {
	return newNetgroups(path, DefaultFileCheckInterval, time.Now)
}

func newNetgroups(path string, interval time.Duration, now func() time.Time) *Netgroups {
	return &Netgroups{w: newWatched(path, interval, now, hostsrules.ParseNetgroup)}
}

// InNetgroup reports whether host is a member of group, as the file was
// at the last check.
func (n *Netgroups) InNetgroup(group, host string) bool {
	return n.w.get().InNetgroup(group, host)
}
