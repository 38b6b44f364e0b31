package accessd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpwrapd/tcpwrapd/internal/sdnotify"
)

// TestMain lets the test binary act as a socket-activated daemon when it is
// re-run as a child (os/exec helperCommand style).
func TestMain(m *testing.M) {
	if os.Getenv("ACCESSD_TEST_CHILD") == "daemon" {
		os.Exit(childDaemon())
	}
	code := m.Run()
	cleanupBinary()
	os.Exit(code)
}

// childDaemon runs Run the way cmd/tcpwrapd does, configured by env.
func childDaemon() int {
	socks, err := ActivationSockets()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	n := sdnotify.FromEnv()
	for _, v := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET"} {
		if _, ok := os.LookupEnv(v); ok {
			fmt.Fprintf(os.Stderr, "%s still set\n", v)
			return 3
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	err = Run(ctx, Config{
		Listeners: socks.Access,
		AllowFile: os.Getenv("ACCESSD_TEST_ALLOW"), DenyFile: os.Getenv("ACCESSD_TEST_DENY"),
		ReloadInterval: -1, Notifier: n, Env: testEnv(),
		Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// notifySocket listens for sd_notify datagrams in dir.
type notifySocket struct {
	path string
	c    *net.UnixConn
}

func listenNotify(t *testing.T, dir string) *notifySocket {
	t.Helper()
	p := filepath.Join(dir, "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: p, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &notifySocket{path: p, c: c}
}

// next returns the next datagram, failing after 10 s.
func (n *notifySocket) next(t *testing.T) string {
	t.Helper()
	n.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 4096)
	k, err := n.c.Read(buf)
	if err != nil {
		t.Fatalf("waiting for sd_notify message: %v", err)
	}
	return string(buf[:k])
}

// expect reads the next datagram and checks its prefix.
func (n *notifySocket) expect(t *testing.T, prefix string) {
	t.Helper()
	if got := n.next(t); !strings.HasPrefix(got, prefix) {
		t.Fatalf("sd_notify message = %q, want prefix %q", got, prefix)
	}
}

// TestRunNotifyHangup runs the whole daemon in-process: socket creation,
// READY=1, a SIGHUP-equivalent reload with RELOADING=1/READY=1, and
// STOPPING=1 with a nil error on cancel.
func TestRunNotifyHangup(t *testing.T) {
	dir := shortDir(t)
	allow := writeFile(t, dir, "hosts.allow", "")
	deny := writeFile(t, dir, "hosts.deny", "")
	ns := listenNotify(t, dir)
	sock := filepath.Join(dir, "login", "ext", "access")
	hup := make(chan os.Signal, 1)
	log := &logBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{
			Listen: sock, AllowFile: allow, DenyFile: deny, ReloadInterval: -1, Hangup: hup,
			Env: testEnv(), Logger: newLogger(log), Notifier: &sdnotify.Notifier{Addr: ns.path},
		})
	}()
	ns.expect(t, "READY=1\nSTATUS=")
	st, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode() != os.ModeSocket|0o600 {
		t.Errorf("socket mode = %v, want %v", st.Mode(), os.ModeSocket|0o600)
	}
	if got, _ := askAccess(t, sock, "imap", "127.0.0.2"); got != "1\n" {
		t.Errorf("reply before reload = %q, want %q", got, "1\n")
	}

	writeFile(t, dir, "hosts.deny", "ALL: 127.0.0.2\n")
	hup <- syscall.SIGHUP
	ns.expect(t, "RELOADING=1\nMONOTONIC_USEC=")
	ns.expect(t, "READY=1")
	if count(log.String(), `msg="rules loaded"`, "reason=SIGHUP", "generation=2") != 1 {
		t.Errorf("no reload log line:\n%s", log)
	}
	if engineWorks() {
		if got, _ := askAccess(t, sock, "imap", "127.0.0.2"); got != "0\n" {
			t.Errorf("reply after reload = %q, want %q", got, "0\n")
		}
	}

	cancel()
	ns.expect(t, "STOPPING=1")
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind: %v", err)
	}
}

// TestRunPollReload checks that a changed file is picked up by polling.
func TestRunPollReload(t *testing.T) {
	dir := shortDir(t)
	allow := writeFile(t, dir, "hosts.allow", "")
	deny := writeFile(t, dir, "hosts.deny", "")
	sock := filepath.Join(dir, "access")
	log := &logBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Listen: sock, AllowFile: allow, DenyFile: deny,
			ReloadInterval: 20 * time.Millisecond, Env: testEnv(), Logger: newLogger(log)})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	})
	waitFor(t, "listening", func() bool { return count(log.String(), "msg=listening") == 1 })
	writeFile(t, dir, "hosts.deny", "ALL: 127.0.0.2\n")
	waitFor(t, "reload", func() bool { return count(log.String(), `msg="rules loaded"`, "reason=changed") == 1 })
	time.Sleep(100 * time.Millisecond)
	if n := count(log.String(), `msg="rules loaded"`); n != 2 {
		t.Errorf("%d loads, want 2 (no reload without change):\n%s", n, log)
	}
}

// TestRunNoListener checks the error without listener or path.
func TestRunNoListener(t *testing.T) {
	if err := Run(context.Background(), Config{}); !errors.Is(err, ErrNoListener) {
		t.Errorf("Run = %v, want ErrNoListener", err)
	}
}
