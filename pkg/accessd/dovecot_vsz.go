package accessd

import (
	"fmt"

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

// AddressSpaceError reports an RLIMIT_AS below MinAddressSpace.
type AddressSpaceError struct {
	// Limit is the soft RLIMIT_AS in bytes.
	Limit uint64
}

// Error says what to change: vsz_limit in the Dovecot service block.
func (e *AddressSpaceError) Error() string {
	return fmt.Sprintf("vsz_limit (RLIMIT_AS) of %d MiB is too small for a Go program, which needs at least %d MiB: set vsz_limit = 1G (or 0 for no limit) in service tcpwrap",
		e.Limit>>20, MinAddressSpace>>20)
}

// CheckAddressSpace returns an *AddressSpaceError when the soft RLIMIT_AS
// of the process is below MinAddressSpace, and nil when it is at least
// that, unlimited, or cannot be read.
func CheckAddressSpace() error {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_AS, &rl); err != nil {
		return nil
	}
	if rl.Cur != unix.RLIM_INFINITY && rl.Cur < MinAddressSpace {
		return &AddressSpaceError{Limit: rl.Cur}
	}
	return nil
}
