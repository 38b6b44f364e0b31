package accessd

import (
	"path/filepath"
	"slices"
	"unsafe"

	"golang.org/x/sys/unix"
)

// writeWatch sees writes to the rule files that their stamps may not
// show: a file's mtime and ctime come from the kernel's coarse clock,
// which in a virtual machine whose vCPU the host stalls can stand still
// for hundreds of milliseconds, so a file rewritten in place to the same
// size can keep the same stamps while its content changes. A reload
// waiting for quiet files (settle) watches them with inotify(7) as well:
// every write, truncation, attribute change, rename or removal of a
// watched file, and every creation, removal or rename of one in its
// directory, counts as a change. After a change the paths are watched
// again, so that a file created or replaced (an editor's save by a
// rename, a symlink's target replaced in another directory) after the
// watch began is the one watched from then on. Without inotify
// (inotify_init1 failed: fs.inotify.max_user_instances; or no watch
// could be added: fs.inotify.max_user_watches) the stamps alone
// decide, as before. Not safe for concurrent use.
type writeWatch struct {
	fd    int
	paths []string                  // the files watched
	dirs  map[int32]map[string]bool // directory watch -> base names of the files watched
	buf   [4096]byte
}

const (
	fileEvents = unix.IN_MODIFY | unix.IN_ATTRIB | unix.IN_CLOSE_WRITE | unix.IN_MOVE_SELF | unix.IN_DELETE_SELF
	dirEvents  = unix.IN_CREATE | unix.IN_DELETE | unix.IN_MOVED_FROM | unix.IN_MOVED_TO
)

// watchWrites starts watching paths; nil if inotify is not available.
func watchWrites(paths []string) *writeWatch {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil
	}
	w := &writeWatch{fd: fd, dirs: map[int32]map[string]bool{}}
	w.add(paths)
	return w
}

// add watches more paths (a /file list found by a read). A path that
// does not exist is watched through its directory only.
func (w *writeWatch) add(paths []string) {
	if w == nil {
		return
	}
	w.paths = append(w.paths, paths...)
	for _, p := range paths {
		unix.InotifyAddWatch(w.fd, p, fileEvents)
		// The same directory gives the same watch.
		wd, err := unix.InotifyAddWatch(w.fd, filepath.Dir(p), dirEvents|unix.IN_ONLYDIR)
		if err != nil {
			continue
		}
		if w.dirs[int32(wd)] == nil {
			w.dirs[int32(wd)] = map[string]bool{}
		}
		w.dirs[int32(wd)][filepath.Base(p)] = true
	}
}

// changed reports whether a watched file was written, or one of its
// names created, removed or renamed, since the last call (or the
// watch's start), reading every event queued. After a change it watches
// the files the paths now name (inotify watches inodes; adding a watch
// of an inode watched already changes nothing).
func (w *writeWatch) changed() (changed bool) {
	if w == nil {
		return false
	}
	defer func() {
		if changed {
			for _, p := range w.paths {
				unix.InotifyAddWatch(w.fd, p, fileEvents)
			}
		}
	}()
	for {
		n, err := unix.Read(w.fd, w.buf[:])
		if err == unix.EINTR {
			continue
		}
		if n <= 0 || err != nil {
			return changed
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&w.buf[off]))
			name := w.buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
			off += unix.SizeofInotifyEvent + int(ev.Len)
			switch {
			case ev.Mask&unix.IN_Q_OVERFLOW != 0:
				changed = true // events were lost: assume the worst
			case ev.Mask&fileEvents != 0 && ev.Len == 0:
				changed = true
			case ev.Mask&dirEvents != 0 && w.dirs[ev.Wd][cString(name)]:
				changed = true
			}
		}
	}
}

// close stops watching.
func (w *writeWatch) close() {
	if w != nil {
		unix.Close(w.fd)
	}
}

// cString is b up to its first NUL (inotify pads names with NULs).
func cString(b []byte) string {
	if i := slices.Index(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}
