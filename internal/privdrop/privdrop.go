// Package privdrop drops a root process's privileges to an unprivileged
// user and verifies that root cannot be regained, for the daemons'
// processes that serve untrusted clients: tcpwrapd under a Dovecot master
// (RESTRICT_SETUID, RESTRICT_SETGID, RESTRICT_SETEXTRAGROUPS) and
// loginsvc's login processes (docs/loginsvc.md).
//
// Drop changes the ids in the order that keeps the change possible:
// supplementary groups, then the gid, then the uid, each with the
// set-res-id call (real, effective and saved at once) on every thread
// (Go's syscall package applies them process-wide on Linux). A caller
// that must also hold no gid 0 calls CheckNoRoot after it.
package privdrop

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// Creds are the ids to switch to. A negative UID or GID leaves that id
// unchanged.
type Creds struct {
	// UID becomes the real, effective and saved user id.
	UID int
	// GID becomes the real, effective and saved group id, and the first
	// supplementary group.
	GID int
	// Groups are further supplementary groups, kept with GID (ignored
	// when GID is negative).
	Groups []int
}

// ErrCanRegainRoot is returned when a process that dropped its
// privileges could get uid or gid 0 back.
var ErrCanRegainRoot = errors.New("privileges were not dropped: root can be regained")

// Drop sets the supplementary groups to [c.GID]+c.Groups and the gid to
// c.GID (when c.GID >= 0), then the uid to c.UID (when c.UID >= 0). After
// a switch to a uid other than 0 it verifies that setuid(0) and seteuid(0)
// fail and that the real and effective uid are c.UID: otherwise it
// returns an error wrapping ErrCanRegainRoot (or describing the ids).
// Errors are fatal for the caller: a half-dropped process must not serve.
//
// It reports asRoot: whether the process still runs as root (euid 0)
// afterwards, as when c.UID is negative in a root process.
func Drop(c Creds) (asRoot bool, err error) {
	if c.UID < 0 && c.GID < 0 {
		return os.Geteuid() == 0, nil
	}
	if c.GID >= 0 {
		groups := append([]int{c.GID}, c.Groups...)
		if err := syscall.Setgroups(groups); err != nil {
			return false, fmt.Errorf("setgroups(%v): %w", groups, err)
		}
		if err := syscall.Setresgid(c.GID, c.GID, c.GID); err != nil {
			return false, fmt.Errorf("setgid(%d): %w", c.GID, err)
		}
	}
	if c.UID < 0 {
		return os.Geteuid() == 0, nil
	}
	if err := syscall.Setresuid(c.UID, c.UID, c.UID); err != nil {
		return false, fmt.Errorf("setuid(%d): %w", c.UID, err)
	}
	if c.UID != 0 {
		for name, f := range map[string]func() error{
			"setuid(0)":  func() error { return syscall.Setuid(0) },
			"seteuid(0)": func() error { return syscall.Seteuid(0) },
		} {
			if f() == nil {
				return true, fmt.Errorf("%w: %s succeeded after dropping to uid %d", ErrCanRegainRoot, name, c.UID)
			}
		}
		if os.Getuid() != c.UID || os.Geteuid() != c.UID {
			return false, fmt.Errorf("uid is %d/%d after setuid(%d)", os.Getuid(), os.Geteuid(), c.UID)
		}
	}
	return c.UID == 0, nil
}

// CheckNoRoot verifies, as tailscale's incubator does, that the calling
// process cannot become root again: no id may be 0, and setuid(0),
// seteuid(0), setgid(0) and setegid(0) must all fail. It returns nil or
// ErrCanRegainRoot (wrapped with what was found). Call it after Drop when
// the gid must not be 0 either.
func CheckNoRoot() error {
	if syscall.Getuid() == 0 || syscall.Geteuid() == 0 || syscall.Getgid() == 0 || syscall.Getegid() == 0 {
		return fmt.Errorf("%w: still uid %d euid %d gid %d egid %d", ErrCanRegainRoot, syscall.Getuid(), syscall.Geteuid(), syscall.Getgid(), syscall.Getegid())
	}
	for name, f := range map[string]func() error{
		"setuid(0)":  func() error { return syscall.Setuid(0) },
		"seteuid(0)": func() error { return syscall.Seteuid(0) },
		"setgid(0)":  func() error { return syscall.Setgid(0) },
		"setegid(0)": func() error { return syscall.Setegid(0) },
	} {
		if f() == nil {
			return fmt.Errorf("%w: %s succeeded", ErrCanRegainRoot, name)
		}
	}
	return nil
}
