package accessd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpwrapd/tcpwrapd/pkg/accessd/dovecotsock"
)

// A test binary started with ACCESSD_TEST_CHILD=server runs childServer
// instead of the tests (os/exec helperCommand style). It is dispatched
// from init so that TestMain need not know it.
func init() {
	if os.Getenv("ACCESSD_TEST_CHILD") == "server" {
		os.Exit(childServer())
	}
}

// childServer serves ACCESSD_TEST_SOCK with a Server logging at debug level
// to stderr, under an open-file limit of ACCESSD_TEST_NOFILE. With
// ACCESSD_TEST_FILL=1 it then fills its descriptor table but for one slot:
// room to accept a connection, none for the descriptor its request brings.
// It logs "child ready" when it is about to serve, and stops on SIGTERM.
func childServer() int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	rules := NewRules(os.Getenv("ACCESSD_TEST_ALLOW"), os.Getenv("ACCESSD_TEST_DENY"), log)
	ln, err := Listen(os.Getenv("ACCESSD_TEST_SOCK"), 0o600, -1, -1)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if n, _ := strconv.ParseUint(os.Getenv("ACCESSD_TEST_NOFILE"), 10, 64); n > 0 {
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: n, Max: n}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	var filler []int
	if os.Getenv("ACCESSD_TEST_FILL") == "1" {
		for {
			fd, err := unix.FcntlInt(2, unix.F_DUPFD_CLOEXEC, 0)
			if err != nil {
				break
			}
			filler = append(filler, fd)
		}
		unix.Close(filler[len(filler)-1])
		filler = filler[:len(filler)-1]
	}
	srv := &server{Rules: rules, Env: testEnv(), Logger: log, ReadTimeout: time.Minute}
	log.Info("child ready", "filler", len(filler))
	if err := srv.Run(ctx, ln); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for _, fd := range filler {
		unix.Close(fd)
	}
	return 0
}

// startChildServer runs childServer with the given rules and environment
// and waits until it serves. It is stopped with SIGTERM at the end of the
// test and must exit 0.
func startChildServer(t *testing.T, allow, deny string, env ...string) (sock string, log *logBuffer) {
	t.Helper()
	dir := shortDir(t)
	sock = filepath.Join(dir, "s", "access")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "ACCESSD_TEST_CHILD=server", "ACCESSD_TEST_SOCK="+sock,
		"ACCESSD_TEST_ALLOW="+writeFile(t, dir, "hosts.allow", allow),
		"ACCESSD_TEST_DENY="+writeFile(t, dir, "hosts.deny", deny))
	cmd.Env = append(cmd.Env, env...)
	log = startChild(t, cmd)
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		if err := waitExit(t, cmd); err != nil {
			t.Errorf("child server: %v", err)
		}
	})
	waitFor(t, "child server ready", func() bool { return strings.Contains(log.String(), "child ready") })
	return sock, log
}

// TestDescriptorTableFull: when tcpwrapd's descriptor table is full, the
// kernel cannot pass it the client's socket (MSG_CTRUNC). Without a client
// address a deny-list policy matched nothing and granted a banned client;
// now the request is refused and the log names MSG_CTRUNC.
func TestDescriptorTableFull(t *testing.T) {
	requireEngine(t)
	sock, log := startChildServer(t, "", "ALL: 127.0.0.2\n", "ACCESSD_TEST_NOFILE=64", "ACCESSD_TEST_FILL=1")
	got, p := askAccess(t, sock, "imap", "127.0.0.2")
	if got != "0\n" {
		t.Errorf("banned client with a full descriptor table: reply %q, want %q", got, "0\n")
	}
	expectEOF(t, p)
	waitFor(t, "log of MSG_CTRUNC", func() bool {
		return count(log.String(), "level=ERROR", "MSG_CTRUNC", "daemon=imap") == 1
	})
}

