package accessd

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tcpwrapd/tcpwrapd/internal/peertest"
)

// startChild starts cmd, with its stderr collected, and makes sure it is
// stopped at the end of the test.
func startChild(t *testing.T, cmd *exec.Cmd) *logBuffer {
	t.Helper()
	out := &logBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
		if t.Failed() {
			t.Logf("child output:\n%s", out)
		}
	})
	return out
}

// waitExit waits up to 10 s for cmd and returns its error.
func waitExit(t *testing.T, cmd *exec.Cmd) error {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- cmd.Wait() }()
	select {
	case err := <-errc:
		return err
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-errc
		t.Fatal("child did not exit")
		return nil
	}
}

// activationSocket creates a listening unix socket for a child and returns
// its file (fd 3 in the child through ExtraFiles).
func activationSocket(t *testing.T, path string) *os.File {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	f, err := ln.File()
	ln.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close(); os.Remove(path) })
	return f
}

// TestSocketActivation re-runs the test binary as a socket-activated
// daemon: LISTEN_FDS=1 with the socket as fd 3 and LISTEN_PID set by a
// shell to the child's own pid, as systemd does.
func TestSocketActivation(t *testing.T) {
	dir := shortDir(t)
	sock := filepath.Join(dir, "access")
	f := activationSocket(t, sock)
	ns := listenNotify(t, dir)
	cmd := exec.Command("/bin/sh", "-c", `LISTEN_PID=$$ exec "$0"`, os.Args[0])
	cmd.Env = append(os.Environ(), "ACCESSD_TEST_CHILD=daemon", "LISTEN_FDS=1", "LISTEN_FDNAMES=access",
		"NOTIFY_SOCKET="+ns.path,
		"ACCESSD_TEST_ALLOW="+writeFile(t, dir, "hosts.allow", ""),
		"ACCESSD_TEST_DENY="+writeFile(t, dir, "hosts.deny", "ALL: 127.0.0.2\n"))
	cmd.ExtraFiles = []*os.File{f}
	out := startChild(t, cmd)
	ns.expect(t, "READY=1")
	if got, _ := askAccess(t, sock, "imap", "127.0.0.1"); got != "1\n" {
		t.Errorf("reply from .1 = %q, want %q", got, "1\n")
	}
	if engineWorks() {
		if got, _ := askAccess(t, sock, "imap", "127.0.0.2"); got != "0\n" {
			t.Errorf("reply from .2 = %q, want %q", got, "0\n")
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	ns.expect(t, "STOPPING=1")
	if err := waitExit(t, cmd); err != nil {
		t.Errorf("child exit: %v\n%s", err, out)
	}
	// systemd keeps the socket: it is still there after the daemon stopped.
	if _, err := os.Stat(sock); err != nil {
		t.Errorf("activated socket removed: %v", err)
	}
}

// TestSocketActivationWrongPID checks that descriptors meant for another
// process (LISTEN_PID mismatch) are not used.
func TestSocketActivationWrongPID(t *testing.T) {
	dir := shortDir(t)
	f := activationSocket(t, filepath.Join(dir, "access"))
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "ACCESSD_TEST_CHILD=daemon", "LISTEN_FDS=1", "LISTEN_PID=1")
	cmd.ExtraFiles = []*os.File{f}
	out := startChild(t, cmd)
	var ee *exec.ExitError
	if err := waitExit(t, cmd); !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(out.String(), "no listener") {
		t.Errorf("child exit = %v, want status 1 with no listener; output:\n%s", err, out)
	}
}

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

// tcpwrapdBinary builds cmd/tcpwrapd once per test run.
func tcpwrapdBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds cmd/tcpwrapd; skipped in -short mode")
	}
	binOnce.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		binDir, binErr = os.MkdirTemp("", "tcpwrapd-bin")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "tcpwrapd")
		out, err := exec.Command(goBin, "build", "-o", binPath, "github.com/tcpwrapd/tcpwrapd/cmd/tcpwrapd").CombinedOutput()
		if err != nil {
			binErr = errors.New(string(out))
		}
	})
	if binErr != nil {
		t.Fatalf("cannot build tcpwrapd: %v", binErr)
	}
	return binPath
}

// cleanupBinary removes the built binary; called from TestMain.
func cleanupBinary() {
	if binDir != "" {
		os.RemoveAll(binDir)
	}
}

