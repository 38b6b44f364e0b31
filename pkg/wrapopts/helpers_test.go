package wrapopts

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
)

// conn is a loopback TCP connection as a Dovecot login has it: client is
// the remote client's end, accepted the login's accepted socket, and fd
// that socket's descriptor, non-blocking as Go (and Dovecot) leave it.
type conn struct {
	client, accepted *net.TCPConn
	fd               int
}

// dial connects from clientIP to a fresh listener on 127.0.0.1.
func dial(t *testing.T, clientIP string) *conn {
	t.Helper()
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(clientIP)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a, err := ln.AcceptTCP()
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	a.SetKeepAlive(false) // Go enables it on accepted connections
	p := &conn{client: c.(*net.TCPConn), accepted: a, fd: -1}
	rc, err := a.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	rc.Control(func(fd uintptr) { p.fd = int(fd) })
	t.Cleanup(func() { p.client.Close(); p.accepted.Close() })
	return p
}

// endpoints returns the request endpoints of c, as getpeername and
// getsockname of the accepted socket give them.
func (c *conn) endpoints() (client, server hostsrules.Endpoint) {
	return hostsrules.Endpoint{Addr: c.accepted.RemoteAddr().(*net.TCPAddr).AddrPort()},
		hostsrules.Endpoint{Addr: c.accepted.LocalAddr().(*net.TCPAddr).AddrPort()}
}

// readAll closes the accepted end (as the service does after the check)
// and reads what the client received until EOF.
func (c *conn) readAll(t *testing.T) string {
	t.Helper()
	c.accepted.Close()
	c.client.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c.client)
	if err != nil {
		t.Fatalf("client read: %v (got %q)", err, b)
	}
	return string(b)
}

// logBuffer collects log output from many goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// checker runs checks with a Runner of its own and a log buffer.
type checker struct {
	r   *Runner
	log *logBuffer
	env hostsrules.Env
}

// newChecker returns a checker whose Runner's background commands are
// waited for when the test ends.
func newChecker(t *testing.T, r *Runner) *checker {
	if r == nil {
		r = &Runner{}
	}
	t.Cleanup(r.Wait)
	ck := &checker{r: r, log: &logBuffer{}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", ck.log)
		}
	})
	return ck
}

// check decides a request from c for daemon against allow and deny with a
// Service bound to c's socket.
func (ck *checker) check(t *testing.T, c *conn, daemon, allow, deny string) (hostsrules.Decision, *Service) {
	t.Helper()
	p := hostsrules.Compile(hostsrules.Source{Name: "hosts.allow", Data: []byte(allow)},
		hostsrules.Source{Name: "hosts.deny", Data: []byte(deny)})
	log := slog.New(slog.NewTextHandler(ck.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	fd := -1
	req := &hostsrules.Request{Daemon: daemon}
	if c != nil {
		fd = c.fd
		req.Client, req.Server = c.endpoints()
	}
	svc := ck.r.Service(fd, log)
	env := ck.env
	env.Effects = svc
	env.Logf = func(format string, args ...any) { log.Warn("libwrap: " + fmt.Sprintf(format, args...)) }
	d := p.Check(context.Background(), req, &env)
	return d, svc
}

// staticResolver answers every reverse lookup with name and its forward
// lookup with addr, so the name passes the double-reverse check.
type staticResolver struct {
	name string
	addr netip.Addr
}

func (r staticResolver) LookupAddr(ctx context.Context, a netip.Addr) (string, error) {
	if a != r.addr {
		return "", errors.New("no PTR")
	}
	return r.name, nil
}

func (r staticResolver) LookupHost(ctx context.Context, network, name string) (string, []netip.Addr, error) {
	if name != r.name {
		return "", nil, errors.New("no such host")
	}
	return name, []netip.Addr{r.addr}, nil
}

// openDir returns a new directory that any user may write to (for
// commands run as nobody); it is removed at the end of the test.
func openDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "wrapopts")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(d, 0o777)
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// readFile returns the contents of dir/name, or "<missing>".
func readFile(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if errors.Is(err, os.ErrNotExist) {
		return "<missing>"
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
