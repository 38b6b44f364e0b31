package master

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/master/worker"
)

// buildLoginsvc builds cmd/loginsvc (as packaged: CGO_ENABLED=0, with
// deploy/build-packages.sh's flags) into a temporary directory; flags
// replace those.
func buildLoginsvc(t *testing.T, flags ...string) string {
	t.Helper()
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		goBin = "go"
	}
	if flags == nil {
		flags = packagedFlags
	}
	bin := filepath.Join(t.TempDir(), "loginsvc")
	args := append(append([]string{"build"}, flags...), "-o", bin, "github.com/tcpwrapd/tcpwrapd/cmd/loginsvc")
	cmd := exec.Command(goBin, args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/loginsvc: %v\n%s", err, out)
	}
	return bin
}

// realLoginsvc is the real loginsvc binary (buildLoginsvc), not yet
// started, to run in the foreground with a NOTIFY_SOCKET and the
// configuration file conf (which the test writes) in a directory of its
// own; port is free for its listener.
type realLoginsvc struct {
	dir, conf string
	port      int
	cmd       *exec.Cmd
	notify    *notifyListener
	logs      *syncBuf // its stderr
}

// newRealLoginsvc builds loginsvc and prepares its command; it skips the
// test unless it runs as root.
func newRealLoginsvc(t *testing.T) *realLoginsvc {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (login processes chroot and drop to dovenull)")
	}
	bin := buildLoginsvc(t)
	dir := t.TempDir()
	r := &realLoginsvc{dir: dir, conf: filepath.Join(dir, "loginsvc.conf"), port: freePort(t), logs: new(syncBuf)}
	r.notify = listenNotify(t, filepath.Join(dir, "notify.sock"))
	r.cmd = exec.Command(bin, "-F", "-c", r.conf)
	r.cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+filepath.Join(dir, "notify.sock"))
	r.cmd.Stderr = r.logs
	r.cmd.WaitDelay = 5 * time.Second
	return r
}

// notifyListener is a NOTIFY_SOCKET: it collects sd_notify datagrams.
type notifyListener struct {
	c   *net.UnixConn
	got chan string
}

func listenNotify(t *testing.T, path string) *notifyListener {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	n := &notifyListener{c: c, got: make(chan string, 16)}
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := c.Read(buf)
			if err != nil {
				close(n.got)
				return
			}
			n.got <- string(buf[:k])
		}
	}()
	t.Cleanup(func() { c.Close() })
	return n
}

// expect waits up to 10 s for the next datagram and checks it.
func (n *notifyListener) expect(t *testing.T, want string) {
	t.Helper()
	select {
	case got := <-n.got:
		// RELOADING=1 carries MONOTONIC_USEC (internal/sdnotify).
		if got != want && !strings.HasPrefix(got, want+"\nMONOTONIC_USEC=") {
			t.Errorf("sd_notify %q, want %q", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("no sd_notify %q", want)
	}
}

func greetingOf(t *testing.T, port int) (string, *tclient) {
	t.Helper()
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 5*time.Second)
	if err != nil {
		return "", nil
	}
	t.Cleanup(func() { c.Close() })
	tc := &tclient{t: t, c: c, r: bufio.NewReader(c)}
	return tc.line(), tc
}

// TestRealSignals runs the real loginsvc binary in the foreground with a
// NOTIFY_SOCKET: READY=1 at start; SIGHUP with a changed configuration
// sends RELOADING=1 then READY=1 and new clients get the new greeting;
// SIGTERM sends STOPPING=1, every pre-login client gets "* BYE Shutting
// down" and loginsvc exits 0.
func TestRealSignals(t *testing.T) {
	r := newRealLoginsvc(t)
	dir, port, conf, notify, logs, cmd := r.dir, r.port, r.conf, r.notify, r.logs, r.cmd
	write := func(greeting string) {
		text := fmt.Sprintf("base_dir = %s\nprotocols = imap\nlisten = 127.0.0.1\nshutdown_clients = no\nlogin_greeting = %s\n"+
			"service imap-login {\n inet_listener imap {\n  port = %d\n }\n service_count = 0\n process_min_avail = 1\n}\n",
			filepath.Join(dir, "run"), greeting, port)
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("first.")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	gone := make(chan struct{})
	go func() { exited <- cmd.Wait(); close(gone) }()
	t.Cleanup(func() {
		select {
		case <-gone:
		default:
			cmd.Process.Kill()
			<-gone
		}
		if t.Failed() {
			t.Logf("loginsvc log:\n%s", logs.String())
		}
	})
	notify.expect(t, "READY=1")
	// It executed itself with SysmonNoDeepSleep, keeping its pid and its
	// process name.
	if env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", cmd.Process.Pid)); err != nil ||
		!slices.Contains(strings.Split(string(env), "\x00"), worker.SysmonNoDeepSleep) {
		t.Errorf("loginsvc (pid %d) runs without %s (%v)", cmd.Process.Pid, worker.SysmonNoDeepSleep, err)
	}
	if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", cmd.Process.Pid)); string(comm) != "loginsvc\n" {
		t.Errorf("loginsvc (pid %d) runs as %q (%v), want loginsvc", cmd.Process.Pid, comm, err)
	}
	g, old := greetingOf(t, port)
	if !strings.HasSuffix(g, "] first.") {
		t.Fatalf("greeting %q", g)
	}

	write("second.")
	cmd.Process.Signal(syscall.SIGHUP)
	notify.expect(t, "RELOADING=1")
	notify.expect(t, "READY=1")
	// READY=1 after a reload means the old generation accepts no more.
	g, cur := greetingOf(t, port)
	if !strings.HasSuffix(g, "] second.") {
		t.Fatalf("after SIGHUP greeting %q", g)
	}
	if r := old.cmd("n NOOP"); r != "n OK NOOP completed." { // shutdown_clients = no: kept
		t.Errorf("client of the old generation: %q", r)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	notify.expect(t, "STOPPING=1")
	for name, c := range map[string]*tclient{"old generation": old, "new generation": cur} {
		if got := c.line(); got != "* BYE Shutting down" {
			t.Errorf("%s client got %q", name, got)
		}
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("loginsvc exit: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("loginsvc did not exit after SIGTERM")
	}
	if !strings.Contains(logs.String(), "configuration reloaded") {
		t.Errorf("no reload line in the log")
	}
}