// TestAcceptEMFILEEvicts: with the descriptor table full of connections
// that send nothing, accept fails with EMFILE and nothing used to free a
// slot until their read timeouts (here a minute); a real check waited.
// Now the connections silent longest are closed, as at MaxConns, and the
// check is answered, with its descriptor received, while the rest of the
// silent connections are still open.
func TestAcceptEMFILEEvicts(t *testing.T) {
	requireEngine(t)
	sock, log := startChildServer(t, "", "ALL: 127.0.0.2\n", "ACCESSD_TEST_NOFILE=64")
	var idle []*net.UnixConn
	for range 80 { // more than fit in 64 descriptors: the rest wait in the backlog
		idle = append(idle, dialAccess(t, sock))
	}
	waitFor(t, "accept to fail with EMFILE", func() bool { return strings.Contains(log.String(), "too many open files") })

	p := dialLoopback(t, "127.0.0.1")
	f := fileOf(t, p.accepted)
	c := dialAccess(t, sock)
	start := time.Now()
	sendRequest(t, c, []byte("imap\n"), int(f.Fd()))
	f.Close()
	c.SetReadDeadline(start.Add(10 * time.Second))
	buf := make([]byte, 3)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("check not answered within 10 s while the descriptor table was full of silent connections: %v", err)
	}
	t.Logf("check answered after %v", time.Since(start).Round(time.Millisecond))
	if got := string(buf[:n]); got != "1\n" {
		t.Errorf("check with the table full of silent connections: reply %q, want %q", got, "1\n")
	}
	expectEOF(t, p)
	// The last silent connection was accepted last: it is still open.
	last := idle[len(idle)-1]
	last.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := last.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("newest silent connection: read %v, want it still open", err)
	}
	evicted := count(log.String(), "descriptor limit reached", "closed the connection that waited longest")
	t.Logf("%d of %d silent connections closed", evicted, len(idle))
	if evicted == 0 {
		t.Error("no eviction logged")
	}
	if n := count(log.String(), "MSG_CTRUNC"); n != 0 {
		t.Errorf("%d requests lost their descriptor", n)
	}
}

// TestRefusedDescriptors: a request is checked only with exactly one
// connected TCP socket; anything else is refused (even where the rules
// grant everyone, as here), logged as what it is, counted, and every
// descriptor received is closed. libwrap checks such requests as an
// "unknown" client.
func TestRefusedDescriptors(t *testing.T) {
	stats := NewStats()
	ts := startServer(t, "", "", func(s *server) { s.Stats = stats })
	tests := []struct {
		name string
		fds  func(t *testing.T) (fds []int, closed func(t *testing.T))
		log  []string
		kind string
	}{
		{name: "no fd", fds: func(t *testing.T) ([]int, func(*testing.T)) { return nil, nil },
			log: []string{"level=WARN", `msg="request carried no descriptor, refused"`}, kind: dovecotsock.ErrKindNoFD},
		{name: "two fds", fds: tcpFDs(2),
			log: []string{"level=WARN", `msg="request carried more than one descriptor, refused"`, "fds=2"}, kind: dovecotsock.ErrKindManyFDs},
		{name: "three fds", fds: tcpFDs(3), // the control buffer holds two
			log: []string{"level=ERROR", "MSG_CTRUNC", "fds=2"}, kind: dovecotsock.ErrKindFDTruncated},
		{name: "pipe", fds: pipeFD,
			log: []string{`msg="descriptor is not a socket, refused"`, "file_type=fifo"}, kind: dovecotsock.ErrKindNotSocket},
		{name: "regular file", fds: fileFD,
			log: []string{`msg="descriptor is not a socket, refused"`, `file_type="regular file"`}, kind: dovecotsock.ErrKindNotSocket},
		{name: "AF_UNIX", fds: unixFD,
			log: []string{`msg="descriptor is not a TCP socket, refused"`, "socket=unix/stream/0"}, kind: dovecotsock.ErrKindNotTCP},
		{name: "UDP", fds: udpFD,
			log: []string{`msg="descriptor is not a TCP socket, refused"`, "socket=inet/dgram/udp"}, kind: dovecotsock.ErrKindNotTCP},
		{name: "TCP listener", fds: listenerFD,
			log: []string{`msg="TCP socket is not connected, refused"`, "server_addr=127.0.0.1:"}, kind: dovecotsock.ErrKindNotConnected},
		{name: "TCP never connected", fds: unconnectedFD,
			log: []string{`msg="TCP socket is not connected, refused"`, "server_addr=[::]:0"}, kind: dovecotsock.ErrKindNotConnected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fds, closed := tt.fds(t)
			before := stats.Snapshot().Errors[tt.kind]
			c := dialAccess(t, ts.sock)
			sendRequest(t, c, []byte("imap\n"), fds...)
			for _, fd := range fds {
				unix.Close(fd)
			}
			if got := readReply(t, c); got != "0\n" {
				t.Errorf("reply %q, want %q", got, "0\n")
			}
			if closed != nil {
				closed(t)
			}
			waitFor(t, "log line", func() bool { return count(ts.log.String(), append(tt.log, "daemon=imap", "peer_pid=")...) == 1 })
			if n := stats.Snapshot().Errors[tt.kind] - before; n != 1 {
				t.Errorf("stats errors[%s] grew by %d, want 1", tt.kind, n)
			}
		})
	}
	t.Run("still serving", func(t *testing.T) {
		if got, _ := askAccess(t, ts.sock, "imap", "127.0.0.1"); got != "1\n" {
			t.Errorf("reply %q, want %q", got, "1\n")
		}
	})
}

