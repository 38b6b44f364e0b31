package dovecotlab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// helperEnv makes the test binary act as a socket-activated access
// service instead of running tests (os/exec's helperCommand pattern).
const helperEnv = "DOVECOTLAB_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "access" {
		os.Exit(accessHelper())
	}
	os.Exit(m.Run())
}

// accessHelper serves the systemd-activated socket on fd 3, refusing
// 127.0.0.2, until SIGTERM.
func accessHelper() int {
	if os.Getenv("LISTEN_PID") != strconv.Itoa(os.Getpid()) || os.Getenv("LISTEN_FDS") != "1" {
		fmt.Fprintf(os.Stderr, "helper: bad activation env LISTEN_PID=%q LISTEN_FDS=%q\n", os.Getenv("LISTEN_PID"), os.Getenv("LISTEN_FDS"))
		return 3
	}
	syscall.CloseOnExec(3)
	ln, err := net.FileListener(os.NewFile(3, "activated"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 3
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	deny := netip.MustParseAddr("127.0.0.2")
	err = ServeAccess(ctx, ln.(*net.UnixListener), func(r AccessRequest) bool { return r.Peer.Addr() != deny })
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	return 0
}

// TestSocketActivated runs an access service under systemd-socket-activate
// in base_dir/login/tcpwrapd/, as the e2e tests run tcpwrapd, and shows
// why the socket's permissions must be fixed after activation creates it.
func TestSocketActivated(t *testing.T) {
	SkipIfUnavailable(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	d := New(t, Config{})
	dir, err := d.ExternalSocketDir("tcpwrapd")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "access")
	p, err := StartSocketActivated(t, SocketActivation{
		Socket: sock,
		Env:    []string{helperEnv + "=access"},
		Argv:   []string{exe},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Launch(); err != nil {
		t.Fatal(err)
	}
	mark := d.LogMark()
	probeAll(t, d, []probeCase{
		{"imap", "127.0.0.1", Allowed},
		{"imap", "127.0.0.2", Refused},
		{"pop3", "127.0.0.1", Allowed},
	})
	waitLog(t, d, mark, RefusedLine("imap", DefaultAccessSocket, "127.0.0.2"))

	// What systemd-socket-activate leaves behind as root with umask 022:
	// root:root 0644. The login (dovenull) cannot connect and fails
	// closed, with no "Client refused" line.
	if err := (SocketPerm{User: "root", Group: "root", Mode: 0o644}).apply(sock); err != nil {
		t.Fatal(err)
	}
	mark = d.LogMark()
	probeAll(t, d, []probeCase{{"imap", "127.0.0.1", Refused}})
	waitLog(t, d, mark, "imap-login: Error: connect(tcpwrapd/access) failed: Permission denied")

	if err := p.Stop(); err != nil {
		t.Errorf("stop helper: %v", err)
	}
	if _, err := p.Exited(); err != nil {
		t.Errorf("helper exit: %v\n%s", err, p.Output())
	}
}
