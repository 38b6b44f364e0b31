package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tcpwrapd/tcpwrapd/internal/dovecotlab"
)

// managedVSZ is the vsz_limit the Dovecot-managed tests use: the smallest
// that tcpwrapd accepts (service.MinAddressSpace).
const managedVSZ = "1G"

// managedBinary builds ./cmd/tcpwrapd into a temporary directory of t
// as it should be packaged for Dovecot: statically (CGO_ENABLED=0: fewer
// threads, no glibc thread stacks under vsz_limit) and with the early
// RLIMIT_AS check as the ELF entry point (-ldflags=-E=main.vszEntry), so
// that a too small vsz_limit gives a clear message instead of a Go
// runtime crash. The build cache makes repeated builds cheap.
func managedBinary(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		goBin = "go"
	}
	bin := filepath.Join(t.TempDir(), "tcpwrapd") // the master execs it as root
	cmd := exec.Command(goBin, "build", "-ldflags=-E=main.vszEntry", "-o", bin, "./cmd/tcpwrapd")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/tcpwrapd: %v\n%s", err, out)
	}
	return bin
}

// startManaged starts a lab Dovecot whose `service tcpwrap` runs tcpwrapd
// --dovecot with the lab's rule files and the given extra settings.
func startManaged(t *testing.T, allow, deny string, settings ...string) *dovecotlab.Dovecot {
	t.Helper()
	bin := managedBinary(t)
	d := dovecotlab.New(t, dovecotlab.Config{HostsAllow: allow, HostsDeny: deny})
	d.Config.TcpwrapExecutable = strings.Join([]string{bin, "--dovecot",
		"--allow-file", d.HostsAllow, "--deny-file", d.HostsDeny,
		"--reload-interval", "100ms", "--log-level", "debug"}, " ")
	d.Config.TcpwrapSettings = settings
	if err := d.Launch(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("dovecot log:\n%s", d.Log())
		}
	})
	return d
}

// startedRe matches tcpwrapd's start-up line in Dovecot's log, e.g.
// `tcpwrap: Info: started as a Dovecot service: service=tcpwrap pid=123 uid=102 gid=105 client_limit=4 ...`.
var startedRe = regexp.MustCompile(`tcpwrap: Info: started as a Dovecot service: .*\bpid=(\d+) uid=(\d+) gid=(\d+) client_limit=(\d+)`)

// started returns the pids, uids and gids of every tcpwrapd process the
// master started so far, from their start-up lines.
func started(d *dovecotlab.Dovecot) (pids, uids, gids []int) {
	for _, m := range startedRe.FindAllStringSubmatch(d.Log(), -1) {
		p, _ := strconv.Atoi(m[1])
		u, _ := strconv.Atoi(m[2])
		g, _ := strconv.Atoi(m[3])
		pids, uids, gids = append(pids, p), append(uids, u), append(gids, g)
	}
	return pids, uids, gids
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// waitGone waits up to timeout for pid to exit.
func waitGone(pid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for alive(pid) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// probeAll runs n rounds of the four clients (imap/pop3 from .1/.2),
// concurrency rounds at a time, and fails the test on any verdict that is
// not "allowed from .1, refused from .2". It returns the number of checks.
func probeAll(t *testing.T, d *dovecotlab.Dovecot, rounds, concurrency int) int {
	t.Helper()
	want := map[string]dovecotlab.Verdict{"127.0.0.1": A, "127.0.0.2": R}
	var wg sync.WaitGroup
	sem := make(chan struct{}, concurrency)
	var mu sync.Mutex
	var errs []string
	for r := 0; r < rounds; r++ {
		for _, c := range clients {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				res, err := dovecotlab.Probe(ctx, c.proto, c.src, d.Addr(c.proto))
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err != nil:
					errs = append(errs, err.Error())
				case res.Verdict != want[c.src]:
					errs = append(errs, fmt.Sprintf("%s from %s: %s, want %s", c.proto, c.src, res.Verdict, want[c.src]))
				}
			}()
		}
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d of %d checks wrong, first: %s", len(errs), rounds*len(clients), errs[0])
	}
	return rounds * len(clients)
}

