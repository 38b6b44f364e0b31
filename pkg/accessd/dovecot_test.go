package accessd

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpwrapd/tcpwrapd/pkg/dovecot/service"
)

// statusReader reads 12-byte status messages from the read end of the
// status pipe.
type statusReader struct {
	t *testing.T
	f *os.File
}

func (r statusReader) next() (pid int32, gen, avail uint32) {
	r.t.Helper()
	var b [12]byte
	r.f.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(r.f, b[:]); err != nil {
		r.t.Fatalf("reading status: %v", err)
	}
	return int32(binary.NativeEndian.Uint32(b[0:])), binary.NativeEndian.Uint32(b[4:]), binary.NativeEndian.Uint32(b[8:])
}

// dovecotFixture is a DovecotService on pipes and a listener of the test,
// as a Dovecot master would set it up.
type dovecotFixture struct {
	svc        *service.Service
	sock       string
	status     statusReader
	deadRead   *os.File
	allow      string
	deny       string
	log        *logBuffer
	idle       chan struct{}
	cancel     context.CancelFunc
	done       chan error
	generation uint32
}

func startDovecotFixture(t *testing.T, clientLimit int, deny string) *dovecotFixture {
	t.Helper()
	dir := shortDir(t)
	fx := &dovecotFixture{sock: filepath.Join(dir, "tcpwrap"), log: &logBuffer{}, idle: make(chan struct{}), generation: 42}
	fx.allow = writeFile(t, dir, "hosts.allow", "")
	fx.deny = writeFile(t, dir, "hosts.deny", deny)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: fx.sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	lf, err := ln.File() // a dup, as the master's fd 7
	ln.Close()
	if err != nil {
		t.Fatal(err)
	}
	syscall.SetNonblock(int(lf.Fd()), true)
	sr, sw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	syscall.SetNonblock(int(sw.Fd()), true)
	dr, dw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sr.Close(); sw.Close(); dr.Close(); dw.Close() })
	fx.status, fx.deadRead = statusReader{t, sr}, dr
	env := service.Env{Generation: fx.generation, ClientLimit: clientLimit, SocketCount: 1, SetUID: -1, SetGID: -1}
	// service.New closes the listener fd it was given (after dup).
	lfd, _ := unix.Dup(int(lf.Fd()))
	lf.Close()
	fx.svc, err = service.New(env, int(sw.Fd()), int(dw.Fd()), lfd)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	fx.cancel = cancel
	fx.done = make(chan error, 1)
	go func() {
		fx.done <- RunDovecot(ctx, fx.svc, fx.idle, Config{
			AllowFile: fx.allow, DenyFile: fx.deny, Env: testEnv(),
			ReloadInterval: 50 * time.Millisecond, ReadTimeout: 5 * time.Second,
			Logger: newLogger(fx.log),
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-fx.done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return")
		}
		if t.Failed() {
			t.Logf("log:\n%s", fx.log)
		}
	})
	return fx
}

// expectStatus reads the next status message and checks it.
func (fx *dovecotFixture) expectStatus(t *testing.T, avail uint32) {
	t.Helper()
	pid, gen, got := fx.status.next()
	if pid != int32(os.Getpid()) || gen != fx.generation || got != avail {
		t.Fatalf("status {pid %d, gen %d, available %d}, want {%d, %d, %d}", pid, gen, got, os.Getpid(), fx.generation, avail)
	}
}

// TestDovecotServiceStatus checks the status protocol: available =
// CLIENT_LIMIT at start, minus one per connection in flight, never more
// than CLIENT_LIMIT connections at once, 0 after SIGINT, and the idle
// exit once the last check is done.
func TestDovecotServiceStatus(t *testing.T) {
	fx := startDovecotFixture(t, 2, "ALL: 127.0.0.2\n")
	fx.expectStatus(t, 2)

	dial := func() *net.UnixConn {
		c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: fx.sock, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	c1 := dial()
	fx.expectStatus(t, 1)
	c2 := dial()
	fx.expectStatus(t, 0)
	// A third connection waits in the backlog: CLIENT_LIMIT is 2.
	c3 := dial()
	time.Sleep(200 * time.Millisecond)
	pipeEmpty(t, fx.status.f)
	if r := checkOn(t, c3, "imap", "127.0.0.2", 200*time.Millisecond); r != "" {
		t.Fatalf("third connection answered %q beyond CLIENT_LIMIT", r)
	}
	// The first check completes: its slot goes to c3 at once.
	if r := checkOn(t, c1, "imap", "127.0.0.1", 5*time.Second); r != "1\n" {
		t.Fatalf("check 1: %q", r)
	}
	fx.expectStatus(t, 1)
	fx.expectStatus(t, 0)
	if r := replyWithin(t, c3, 5*time.Second); r != "0\n" {
		t.Fatalf("third connection, after a slot freed: %q, want refusal", r)
	}
	fx.expectStatus(t, 1)

	// SIGINT with c2 in flight: available 0 at once, Run waits for c2.
	close(fx.idle)
	fx.expectStatus(t, 0)
	select {
	case err := <-fx.done:
		t.Fatalf("Run returned (%v) with a check in flight", err)
	case <-time.After(300 * time.Millisecond):
	}
	if r := checkOn(t, c2, "pop3", "127.0.0.1", 5*time.Second); r != "1\n" {
		t.Fatalf("check 2 after SIGINT: %q", r)
	}
	select {
	case err := <-fx.done:
		fx.done <- err
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return once idle")
	}
	pipeEmpty(t, fx.status.f) // no "available" after the stop
	if !strings.Contains(fx.log.String(), "idle-kill request (SIGINT)") {
		t.Errorf("no idle-kill log line:\n%s", fx.log)
	}
}

// TestDovecotServiceMasterDead checks that closing the master's end of
// the fd 6 pipe ends Run.
func TestDovecotServiceMasterDead(t *testing.T) {
	fx := startDovecotFixture(t, 1, "")
	fx.expectStatus(t, 1)
	fx.deadRead.Close()
	select {
	case err := <-fx.done:
		fx.done <- err
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after the master died")
	}
	if !strings.Contains(fx.log.String(), "master process is gone") {
		t.Errorf("no master-gone log line:\n%s", fx.log)
	}
}

// pipeEmpty fails if a status message is pending.
func pipeEmpty(t *testing.T, f *os.File) {
	t.Helper()
	f.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	var b [12]byte
	if n, err := f.Read(b[:]); n > 0 {
		t.Fatalf("unexpected status message %x (%v)", b[:n], err)
	}
}

// checkOn sends name with a TCP socket from src on c and returns the
// reply read within timeout ("" if none).
func checkOn(t *testing.T, c *net.UnixConn, name, src string, timeout time.Duration) string {
	t.Helper()
	tl, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.ParseIP("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	cl, err := net.DialTCP("tcp", &net.TCPAddr{IP: net.ParseIP(src)}, tl.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	sc, err := tl.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	f, err := sc.File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, _, err := c.WriteMsgUnix([]byte(name+"\n"), syscall.UnixRights(int(f.Fd())), nil); err != nil {
		t.Fatal(err)
	}
	return replyWithin(t, c, timeout)
}

// replyWithin reads a reply of up to 3 bytes within timeout ("" if none).
func replyWithin(t *testing.T, c *net.UnixConn, timeout time.Duration) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(timeout))
	b := make([]byte, 3)
	n, _ := c.Read(b)
	return string(b[:n])
}
