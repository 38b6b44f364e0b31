package master

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/config"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/control"
)

// shutdown_clients and the TLS relays of logged-in sessions, against a
// real Dovecot 2.3 (docs/loginsvc.md, "Reload and shutdown"): with yes
// (the default) a reload ends the old processes' relays after
// ReloadShutdownDelay and a stop ends them at once; with no a reload
// leaves them running until their sessions end, and so does a stop,
// whose relaying processes outlive the supervisor.

// relayDisconnect is what loginsvc logs for a relayed session that a
// shutdown ends.
var relayDisconnect = []string{
	"Disconnected by proxy: Process shutting down: user=<" + authUser + ">, method=PLAIN, rip=127.0.0.1, lip=127.0.0.1, mpid=",
	", TLS, session=<",
}

// relayedLogin logs alice in over implicit TLS on port and returns the
// client and a pidfd of the login process that relays its session (the
// one with a proxying client, as status reports it).
func relayedLogin(t *testing.T, port int, pool *x509.CertPool, status func(func(control.ServiceStatus) bool) control.ServiceStatus) (*tclient, int, int) {
	t.Helper()
	c, err := dialTLS(t, port, "", tlsClientConfig(pool))
	if err != nil {
		t.Fatal(err)
	}
	c.line()
	ir := base64.StdEncoding.EncodeToString([]byte("\x00" + authUser + "\x00" + authPass))
	c.c.Write([]byte("a AUTHENTICATE PLAIN " + ir + "\r\n"))
	if r := c.readTagged("a"); !strings.HasPrefix(r[len(r)-1], "a OK") {
		t.Fatalf("login: %q", r)
	}
	pid := 0
	status(func(s control.ServiceStatus) bool {
		for _, p := range s.Procs {
			if p.Proxying == 1 {
				pid = p.PID
				return true
			}
		}
		return false
	})
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatalf("pidfd_open(%d): %v", pid, err)
	}
	t.Cleanup(func() {
		unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0) // if it is still there
		unix.Close(fd)
	})
	return c, pid, fd
}

// proxying is waitFor for relayedLogin.
func (l *lab) proxying(cond func(control.ServiceStatus) bool) control.ServiceStatus {
	l.t.Helper()
	return l.waitFor("a proxying client", cond)
}

// exitedWithin waits up to d for the process of pidfd to exit; 0 only
// looks.
func exitedWithin(pidfd int, d time.Duration) bool {
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	deadline := time.Now().Add(d)
	for {
		n, err := unix.Poll(fds, int(time.Until(deadline).Milliseconds()))
		if err == unix.EINTR {
			continue
		}
		return n == 1
	}
}

// eof waits up to d for the end of c's stream (no more data) and fails
// the test if data or nothing comes.
func eof(t *testing.T, c *tclient, d time.Duration) {
	t.Helper()
	c.c.SetReadDeadline(time.Now().Add(d))
	s, err := c.r.ReadString('\n')
	if err == nil || s != "" || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("waiting for the end of the session: %q, %v", s, err)
	}
}

// TestDovecot23RelayEndsAfterReload: with shutdown_clients = yes, a
// reload ends the old process's relayed session ReloadShutdownDelay
// later (both sides closed: the client sees the end, Dovecot's imap
// its client leaving), logs the disconnect and the process exits.
func TestDovecot23RelayEndsAfterReload(t *testing.T) {
	b := startDovecot23(t)
	l, sport, pool, _ := tlsLab(t, "imap-login", "base_dir = "+b.baseDir, "service_count = 1")
	c, _, pidfd := relayedLogin(t, sport, pool, l.proxying)
	reloaded := time.Now()
	if err := l.sup.Reload(l.cfg); err != nil {
		t.Fatal(err)
	}
	eof(t, c, ReloadShutdownDelay+15*time.Second)
	if d := time.Since(reloaded); d < ReloadShutdownDelay {
		t.Errorf("the relayed session ended %v after the reload, before ReloadShutdownDelay (%v)", d, ReloadShutdownDelay)
	}
	relayEnded(t, l, b, pidfd)
}

