package main

import (
	"bytes"
	"os"
	"runtime/debug"
	"strconv"

	"golang.org/x/sys/unix"
)

// setMemoryLimit sets the Go memory limit (debug.SetMemoryLimit) from
// RLIMIT_AS (Dovecot's vsz_limit), unless GOMEMLIMIT is set or there is no
// limit. The Go runtime reserves most of RLIMIT_AS before main (about 730
// MiB: page-allocator summaries and the first 64 MiB heap arena), and each
// further heap arena takes 64 MiB more that it never gives back; with
// GOGC=100 the heap may grow to twice what is live before a collection,
// which during a reload (the old and the new policy both live) is more
// address space than is left. The limit is two thirds of what is left
// after the start-up reservations, so the collector runs before the heap
// needs an arena that does not fit. It returns the limit set, or 0.
func setMemoryLimit() int64 {
	if os.Getenv("GOMEMLIMIT") != "" {
		return 0
	}
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_AS, &rl); err != nil || rl.Cur == unix.RLIM_INFINITY {
		return 0
	}
	used := vmSize()
	if used == 0 || used >= rl.Cur {
		return 0
	}
	limit := int64((rl.Cur - used) / 3 * 2)
	debug.SetMemoryLimit(limit)
	return limit
}

// vmSize returns the address space the process has reserved (VmSize in
// /proc/self/status), or 0 if it cannot be read.
func vmSize() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for l := range bytes.Lines(b) {
		if v, ok := bytes.CutPrefix(l, []byte("VmSize:")); ok {
			f := bytes.Fields(v)
			if len(f) == 2 && string(f[1]) == "kB" {
				n, _ := strconv.ParseUint(string(f[0]), 10, 64)
				return n << 10
			}
		}
	}
	return 0
}
