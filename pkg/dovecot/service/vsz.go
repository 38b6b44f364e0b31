package service

import (
	"fmt"
	"runtime/debug"

	"golang.org/x/sys/unix"
)

// MinAddressSpace is the smallest RLIMIT_AS (Dovecot's vsz_limit) that
// tcpwrapd accepts: 1 GiB. The Go 1.26 runtime reserves about 730 MiB of
// address space (page-allocator summaries and the first heap arena)
// before main runs and dies with "fatal error: failed to reserve page
// summary memory" below roughly 700 MiB; between that and about 800 MiB
// it starts but fails intermittently when it creates threads. 1 GiB
// leaves room for threads under load. See docs/dovecot-managed.md for the
// measurements.
const MinAddressSpace = 1 << 30

// MinAddressSpaceCgo is the smallest RLIMIT_AS a cgo build accepts: 2 GiB.
// glibc reserves an 8 MiB stack for every thread it creates, and a cgo
// build under vsz_limit = 1G was seen crash-looping with
// "runtime/cgo: pthread_create failed"; build with CGO_ENABLED=0 instead.
const MinAddressSpaceCgo = 2 << 30

// AddressSpaceError reports an RLIMIT_AS below the minimum.
type AddressSpaceError struct {
	// Limit is the soft RLIMIT_AS in bytes.
	Limit uint64
	// Cgo is true for a binary built with cgo, which needs more.
	Cgo bool
}

// Error says what to change: vsz_limit in the Dovecot service block, or
// the build.
func (e *AddressSpaceError) Error() string {
	if e.Cgo {
		return fmt.Sprintf("vsz_limit (RLIMIT_AS) of %d MiB is too small for this tcpwrapd, a cgo build, which needs at least %d MiB: rebuild it with CGO_ENABLED=0 (then vsz_limit = 1G suffices), or set vsz_limit = 2G (or 0 for no limit) in service tcpwrap",
			e.Limit>>20, MinAddressSpaceCgo>>20)
	}
	return fmt.Sprintf("vsz_limit (RLIMIT_AS) of %d MiB is too small for a Go program, which needs at least %d MiB: set vsz_limit = 1G (or 0 for no limit) in service tcpwrap",
		e.Limit>>20, MinAddressSpace>>20)
}

// cgoBuild reports whether the running binary was built with cgo.
func cgoBuild() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "CGO_ENABLED" {
			return s.Value == "1"
		}
	}
	return false
}

// CheckAddressSpace returns an *AddressSpaceError when the soft RLIMIT_AS
// of the process is below MinAddressSpace (MinAddressSpaceCgo for a cgo
// build), and nil when it is at least that, unlimited, or cannot be read.
func CheckAddressSpace() error {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_AS, &rl); err != nil || rl.Cur == unix.RLIM_INFINITY {
		return nil
	}
	cgo := cgoBuild()
	min := uint64(MinAddressSpace)
	if cgo {
		min = MinAddressSpaceCgo
	}
	if rl.Cur < min {
		return &AddressSpaceError{Limit: rl.Cur, Cgo: cgo}
	}
	return nil
}
