// Package filestamp tells cheaply, without reading a file, whether it may
// have changed: a Stamp of a path holds what stat(2) and lstat(2) say
// about it, and two stamps differ when the file was created, removed,
// replaced (an atomic rename changes the inode), written (size, mtime,
// ctime), chmodded (mode, ctime), or a symlink on the path retargeted
// (the link's own inode and ctime). tcpwrapd's rule reloads
// (docs/reloading.md) and the resolver's /etc files use it.
package filestamp

import (
	"errors"
	"path/filepath"
	"slices"
	"syscall"
	"time"
)

// Stamp identifies the state of a path. Stamps are comparable with ==.
type Stamp struct {
	errno     syscall.Errno // 0, ENOENT, EACCES, ...
	mode      uint32
	dev, ino  uint64
	size      int64
	mtime     int64
	ctime     int64
	linkIno   uint64 // of the path itself (Lstat), catches retargeted symlinks
	linkCtime int64
}

// Of returns the stamp of path: one lstat(2) and one stat(2).
func Of(path string) Stamp {
	var s Stamp
	var st, lst syscall.Stat_t
	if err := syscall.Lstat(path, &lst); err == nil {
		s.linkIno, s.linkCtime = lst.Ino, lst.Ctim.Nano()
	}
	if err := syscall.Stat(path, &st); err != nil {
		var errno syscall.Errno
		if errors.As(err, &errno) {
			s.errno = errno
		} else {
			s.errno = syscall.EIO
		}
		return s
	}
	s.mode, s.dev, s.ino, s.size = st.Mode, st.Dev, st.Ino, st.Size
	s.mtime, s.ctime = st.Mtim.Nano(), st.Ctim.Nano()
	return s
}

// Exists reports whether stat(2) succeeded on the path.
func (s Stamp) Exists() bool { return s.errno == 0 }

// Set holds the stamps of several paths.
type Set map[string]Stamp

// OfAll returns the stamps of every path.
func OfAll(paths []string) Set {
	set := make(Set, len(paths))
	for _, p := range paths {
		set[p] = Of(p)
	}
	return set
}

// Equal reports whether s and o hold the same paths with the same stamps.
func (s Set) Equal(o Set) bool {
	if len(s) != len(o) {
		return false
	}
	for p, st := range s {
		if x, ok := o[p]; !ok || x != st {
			return false
		}
	}
	return true
}

// Changed returns, sorted, the paths of o whose stamps differ from those
// in s or are not in s.
func (s Set) Changed(o Set) []string {
	var c []string
	for p, st := range o {
		if old, ok := s[p]; !ok || old != st {
			c = append(c, p)
		}
	}
	slices.Sort(c)
	return c
}

// Newest returns the latest modification or change time among the
// stamps. For a path that does not exist it is the time of its
// directory, which changed when the file was removed or renamed away.
func (s Set) Newest() time.Time {
	var n int64
	for p, st := range s {
		n = max(n, st.mtime, st.ctime, st.linkCtime)
		if st.errno == syscall.ENOENT {
			var dir syscall.Stat_t
			if syscall.Stat(filepath.Dir(p), &dir) == nil {
				n = max(n, dir.Mtim.Nano(), dir.Ctim.Nano())
			}
		}
	}
	return time.Unix(0, n)
}