// relayEnded checks a relayed session ended by a shutdown, once the
// client has seen its end: its login process exits by itself (it is not
// killed), loginsvc logs the disconnect and Dovecot's imap its client
// leaving.
func relayEnded(t *testing.T, l *lab, b backend, pidfd int) {
	t.Helper()
	if !exitedWithin(pidfd, 10*time.Second) {
		t.Fatal("the login process still runs after its session ended")
	}
	l.mustLog(relayDisconnect...)
	b.waitLog(t, "imap("+authUser+")<rip=127.0.0.1>", "Disconnected")
	if log := l.logs.String(); strings.Contains(log, "did not stop in time") || strings.Contains(log, "login process died") {
		t.Errorf("the login process had to be killed:\n%s", log)
	}
}

// TestDovecot23RelaySurvivesReload: with shutdown_clients = no, the old
// process's relayed session outlives a reload (past
// ReloadShutdownDelay) and keeps its process, which exits when the
// session ends.
func TestDovecot23RelaySurvivesReload(t *testing.T) {
	b := startDovecot23(t)
	l, sport, pool, _ := tlsLab(t, "imap-login", "shutdown_clients = no\nbase_dir = "+b.baseDir, "service_count = 1")
	c, pid, pidfd := relayedLogin(t, sport, pool, l.proxying)
	if err := l.sup.Reload(l.cfg); err != nil {
		t.Fatal(err)
	}
	l.waitFor("the old process told to drain", func(s control.ServiceStatus) bool {
		for _, p := range s.Procs {
			if p.PID == pid && p.Stopping == "drain" {
				return true
			}
		}
		return false
	})
	// Nothing may come (an end of stream would) for longer than
	// ReloadShutdownDelay.
	c.c.SetReadDeadline(time.Now().Add(ReloadShutdownDelay + 2*time.Second))
	if s, err := c.r.ReadString('\n'); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the relayed session after the reload: %q, %v", s, err)
	}
	c.c.SetReadDeadline(time.Time{})
	c.c.Write([]byte("b SELECT INBOX\r\n"))
	if r := c.readTagged("b"); !strings.HasPrefix(r[len(r)-1], "b OK") {
		t.Fatalf("SELECT after the reload: %q", r)
	}
	if exitedWithin(pidfd, 0) {
		t.Fatal("the old login process is gone")
	}
	c.c.Write([]byte("z LOGOUT\r\n"))
	if r := c.readTagged("z"); !strings.HasPrefix(r[len(r)-1], "z OK") {
		t.Fatalf("LOGOUT: %q", r)
	}
	if !exitedWithin(pidfd, 10*time.Second) {
		t.Fatal("the old login process still runs after its session ended")
	}
	if strings.Contains(l.logs.String(), "Disconnected by proxy") {
		t.Error("a relayed session was logged as ended by a shutdown")
	}
}

// TestDovecot23RelayEndsAtStop: with shutdown_clients = yes, stopping
// loginsvc ends the relayed session at once (its process exits; no
// grace-time kill) and logs it.
func TestDovecot23RelayEndsAtStop(t *testing.T) {
	b := startDovecot23(t)
	l, sport, pool, _ := tlsLab(t, "imap-login", "base_dir = "+b.baseDir, "service_count = 1")
	c, _, pidfd := relayedLogin(t, sport, pool, l.proxying)
	stopped := make(chan struct{})
	go func() { l.stop(); close(stopped) }()
	eof(t, c, 10*time.Second)
	<-stopped
	relayEnded(t, l, b, pidfd)
}

