package master

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/config"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/control"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/master/worker"
)

// greet connects to addr and returns the first line it is sent.
func greet(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "dial: " + err.Error()
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "read: " + err.Error()
	}
	return strings.TrimRight(line, "\r\n")
}

// TestIPv6Listeners: listen with IPv6 addresses (plain and [bracketed],
// next to IPv4) opens one socket per address, and each greets.
func TestIPv6Listeners(t *testing.T) {
	if c, err := net.Listen("tcp6", "[::1]:0"); err != nil {
		t.Skip("no IPv6 loopback:", err)
	} else {
		c.Close()
	}
	for _, listen := range []string{"127.0.0.1 ::1", "127.0.0.1, [::1]"} {
		t.Run(listen, func(t *testing.T) {
			l := startLab(t, "imap-login", "listen = "+listen, "service_count = 0")
			for _, host := range []string{"127.0.0.1", "::1"} {
				if g := greet(t, net.JoinHostPort(host, strconv.Itoa(l.port))); !strings.HasPrefix(g, "* OK") {
					t.Errorf("%s: %q", host, g)
				}
			}
		})
	}
}

// TestReloadIsAllOrNothing: a reload whose new listener cannot be bound
// (the port is taken) changes nothing: every old listener keeps serving
// with the old settings, and the generation stays.
func TestReloadIsAllOrNothing(t *testing.T) {
	l := startLab(t, "imap-login", "", "service_count = 0")
	busy, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := busy.Addr().(*net.TCPAddr).Port
	text := fmt.Sprintf("base_dir = %s\nprotocols = imap\nlisten = 127.0.0.1\nlogin_greeting = reloaded.\nservice imap-login {\n inet_listener imap {\n  port = %d\n }\n service_count = 0\n}\n", l.cfg.BaseDir, busyPort)
	cfg, err := config.Parse("lab2.conf", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	gen := l.sup.Status().Generation
	err = l.sup.Reload(cfg)
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("Reload: %v, want address already in use", err)
	}
	if g := greet(t, "127.0.0.1:"+strconv.Itoa(l.port)); !strings.HasSuffix(g, "] loginsvc ready.") {
		t.Errorf("old listener after the failed reload: %q", g)
	}
	if got := l.sup.Status().Generation; got != gen {
		t.Errorf("generation %d after the failed reload, want %d", got, gen)
	}
}

// TestSecondSupervisorSameBaseDir: a second supervisor with the same
// base_dir refuses to start, naming the first one's pid, and the first
// keeps its control socket.
func TestSecondSupervisorSameBaseDir(t *testing.T) {
	l := startLab(t, "imap-login", "", "service_count = 0")
	text := fmt.Sprintf("base_dir = %s\nprotocols = imap\nlisten = 127.0.0.1\nservice imap-login {\n inet_listener imap {\n  port = %d\n }\n}\n", l.cfg.BaseDir, freePort(t))
	cfg, err := config.Parse("second.conf", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	second := &Supervisor{Runner: &worker.ExecRunner{Path: os.Args[0], NoSandbox: os.Geteuid() != 0}}
	err = second.Run(context.Background(), cfg)
	want := fmt.Sprintf("loginsvc is already running with PID %d", os.Getpid())
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("second Run: %v, want %q", err, want)
	}
	if _, err := control.QueryStatus(context.Background(), l.cfg.ControlSocket()); err != nil {
		t.Errorf("first supervisor's control socket: %v", err)
	}
}

// TestUnknownLoginUser: a login user that does not exist stops the start
// (and a reload), as in Dovecot, instead of failing every connection.
func TestUnknownLoginUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the user check is made as root (login processes setuid)")
	}
	text := fmt.Sprintf("base_dir = %s\nprotocols = imap\nlisten = 127.0.0.1\ndefault_login_user = nosuchuser-loginsvc\nservice imap-login {\n inet_listener imap {\n  port = %d\n }\n}\n", t.TempDir(), freePort(t))
	cfg, err := config.Parse("u.conf", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	err = (&Supervisor{Runner: &worker.ExecRunner{Path: os.Args[0]}}).Run(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "user nosuchuser-loginsvc doesn't exist") {
		t.Fatalf("Run: %v", err)
	}
}

