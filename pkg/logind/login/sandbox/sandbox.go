// Package sandbox applies a loginsvc login process's restrictions
// (docs/loginsvc.md, "Sandbox"): resource limits, the chroot, the login
// user, no way back to root, the parent-death signal.
package sandbox

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpwrapd/tcpwrapd/internal/privdrop"
	"github.com/tcpwrapd/tcpwrapd/pkg/accessclient"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/ipc"
)

// Apply applies a login process's restrictions, in this order (docs/loginsvc.md,
// "Sandbox"): RLIMIT_NOFILE for client_limit, chroot to base_dir/login
// (or chdir there without a chroot, so that relative access socket names
// resolve the same way), supplementary groups, gid, uid, then a check
// that root cannot be regained, RLIMIT_NPROC, then vsz_limit as RLIMIT_DATA plus the Go
// memory limit (see below). A process that changed its uid is made
// non-dumpable, and gets its parent-death signal back (restorePdeathsig).
//
// vsz_limit: Go cannot run under Dovecot's RLIMIT_AS (it reserves far
// more address space than it uses, and needs ~720 MiB of it to start),
// and even an idle Go process already has 40–80 MiB of VmData (runtime
// structures, thread stacks) before it serves anyone. So vsz_limit is
// the memory a login process may use on top of its start-up footprint:
// RLIMIT_DATA = VmData at sandbox time + vsz_limit, and the Go memory
// limit (debug.SetMemoryLimit) = vsz_limit, which makes the collector
// work harder as the heap approaches it. A process that needs more
// dies with "fatal error: runtime: out of memory" (exit status 2) and is
// replaced; only its own clients are lost.
//
// startPPID is the process's parent (the supervisor) as it was at start,
// 0 if unknown: a process whose parent changed since dies with
// ErrSupervisorGone instead of waiting for a parent-death signal that
// cannot come.
func Apply(in *ipc.Settings, startPPID int) error {
	if in.AccessTimeout <= 0 {
		in.AccessTimeout = accessclient.DefaultTimeout
	}
	if in.PreloginTimeout <= 0 {
		in.PreloginTimeout = 180 * time.Second
	}
	if in.HAProxyTimeout <= 0 {
		in.HAProxyTimeout = ipc.DefaultHAProxyTimeout
	}
	if in.NoFile > 0 {
		lim := syscall.Rlimit{Cur: in.NoFile, Max: in.NoFile}
		var cur syscall.Rlimit
		if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &cur) == nil && cur.Max > in.NoFile && syscall.Geteuid() != 0 {
			lim.Max = cur.Max
		}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil && syscall.Geteuid() == 0 {
			return fmt.Errorf("setrlimit(RLIMIT_NOFILE, %d): %w", in.NoFile, err)
		}
	}
	// Back to normal priority (ExecRunner starts processes at StartNice),
	// while root and /proc are still there.
	resetNice()
	// The runtime's own start-up mappings (VmData, tens of MiB, more with
	// more threads) are measured now, while /proc is still reachable.
	base := vmData()
	if in.Chroot != "" {
		if err := syscall.Chroot(in.Chroot); err != nil {
			return fmt.Errorf("chroot(%s): %w", in.Chroot, err)
		}
		if err := syscall.Chdir("/"); err != nil {
			return fmt.Errorf("chdir(/): %w", err)
		}
	} else if in.ChdirTo != "" {
		if err := syscall.Chdir(in.ChdirTo); err != nil {
			return fmt.Errorf("chdir(%s): %w", in.ChdirTo, err)
		}
	}
	if in.UID >= 0 {
		if _, err := privdrop.Drop(privdrop.Creds{UID: in.UID, GID: in.GID}); err != nil {
			return err
		}
		if err := privdrop.CheckNoRoot(); err != nil { // no gid 0 either
			return err
		}
		// Dovecot's login processes set 1 (no fork at all); a Go
		// process needs threads, which count, so the supervisor sends a
		// ceiling (loginNProc).
		if in.NProc > 0 {
			if err := unix.Setrlimit(unix.RLIMIT_NPROC, &unix.Rlimit{Cur: in.NProc, Max: in.NProc}); err != nil {
				return fmt.Errorf("setrlimit(RLIMIT_NPROC, %d): %w", in.NProc, err)
			}
		}
		// Not dumpable (the kernel's default after a uid change unless
		// fs.suid_dumpable says otherwise): no core file, and another
		// process of the login user can neither ptrace this one nor read
		// its /proc/PID/mem - where the TLS key now lives.
		if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
			return fmt.Errorf("prctl(PR_SET_DUMPABLE, 0): %w", err)
		}
		if err := restorePdeathsig(startPPID); err != nil {
			return err
		}
	}
	if in.VszLimit > 0 {
		lim := base + in.VszLimit
		if err := unix.Setrlimit(unix.RLIMIT_DATA, &unix.Rlimit{Cur: lim, Max: lim}); err != nil {
			return fmt.Errorf("setrlimit(RLIMIT_DATA, %d): %w", lim, err)
		}
		debug.SetMemoryLimit(int64(in.VszLimit))
	}
	return nil
}