// TestSystemdSocketActivate runs the built binary under the real
// systemd-socket-activate, which execs it on the first connection with
// LISTEN_FDS=1.
func TestSystemdSocketActivate(t *testing.T) {
	ssa, err := exec.LookPath("systemd-socket-activate")
	peertest.Require(t, "systemd-socket-activate (apt-get install systemd)", err)
	bin := tcpwrapdBinary(t)
	dir := shortDir(t)
	sock := filepath.Join(dir, "access")
	ns := listenNotify(t, dir)
	allow := writeFile(t, dir, "hosts.allow", "")
	deny := writeFile(t, dir, "hosts.deny", "ALL: 127.0.0.2\n")
	cmd := exec.Command(ssa, "-l", sock, "-E", "NOTIFY_SOCKET="+ns.path,
		bin, "--allow-file", allow, "--deny-file", deny, "--listen", filepath.Join(dir, "ignored"))
	out := startChild(t, cmd)
	// It binds, then listens, then says so.
	waitFor(t, "systemd-socket-activate listening", func() bool { return strings.Contains(out.String(), "Listening on") })
	// The first connection makes systemd-socket-activate exec tcpwrapd.
	if got, p := askAccess(t, sock, "imap", "127.0.0.1"); got != "1\n" {
		t.Errorf("reply from .1 = %q, want %q", got, "1\n")
	} else {
		expectEOF(t, p)
	}
	ns.expect(t, "READY=1")
	if engineWorks() {
		if got, _ := askAccess(t, sock, "pop3", "127.0.0.2"); got != "0\n" {
			t.Errorf("reply from .2 = %q, want %q", got, "0\n")
		}
		waitFor(t, "refusal log", func() bool {
			return count(out.String(), `msg="access refused"`, "daemon=pop3", "client_addr=127.0.0.2:", "file="+deny, "line=1") == 1
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "ignored")); err == nil {
		t.Error("--listen socket created despite socket activation")
	}
	cmd.Process.Signal(syscall.SIGTERM)
	ns.expect(t, "STOPPING=1")
	if err := waitExit(t, cmd); err != nil {
		t.Errorf("exit: %v", err)
	}
}

// TestBinaryListen runs the built binary with --listen: socket mode and
// group, SIGHUP reload, clean exit 0 on SIGTERM.
func TestBinaryListen(t *testing.T) {
	bin := tcpwrapdBinary(t)
	dir := shortDir(t)
	sock := filepath.Join(dir, "login", "ext", "access")
	ns := listenNotify(t, dir)
	allow := writeFile(t, dir, "hosts.allow", "")
	deny := writeFile(t, dir, "hosts.deny", "")
	gid := os.Getgid()
	cmd := exec.Command(bin, "--listen", sock, "--socket-mode", "0660", "--socket-group", strconv.Itoa(gid),
		"--allow-file", allow, "--deny-file", deny, "--reload-interval", "0", "--log-level", "debug")
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+ns.path)
	out := startChild(t, cmd)
	ns.expect(t, "READY=1")
	st, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode() != os.ModeSocket|0o660 || int(st.Sys().(*syscall.Stat_t).Gid) != gid {
		t.Errorf("socket mode %v gid %d, want %v gid %d", st.Mode(), st.Sys().(*syscall.Stat_t).Gid, os.ModeSocket|0o660, gid)
	}
	// Below a "login" directory, as Dovecot wants its login directory.
	wantDir := os.FileMode(0o755)
	if _, err := LookupGroup(loginGroup); err == nil && os.Geteuid() == 0 {
		wantDir = 0o750
	}
	if dst, err := os.Stat(filepath.Dir(sock)); err != nil || dst.Mode().Perm() != wantDir {
		t.Errorf("parent directory: %v %v, want mode %v", dst.Mode(), err, wantDir)
	}
	if got, _ := askAccess(t, sock, "imap", "127.0.0.2"); got != "1\n" {
		t.Errorf("reply = %q, want %q", got, "1\n")
	}
	writeFile(t, dir, "hosts.deny", "ALL: 127.0.0.2\n")
	cmd.Process.Signal(syscall.SIGHUP)
	ns.expect(t, "RELOADING=1")
	ns.expect(t, "READY=1")
	if engineWorks() {
		if got, _ := askAccess(t, sock, "imap", "127.0.0.2"); got != "0\n" {
			t.Errorf("reply after SIGHUP = %q, want %q", got, "0\n")
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := waitExit(t, cmd); err != nil {
		t.Errorf("exit: %v", err)
	}
	if !strings.Contains(out.String(), "reason=SIGHUP") {
		t.Errorf("no SIGHUP reload in log:\n%s", out)
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind: %v", err)
	}
}

// TestBinarySecondSignal checks that a second SIGTERM during the drain
// ends the process at once.
func TestBinarySecondSignal(t *testing.T) {
	bin := tcpwrapdBinary(t)
	dir := shortDir(t)
	sock := filepath.Join(dir, "access")
	ns := listenNotify(t, dir)
	cmd := exec.Command(bin, "--listen", sock, "--allow-file", filepath.Join(dir, "a"), "--deny-file", filepath.Join(dir, "d"),
		"--drain-timeout", "1m", "--read-timeout", "1m")
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+ns.path)
	startChild(t, cmd)
	ns.expect(t, "READY=1")
	dialAccess(t, sock) // an idle connection keeps the drain waiting
	time.Sleep(100 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGTERM)
	ns.expect(t, "STOPPING=1")
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	err := waitExit(t, cmd)
	if time.Since(start) > 5*time.Second {
		t.Errorf("second signal took %v", time.Since(start))
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Errorf("exit = %v, want killed by the second signal", err)
	}
}

// TestBinaryUsage checks exit status 2 for bad usage.
func TestBinaryUsage(t *testing.T) {
	bin := tcpwrapdBinary(t)
	for _, args := range [][]string{{"--bogus"}, {}, {"--listen", "/nonexistent/x", "--socket-mode", "999"}, {"extra"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			cmd := exec.Command(bin, args...)
			cmd.Env = []string{"PATH=/usr/bin:/bin"}
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Errorf("exit = %v, want status 2; output:\n%s", err, out)
			}
		})
	}
}
