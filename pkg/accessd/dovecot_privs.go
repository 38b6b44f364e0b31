package accessd

import (
	"fmt"
	"os"
	"syscall"
)

// dropPrivileges sets the supplementary groups to [gid]+extra, then the
// gid, then the uid (uid or gid -1: unset), and verifies that setuid(0)
// now fails. See DovecotService.DropPrivileges.
func dropPrivileges(uid, gid int, extra []int) (asRoot bool, err error) {
	if uid < 0 && gid < 0 {
		return os.Geteuid() == 0, nil
	}
	if gid >= 0 {
		groups := append([]int{gid}, extra...)
		if err := syscall.Setgroups(groups); err != nil {
			return false, fmt.Errorf("setgroups(%v): %w", groups, err)
		}
		if err := syscall.Setgid(gid); err != nil {
			return false, fmt.Errorf("setgid(%d): %w", gid, err)
		}
	}
	if uid < 0 {
		return os.Geteuid() == 0, nil
	}
	if err := syscall.Setuid(uid); err != nil {
		return false, fmt.Errorf("setuid(%d): %w", uid, err)
	}
	if uid != 0 {
		if err := syscall.Setuid(0); err == nil {
			return true, fmt.Errorf("setuid(0) succeeded after dropping to uid %d: root could be regained", uid)
		}
		if os.Getuid() != uid || os.Geteuid() != uid {
			return false, fmt.Errorf("uid is %d/%d after setuid(%d)", os.Getuid(), os.Geteuid(), uid)
		}
	}
	return uid == 0, nil
}