// TestManagedResident runs tcpwrapd as Dovecot's tcpwrap service with
// client_limit 1 and 4. Real IMAP and POP3 clients from 127.0.0.1 are
// allowed and from 127.0.0.2 refused; one resident process, running as
// the dovecot user, serves many checks; the master's idle kill (SIGINT)
// makes it exit cleanly.
func TestManagedResident(t *testing.T) {
	dovecotlab.SkipIfUnavailable(t)
	uid, gid, err := dovecotlab.LookupIDs(dovecotlab.InternalUser)
	if err != nil {
		t.Fatal(err)
	}
	for _, limit := range []int{1, 4} {
		t.Run(fmt.Sprintf("client_limit=%d", limit), func(t *testing.T) {
			d := startManaged(t, "", "ALL: 127.0.0.2\n",
				"client_limit = "+strconv.Itoa(limit), "vsz_limit = "+managedVSZ, "idle_kill = 3 secs")
			// Sequential checks: one process must serve them all.
			n := probeAll(t, d, 10, 1)
			pids, uids, gids := started(d)
			if len(pids) != 1 {
				t.Fatalf("%d sequential checks started %d tcpwrapd processes %v, want 1 resident", n, len(pids), pids)
			}
			pid := pids[0]
			if uids[0] != uid || gids[0] != gid {
				t.Errorf("tcpwrapd logged uid=%d gid=%d, want %s's %d/%d", uids[0], gids[0], dovecotlab.InternalUser, uid, gid)
			}
			checkProcCreds(t, pid, uid, gid)
			// The log pipe reaches Dovecot's log a moment after the reply.
			var refusals int
			for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				refusals = strings.Count(d.Log(), "tcpwrap: Info: access refused: daemon=")
				if refusals >= n/2 || time.Now().After(deadline) {
					break
				}
			}
			if refusals != n/2 {
				t.Errorf("tcpwrapd logged %d refusals, want %d", refusals, n/2)
			}
			t.Logf("client_limit=%d: %d sequential checks served by pid %d (uid %d gid %d)", limit, n, pid, uid, gid)

			// Concurrent checks: at most client_limit at once per
			// process; the master starts more processes as needed.
			n = probeAll(t, d, 10, 8)
			pids, _, _ = started(d)
			t.Logf("client_limit=%d: %d concurrent checks (8 at once) served by %d process(es)", limit, n, len(pids))

			// Idle kill: idle_kill = 3 s, process_min_avail = 0, so the
			// master sends SIGINT to idle processes and they exit.
			mark := d.LogMark()
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			if _, err := d.WaitLog(ctx, mark, "idle-kill request (SIGINT)"); err != nil {
				t.Fatal(err)
			}
			for _, p := range pids {
				if !waitGone(p, 5*time.Second) {
					t.Errorf("tcpwrapd pid %d still running after SIGINT", p)
				}
			}
			// And the service comes back for the next check.
			probeAll(t, d, 1, 1)
			checkNoErrors(t, d)
		})
	}
}

// checkProcCreds checks the real, effective, saved and filesystem ids and
// the supplementary groups of pid in /proc.
func checkProcCreds(t *testing.T, pid, uid, gid int) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"Uid:":    fmt.Sprintf("%d\t%d\t%d\t%d", uid, uid, uid, uid),
		"Gid:":    fmt.Sprintf("%d\t%d\t%d\t%d", gid, gid, gid, gid),
		"Groups:": strconv.Itoa(gid),
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, "\t")
		if w, ok := want[k]; ok {
			if strings.TrimSpace(v) != w {
				t.Errorf("/proc/%d/status %s %q, want %q", pid, k, strings.TrimSpace(v), w)
			}
			delete(want, k)
		}
	}
	if len(want) > 0 {
		t.Errorf("/proc/%d/status lacks %v", pid, want)
	}
}

// checkNoErrors fails on Error, Fatal or Panic lines in Dovecot's log.
func checkNoErrors(t *testing.T, d *dovecotlab.Dovecot) {
	t.Helper()
	for _, line := range strings.Split(d.Log(), "\n") {
		if strings.Contains(line, ": Error: ") || strings.Contains(line, ": Fatal: ") || strings.Contains(line, ": Panic: ") {
			t.Errorf("dovecot logged: %s", line)
		}
	}
}