// dupFD returns a new close-on-exec descriptor for the file of c, without
// changing its flags (as os.File.Fd would).
func dupFD(t *testing.T, c syscall.Conn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	d := -1
	rc.Control(func(fd uintptr) { d, err = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) })
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// tcpFDs passes the accepted sockets of n loopback connections; each
// client must see EOF afterwards.
func tcpFDs(n int) func(t *testing.T) ([]int, func(*testing.T)) {
	return func(t *testing.T) ([]int, func(*testing.T)) {
		var fds []int
		var pairs []tcpPair
		for range n {
			p := dialLoopback(t, "127.0.0.1")
			pairs = append(pairs, p)
			fds = append(fds, dupFD(t, p.accepted))
		}
		return fds, func(t *testing.T) {
			for _, p := range pairs {
				expectEOF(t, p)
			}
		}
	}
}

// pipeFD passes a pipe's write end: the read end sees EOF once the server
// closed it too.
func pipeFD(t *testing.T) ([]int, func(*testing.T)) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return []int{dupFD(t, w)}, func(t *testing.T) {
		w.Close()
		expectFileEOF(t, r)
	}
}

// fileFD passes a regular file.
func fileFD(t *testing.T) ([]int, func(*testing.T)) {
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return []int{dupFD(t, f)}, nil
}

// unixFD passes one end of an AF_UNIX stream pair: the other end sees EOF
// once the server closed it.
func unixFD(t *testing.T) ([]int, func(*testing.T)) {
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	other := os.NewFile(uintptr(pair[1]), "pair")
	t.Cleanup(func() { other.Close() })
	return []int{pair[0]}, func(t *testing.T) { expectFileEOF(t, other) }
}

// udpFD passes a connected UDP socket.
func udpFD(t *testing.T) ([]int, func(*testing.T)) {
	c, err := net.Dial("udp4", "127.0.0.1:9")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return []int{dupFD(t, c.(*net.UDPConn))}, nil
}

// listenerFD passes a listening TCP socket: no peer.
func listenerFD(t *testing.T) ([]int, func(*testing.T)) {
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return []int{dupFD(t, ln)}, nil
}

// unconnectedFD passes a TCP socket that was never bound or connected.
func unconnectedFD(t *testing.T) ([]int, func(*testing.T)) {
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	return []int{fd}, nil
}

// expectFileEOF checks that f reads end of file within 5 s: nobody holds
// the other end any more.
func expectFileEOF(t *testing.T, f *os.File) {
	t.Helper()
	f.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := f.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		t.Errorf("read n=%d err=%v, want EOF (the server still holds the descriptor?)", n, err)
	}
}