// TestDovecot23RelayOutlivesStop: with shutdown_clients = no, a login
// process that relays a logged-in session outlives the supervisor
// (this test binary as loginsvc, stopped with SIGTERM): neither the
// parent-death signal nor the end of its control socket ends it, the
// session goes on through it (a NOOP answered by Dovecot's imap), and
// it exits when the session ends (LOGOUT). A pre-login client of the
// same stop is shut down.
func TestDovecot23RelayOutlivesStop(t *testing.T) {
	b := startDovecot23(t)
	dir := t.TempDir()
	certPath, keyPath, pool := testCert(t, dir)
	port, sport := freePort(t), freePort(t)
	text := fmt.Sprintf("base_dir = %s\nprotocols = imap\nlisten = 127.0.0.1\nshutdown_clients = no\nssl = yes\nssl_cert = <%s\nssl_key = <%s\n"+
		"service imap-login {\n inet_listener imap {\n  port = %d\n }\n inet_listener imaps {\n  port = %d\n  ssl = yes\n }\n service_count = 1\n}\n",
		b.baseDir, certPath, keyPath, port, sport)
	sp := startSupervisorProc(t, dir, text)
	status := sp.status
	status(func(control.ServiceStatus) bool { return true }) // listening
	c, pid, pidfd := relayedLogin(t, sport, pool, status)
	pre := dialPort(t, port, "")
	if g := pre.line(); !strings.HasPrefix(g, "* OK ") {
		t.Fatalf("greeting %q", g)
	}
	status(func(s control.ServiceStatus) bool {
		n := 0
		for _, p := range s.Procs {
			n += p.LoggingIn
		}
		return n == 1
	})
	sp.cmd.Process.Signal(syscall.SIGTERM)
	if err := sp.wait(15 * time.Second); err != nil {
		t.Fatalf("loginsvc: %v", err)
	}
	if r := pre.line(); r != "* BYE Shutting down" {
		t.Errorf("the pre-login client at the stop: %q", r)
	}
	if exitedWithin(pidfd, 0) {
		t.Fatal("the login process relaying a logged-in session died with the supervisor")
	}
	if ppid := parentOf(t, pid); ppid == sp.cmd.Process.Pid {
		t.Fatalf("login process %d still has the supervisor (%d) as its parent", pid, ppid)
	}
	if r := c.cmd("n NOOP"); !strings.HasPrefix(r, "n OK NOOP completed") {
		t.Fatalf("NOOP through the relay after the supervisor's exit: %q", r)
	}
	c.c.Write([]byte("z LOGOUT\r\n"))
	if r := c.readTagged("z"); !strings.HasPrefix(r[len(r)-1], "z OK") {
		t.Fatalf("LOGOUT: %q", r)
	}
	if !exitedWithin(pidfd, 10*time.Second) {
		t.Fatal("the detached login process still runs after its session ended")
	}
	if !strings.Contains(sp.logs.String(), "login process left running with its logged-in sessions") {
		t.Error("the supervisor did not log the process it left running")
	}
}

// parentOf is process pid's parent pid (/proc/PID/status).
func parentOf(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "PPid:"); ok {
			var ppid int
			fmt.Sscan(strings.TrimSpace(v), &ppid)
			return ppid
		}
	}
	t.Fatalf("no PPid in /proc/%d/status", pid)
	return 0
}

// supervisorProc is loginsvc as another process: this test binary
// (supervisorChild) with a configuration file.
type supervisorProc struct {
	t      *testing.T
	cfg    *config.Config
	cmd    *exec.Cmd
	logs   *syncBuf
	exited chan error // Wait's result (put back once read)
}

// startSupervisorProc writes text as dir/loginsvc.conf and starts
// loginsvc with it; it is killed at the end of the test.
func startSupervisorProc(t *testing.T, dir, text string) *supervisorProc {
	t.Helper()
	conf := filepath.Join(dir, "loginsvc.conf")
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(conf, []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	sp := &supervisorProc{t: t, cfg: cfg, logs: &syncBuf{}, exited: make(chan error, 1)}
	sp.cmd = exec.Command(os.Args[0], "-test.run=^$")
	sp.cmd.Env = append(os.Environ(), "LOGINSVC_TEST_SUPERVISOR="+conf)
	sp.cmd.Stderr = sp.logs
	sp.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := sp.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { sp.exited <- sp.cmd.Wait() }()
	t.Cleanup(func() {
		sp.cmd.Process.Kill()
		sp.wait(10 * time.Second)
		if t.Failed() {
			t.Logf("loginsvc log:\n%s", sp.logs.String())
		}
	})
	return sp
}

// wait waits up to d for the process to exit and returns Wait's error.
func (sp *supervisorProc) wait(d time.Duration) error {
	select {
	case err := <-sp.exited:
		sp.exited <- err
		return err
	case <-time.After(d):
		sp.t.Fatalf("loginsvc did not exit within %v", d)
		return nil
	}
}

// status polls the status of the loginsvc over its control socket for
// up to 10 s, until cond holds for its one service.
func (sp *supervisorProc) status(cond func(control.ServiceStatus) bool) control.ServiceStatus {
	sp.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := control.QueryStatus(ctx, sp.cfg.ControlSocket())
		cancel()
		if err == nil && len(st.Services) == 1 && cond(st.Services[0]) {
			return st.Services[0]
		}
		if time.Now().After(deadline) {
			sp.t.Fatalf("loginsvc status: %v %+v", err, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