// ErrSupervisorGone is returned by the sandbox when the supervisor died
// before the login process could set its parent-death signal again.
var ErrSupervisorGone = errors.New("the supervisor is gone")

// restorePdeathsig sets SIGKILL as the parent-death signal again, which
// ExecRunner sets (SysProcAttr.Pdeathsig) and the kernel clears when a
// process changes its credentials (the setresuid of the sandbox): a
// login process then dies with the supervisor even when it does not see
// its control socket end. The signal is per thread: it is set on every
// thread where the runtime allows it (AllThreadsSyscall; the main thread,
// which never exits, is one), else (a cgo binary) on this thread, which
// the calling goroutine then keeps (LoginProcessMain never returns
// before the process exits). If the supervisor died before that
// (getppid is no longer the parent at start), the signal will never
// come: ErrSupervisorGone.
func restorePdeathsig(startPPID int) error {
	_, _, e := syscall.AllThreadsSyscall(syscall.SYS_PRCTL, unix.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0)
	if e == syscall.ENOTSUP {
		runtime.LockOSThread() // never unlocked: this thread holds the signal
		e = 0
		if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0, 0, 0); err != nil {
			return fmt.Errorf("prctl(PR_SET_PDEATHSIG): %w", err)
		}
	}
	if e != 0 {
		return fmt.Errorf("prctl(PR_SET_PDEATHSIG): %w", e)
	}
	if startPPID != 0 && os.Getppid() != startPPID {
		return ErrSupervisorGone
	}
	return nil
}

// vmData returns the process's current data segment size (VmData in
// /proc/self/status: private writable mappings, what RLIMIT_DATA limits)
// in bytes, or 0 if it cannot be read.
//
// The file is read into one buffer and scanned in place: os.ReadFile's
// growing buffer, a string copy and strings.Split took half a dozen
// allocation size classes that nothing else in a login process uses, and
// the first object of a size class costs the process a span of its own,
// about 25 KB of its 0.8 MB in all (docs/loginsvc.md, "Memory").
func vmData() uint64 {
	fd, err := syscall.Open("/proc/self/status", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return 0
	}
	defer syscall.Close(fd)
	buf := make([]byte, statusMax) // the file is about 1.5 KB
	n := 0
	for n < len(buf) {
		k, err := syscall.Read(fd, buf[n:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil || k <= 0 {
			break
		}
		n += k
	}
	return parseVmData(buf[:n])
}

// statusMax is how much of /proc/self/status vmData reads; VmData is in
// its first kilobyte.
const statusMax = 4096

// parseVmData returns the VmData line's value ("VmData:\t  1234 kB") of
// the text of a /proc/PID/status file, in bytes; 0 if it has none.
func parseVmData(status []byte) uint64 {
	for len(status) > 0 {
		line, rest, _ := bytes.Cut(status, []byte("\n"))
		status = rest
		if v, ok := bytes.CutPrefix(line, []byte("VmData:")); ok {
			v = bytes.TrimSpace(bytes.TrimSuffix(bytes.TrimSpace(v), []byte("kB")))
			n, err := strconv.ParseUint(string(v), 10, 64)
			if err != nil {
				return 0
			}
			return n << 10
		}
	}
	return 0
}

// resetNice sets the nice value of every thread of the process to 0
// (nice is per thread on Linux; threads created later inherit it from
// their creator). It needs root (or CAP_SYS_NICE) when lowering the
// value; errors are ignored: a process left at a higher nice value only
// runs at a lower priority. Two passes catch threads started during the
// first.
func resetNice() {
	for range 2 {
		ents, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return
		}
		for _, e := range ents {
			if tid, err := strconv.Atoi(e.Name()); err == nil {
				if n, err := unix.Getpriority(unix.PRIO_PROCESS, tid); err == nil && n != 20 {
					// getpriority returns 20 - nice
					syscall.Setpriority(syscall.PRIO_PROCESS, tid, 0)
				}
			}
		}
	}
}

// ClearPdeathsig clears the parent-death signal, so that the process
// outlives the supervisor (a stop with shutdown_clients = no,
// docs/loginsvc.md): on every thread where the runtime allows it
// (AllThreadsSyscall), else (a cgo binary) on the calling thread, which
// must then be the one restorePdeathsig set it on (the goroutine that
// called Apply keeps it).
func ClearPdeathsig() error {
	_, _, e := syscall.AllThreadsSyscall(syscall.SYS_PRCTL, unix.PR_SET_PDEATHSIG, 0, 0)
	if e == syscall.ENOTSUP {
		return unix.Prctl(unix.PR_SET_PDEATHSIG, 0, 0, 0, 0)
	}
	if e != 0 {
		return fmt.Errorf("prctl(PR_SET_PDEATHSIG, 0): %w", e)
	}
	return nil
}