// TestReusePort: reuse_port = yes sets SO_REUSEPORT on the listener (as
// Dovecot's master does), so another socket with SO_REUSEPORT can bind the
// same port; without it, that bind fails.
func TestReusePort(t *testing.T) {
	bindReusePort := func(port int) error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
		if err := unix.Bind(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			return err
		}
		return unix.Listen(fd, 1)
	}
	for _, reuse := range []bool{true, false} {
		t.Run(strconv.FormatBool(reuse), func(t *testing.T) {
			port := freePort(t)
			yes := map[bool]string{true: "yes", false: "no"}[reuse]
			text := fmt.Sprintf("base_dir = %s\nprotocols = imap\nlisten = 127.0.0.1\nservice imap-login {\n inet_listener imap {\n  port = %d\n  reuse_port = %s\n }\n}\n", t.TempDir(), port, yes)
			cfg, err := config.Parse("r.conf", []byte(text))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			ready := make(chan struct{})
			done := make(chan error, 1)
			sup := &Supervisor{Runner: &worker.ExecRunner{Path: os.Args[0], NoSandbox: os.Geteuid() != 0}, OnReady: func() { close(ready) }}
			go func() { done <- sup.Run(ctx, cfg) }()
			defer func() { cancel(); <-done }()
			select {
			case <-ready:
			case err := <-done:
				t.Fatal(err)
			}
			err = bindReusePort(port)
			if reuse && err != nil {
				t.Errorf("reuse_port = yes: second bind: %v", err)
			}
			if !reuse && err == nil {
				t.Errorf("reuse_port = no: a second socket could bind the port")
			}
		})
	}
}

// TestDaemonStartReportsFailure runs the real binary without -F: a start
// that fails in the daemon (its port is taken) makes the starting command
// exit 1 with the daemon's error; a good start exits 0 with the daemon
// serving, reachable through base_dir/loginsvc.pid, and a relative -c
// path is found (the daemon runs in /).
func TestDaemonStartReportsFailure(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (login processes chroot and drop to dovenull)")
	}
	bin := buildLoginsvc(t)
	dir := t.TempDir()
	busy, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	write := func(name string, port int) {
		text := fmt.Sprintf("base_dir = %s\nprotocols = imap\nlisten = 127.0.0.1\nservice imap-login {\n inet_listener imap {\n  port = %d\n }\n}\n", filepath.Join(dir, "run"), port)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("busy.conf", busy.Addr().(*net.TCPAddr).Port)
	port := freePort(t)
	write("good.conf", port)

	cmd := exec.Command(bin, "-c", "busy.conf")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "address already in use") {
		t.Errorf("start with a busy port: %v, output %q; want exit 1 and the bind error", err, out)
	}

	cmd = exec.Command(bin, "-c", "good.conf")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("good start: %v %s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "run", "loginsvc.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if pid <= 0 {
		t.Fatalf("pid file %q", b)
	}
	// alive: the daemon's parent has exited, so a zombie waits for
	// whoever reaps orphans here; that counts as stopped.
	alive := func() bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		return err == nil && !strings.Contains(string(b), ") Z")
	}
	defer func() {
		syscall.Kill(pid, syscall.SIGTERM)
		for i := 0; i < 100 && alive(); i++ {
			time.Sleep(50 * time.Millisecond)
		}
		if alive() {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Errorf("daemon %d did not stop on SIGTERM", pid)
		}
	}()
	if g := greet(t, "127.0.0.1:"+strconv.Itoa(port)); !strings.HasPrefix(g, "* OK") {
		t.Errorf("daemon greeting %q", g)
	}
}
