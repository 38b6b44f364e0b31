package accessd

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// umaskMu serializes the umask change in Listen.
var umaskMu sync.Mutex

// Listen creates a unix stream socket listening at path, for example
// /run/dovecot/login/ext/access (docs/dovecot-managed.md: in a sub-directory of the login
// chroot, so that Dovecot's start-up scan leaves it alone).
//
// Missing parent directories are created as makeDirs says (Dovecot's
// login directory as Dovecot wants it). A stale socket at
// path (nobody accepts on it) is removed; a live one, or any file that is
// not a socket, is an error. The socket is bound with umask 0777, so it is
// never accessible with a wider mode than asked, then owned by uid and gid
// (-1 leaves either unchanged) and given mode. Closing the listener removes
// the socket file.
//
// Listen changes the process umask for the duration of bind; it must not
// run concurrently with code that creates files and depends on the umask.
func Listen(path string, mode fs.FileMode, uid, gid int) (*net.UnixListener, error) {
	if err := makeDirs(filepath.Dir(path)); err != nil {
		return nil, err
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	umaskMu.Lock()
	old := syscall.Umask(0o777)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	syscall.Umask(old)
	umaskMu.Unlock()
	if err != nil {
		return nil, err
	}
	if uid != -1 || gid != -1 {
		if err := os.Chown(path, uid, gid); err != nil {
			ln.Close()
			return nil, err
		}
	}
	if err := os.Chmod(path, mode.Perm()); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// removeStale removes a socket file at path that no process accepts on.
// loginGroup is the group Dovecot gives its login directory
// (default_login_user's group), looked up when makeDirs needs it.
var loginGroup = "dovenull"

// makeDirs creates the missing directories of dir. Those named "login"
// and below one (base_dir/login/tcpwrapd) get what Dovecot 2.3 enforces
// on its login directory and deploy/tmpfiles/tcpwrapd.conf creates:
// mode 0750, owner root, group dovenull (when that group exists and we
// are root), so a Dovecot started later finds nothing to "correct". The
// others get mode 0755.
func makeDirs(dir string) error {
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s: not a directory", dir)
		}
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := makeDirs(parent); err != nil {
			return err
		}
	}
	loginDir := false
	for d := dir; d != filepath.Dir(d); d = filepath.Dir(d) {
		if filepath.Base(d) == "login" {
			loginDir = true
			break
		}
	}
	gid := -1
	if loginDir && os.Geteuid() == 0 {
		if g, err := LookupGroup(loginGroup); err == nil {
			gid = g
		}
	}
	mode := fs.FileMode(0o755)
	if gid != -1 {
		mode = 0o750
	}
	if err := os.Mkdir(dir, mode); errors.Is(err, fs.ErrExist) {
		return nil // made meanwhile by someone else: theirs
	} else if err != nil {
		return err
	}
	if gid != -1 {
		if err := os.Chown(dir, 0, gid); err != nil {
			return err
		}
	}
	return os.Chmod(dir, mode) // whatever the umask took away
}

func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("listen %s: file exists and is not a socket", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("listen %s: socket is in use by another process", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// LookupUser returns the uid for a user name or a numeric id; "" gives -1
// (unchanged).
func LookupUser(s string) (int, error) {
	if s == "" {
		return -1, nil
	}
	if id, err := strconv.Atoi(s); err == nil && id >= 0 {
		return id, nil
	}
	u, err := user.Lookup(s)
	if err != nil {
		return -1, err
	}
	return strconv.Atoi(u.Uid)
}

// LookupGroup returns the gid for a group name or a numeric id; "" gives -1
// (unchanged).
func LookupGroup(s string) (int, error) {
	if s == "" {
		return -1, nil
	}
	if id, err := strconv.Atoi(s); err == nil && id >= 0 {
		return id, nil
	}
	g, err := user.LookupGroup(s)
	if err != nil {
		return -1, err
	}
	return strconv.Atoi(g.Gid)
}
