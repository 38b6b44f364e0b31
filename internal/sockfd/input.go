package sockfd

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// HasInput reports whether c has bytes waiting to be read (SIOCINQ), or
// its descriptor cannot be examined: a connection that is about to be
// served, which a front end making room at its connection limit leaves
// alone.
func HasInput(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	n := 1
	rc.Control(func(fd uintptr) {
		if v, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ); err == nil {
			n = v
		}
	})
	return n > 0
}