// TestManagedSignalsAndMasterDeath checks SIGINT with a check in flight
// (the process finishes it, then exits), SIGTERM, and that the process
// exits when the master dies (fd 6).
func TestManagedSignalsAndMasterDeath(t *testing.T) {
	dovecotlab.SkipIfUnavailable(t)
	d := startManaged(t, "", "ALL: 127.0.0.2\n", "client_limit = 4", "vsz_limit = "+managedVSZ)
	probeAll(t, d, 1, 1)
	pids, _, _ := started(d)
	if len(pids) != 1 {
		t.Fatalf("started %v, want one process", pids)
	}
	// SIGINT while a check is in flight: a raw client that connects and
	// sends nothing keeps a connection open until the read timeout.
	conn := openIdleCheck(t, d)
	// connect returns once the connection is queued; wait until the
	// service has accepted it (its end of the connection is one of the
	// process's descriptors), or SIGINT could find it idle.
	for deadline := time.Now().Add(30 * time.Second); !holdsPeer(t, pids[0], conn); {
		if time.Now().After(deadline) {
			t.Fatalf("tcpwrapd pid %d did not accept the idle check's connection", pids[0])
		}
		time.Sleep(5 * time.Millisecond)
	}
	mark := d.LogMark()
	syscall.Kill(pids[0], syscall.SIGINT)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := d.WaitLog(ctx, mark, "idle-kill request (SIGINT)"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if !alive(pids[0]) {
		t.Errorf("tcpwrapd exited on SIGINT with a connection in flight")
	}
	conn.Close() // the check ends: now it is idle and must exit
	if !waitGone(pids[0], 5*time.Second) {
		t.Fatalf("tcpwrapd pid %d did not exit once idle after SIGINT", pids[0])
	}

	// SIGTERM: the next process shuts down at once.
	probeAll(t, d, 1, 1)
	pids, _, _ = started(d)
	last := pids[len(pids)-1]
	syscall.Kill(last, syscall.SIGTERM)
	if !waitGone(last, 5*time.Second) {
		t.Fatalf("tcpwrapd pid %d did not exit on SIGTERM", last)
	}

	// Master death: SIGKILL the master; fd 6 reports POLLERR.
	probeAll(t, d, 1, 1)
	pids, _, _ = started(d)
	last = pids[len(pids)-1]
	syscall.Kill(d.PID(), syscall.SIGKILL)
	if !waitGone(last, 5*time.Second) {
		t.Fatalf("tcpwrapd pid %d still running 5 s after the master was killed", last)
	}
	t.Logf("SIGINT with a check in flight, SIGTERM and master death: all exited")
}

// holdsPeer reports whether process pid holds the other end of the
// connected unix socket f (accepted it), as ss(8) from iproute2 reports
// the sockets' inodes and owners; a connection still in the listener's
// queue has an owner-less end.
func holdsPeer(t *testing.T, pid int, f *os.File) bool {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ss", "-xpn").Output()
	if err != nil {
		t.Fatalf("ss -xpn: %v", err)
	}
	ino, owner := strconv.FormatUint(st.Ino, 10), fmt.Sprintf("pid=%d,", pid)
	for _, line := range strings.Split(string(out), "\n") {
		if fs := strings.Fields(line); len(fs) > 8 && fs[7] == ino && strings.Contains(line, owner) {
			return true
		}
	}
	return false
}

// openIdleCheck connects to the tcpwrap socket directly (as root) and
// sends nothing, so the service holds one connection in flight until
// the connection is closed or its read timeout (10 s) passes.
func openIdleCheck(t *testing.T, d *dovecotlab.Dovecot) *os.File {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "idle-check")
	t.Cleanup(func() { f.Close() })
	if err := syscall.Connect(fd, &syscall.SockaddrUnix{Name: filepath.Join(d.LoginDir(), dovecotlab.OwnTcpwrapSocket)}); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestManagedVSZTooSmall runs tcpwrapd under Dovecot's default vsz_limit
// (256 MiB): it must not crash in the Go runtime but log our message and
// exit 89, and the login must fail closed.
func TestManagedVSZTooSmall(t *testing.T) {
	dovecotlab.SkipIfUnavailable(t)
	d := startManaged(t, "", "", "client_limit = 4") // vsz_limit unset: default 256M
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := dovecotlab.Probe(ctx, "imap", "127.0.0.1", d.Addr("imap"))
	if err == nil && res.Verdict != R {
		t.Errorf("imap from 127.0.0.1 with a failing access service: %s, want refused", res.Verdict)
	}
	line, err := d.WaitLog(ctx, 0, "vsz_limit (RLIMIT_AS) of 256 MiB is too small for a Go program")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(line, "set vsz_limit = 1G (or 0 for no limit) in service tcpwrap") {
		t.Errorf("message lacks the fix: %s", line)
	}
	if _, err := d.WaitLog(ctx, 0, "returned error 89"); err != nil {
		t.Error(err)
	}
	if strings.Contains(d.Log(), "fatal error:") {
		t.Errorf("the Go runtime crashed instead:\n%s", d.Log())
	}
	t.Logf("dovecot log line: %s", line)
}
