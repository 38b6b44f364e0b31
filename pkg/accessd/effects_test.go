package accessd

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
	"github.com/tcpwrapd/tcpwrapd/pkg/ident"
	"github.com/tcpwrapd/tcpwrapd/pkg/wrapopts"
)

// evilResolver names 127.0.0.9 with a hostile, but double-reverse
// consistent, name.
type evilResolver struct{ name string }

func (r evilResolver) LookupAddr(ctx context.Context, a netip.Addr) (string, error) {
	if a == netip.MustParseAddr("127.0.0.9") {
		return r.name, nil
	}
	return "", errors.New("no PTR")
}

func (r evilResolver) LookupHost(ctx context.Context, network, name string) (string, []netip.Addr, error) {
	if name == r.name {
		return name, []netip.Addr{netip.MustParseAddr("127.0.0.9")}, nil
	}
	return "", nil, errors.New("no such host")
}

// startLive starts a test server whose options act (ClientEffects with a
// Runner of its own, waited for at the end of the test).
func startLive(t *testing.T, allow, deny string, env *hostsrules.Env) (*testServer, *wrapopts.Runner) {
	t.Helper()
	r := &wrapopts.Runner{}
	if env == nil {
		env = testEnv()
	}
	env.Effects = &ClientEffects{Runner: r}
	ts := startServer(t, allow, deny, func(s *server) { s.Env = env })
	t.Cleanup(r.Wait)
	return ts, r
}

// askLive does what a Dovecot login does, passing the accepted socket's
// own descriptor (non-blocking, as Dovecot's is) rather than a dup made
// blocking by os.File.Fd. It returns the reply.
func askLive(t *testing.T, sock, name string, p tcpPair) string {
	t.Helper()
	rc, err := p.accepted.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	c := dialAccess(t, sock)
	rc.Control(func(fd uintptr) { sendRequest(t, c, []byte(name+"\n"), int(fd)) })
	r := readReply(t, c)
	c.Close()
	return r
}

// clientGot closes the login's end and returns everything the client
// received until EOF.
func clientGot(t *testing.T, p tcpPair) string {
	t.Helper()
	p.accepted.Close()
	p.client.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(p.client)
	if err != nil {
		t.Fatalf("client read: %v", err)
	}
	return string(b)
}

func TestLiveTwist(t *testing.T) {
	requireEngine(t)
	ts, r := startLive(t, "imap: ALL: twist echo twisted %a %d\n", "", nil)
	p := dialLoopback(t, "127.0.0.1")
	if got := askLive(t, ts.sock, "imap", p); got != "" {
		t.Errorf("reply %q, want none (closed)", got)
	}
	flags, err := unix.FcntlInt(uintptr(fdOf(t, p.accepted)), unix.F_GETFL, 0)
	if err != nil || flags&unix.O_NONBLOCK == 0 {
		t.Errorf("login's socket flags %#x, %v: O_NONBLOCK cleared", flags, err)
	}
	r.Wait()
	if got := clientGot(t, p); got != "twisted 127.0.0.1 imap\n" {
		t.Errorf("client got %q", got)
	}
	if count(ts.log.String(), "access delegated to twist") != 1 {
		t.Errorf("no delegation logged:\n%s", ts.log)
	}
}

// fdOf returns c's descriptor without changing its flags.
func fdOf(t *testing.T, c *net.TCPConn) int {
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd := -1
	rc.Control(func(f uintptr) { fd = int(f) })
	return fd
}

func TestLiveBannerBeforeVerdict(t *testing.T) {
	requireEngine(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "imap"), []byte("Hello %a from %d\n"), 0o644)
	ts, _ := startLive(t, "imap: ALL: banners "+dir+": allow\n", "ALL: ALL\n", nil)
	p := dialLoopback(t, "127.0.0.1")
	if got := askLive(t, ts.sock, "imap", p); got != "1\n" {
		t.Errorf("reply %q, want 1", got)
	}
	// The banner was sent before the reply: it is there already.
	p.client.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	buf := make([]byte, 100)
	n, _ := p.client.Read(buf)
	if got := string(buf[:n]); got != "Hello 127.0.0.1 from imap\r\n" {
		t.Errorf("client got %q before the verdict", got)
	}
}

func TestLiveSeverity(t *testing.T) {
	requireEngine(t)
	ts, _ := startLive(t, "imap: ALL: severity local0.notice: deny\npop3: ALL: severity crit\n", "", nil)
	for _, d := range []string{"imap", "pop3", "sieve"} {
		askLive(t, ts.sock, d, dialLoopback(t, "127.0.0.1"))
	}
	log := ts.log.String()
	for _, want := range [][]string{
		{"level=INFO+2", `msg="access refused"`, "daemon=imap", "severity=local0.notice"},
		{"level=ERROR+2", `msg="access granted"`, "daemon=pop3", "severity=crit"},
		{"level=DEBUG", `msg="access granted"`, "daemon=sieve"},
	} {
		if count(log, want...) != 1 {
			t.Errorf("no log line with %q:\n%s", want, log)
		}
	}
	if count(log, "daemon=sieve", "severity=") != 0 {
		t.Errorf("severity leaked into a later check:\n%s", log)
	}
}

func TestLiveSpawnSanitised(t *testing.T) {
	requireEngine(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	env := testEnv()
	env.Resolver = evilResolver{name: "a;rm -rf /.example.com"}
	ts, r := startLive(t, "imap: ALL: spawn echo %n > "+out+"\n", "", env)
	if got := askLive(t, ts.sock, "imap", dialLoopback(t, "127.0.0.9")); got != "1\n" {
		t.Errorf("reply %q", got)
	}
	r.Wait()
	b, err := os.ReadFile(out)
	if err != nil || string(b) != "a_rm_-rf_/.example.com\n" {
		t.Errorf("spawn wrote %q, %v", b, err)
	}
}

func TestLiveACLExec(t *testing.T) {
	requireEngine(t)
	ts, _ := startLive(t, "imap: ALL: aclexec test %a = 127.0.0.2\n", "ALL: ALL\n", nil)
	for ip, want := range map[string]string{"127.0.0.1": "0\n", "127.0.0.2": "1\n"} {
		if got := askLive(t, ts.sock, "imap", dialLoopback(t, ip)); got != want {
			t.Errorf("%s: reply %q, want %q", ip, got, want)
		}
	}
}

// TestLiveIdent runs ident lookups against an identd on 127.0.0.1:113, the
// real port, as a live tcpwrapd makes them. Skipped when the port cannot
// be bound.
func TestLiveIdent(t *testing.T) {
	requireEngine(t)
	ln, err := net.Listen("tcp4", "127.0.0.1:113")
	if err != nil {
		t.Skipf("cannot listen on 127.0.0.1:113: %v", err)
	}
	silent := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				q, _ := bufio.NewReader(c).ReadString('\n')
				select {
				case <-silent:
					c.SetReadDeadline(time.Now().Add(5 * time.Second))
					c.Read(make([]byte, 1))
				default:
					c.Write([]byte(strings.TrimSpace(q) + " : USERID : UNIX : root\r\n"))
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })

	env := testEnv()
	env.Ident = ident.Lookup
	ts, _ := startLive(t, "imap: ALL: rfc931 1: severity notice\n", "pop3: root@ALL\n", env)
	if got := askLive(t, ts.sock, "pop3", dialLoopback(t, "127.0.0.1")); got != "0\n" {
		t.Errorf("pop3 from root: reply %q, want 0", got)
	}
	if count(ts.log.String(), "access refused", "daemon=pop3") != 1 {
		t.Errorf("refusal not logged:\n%s", ts.log)
	}
	close(silent)
	start := time.Now()
	if got := askLive(t, ts.sock, "imap", dialLoopback(t, "127.0.0.1")); got != "1\n" {
		t.Errorf("imap: reply %q, want 1", got)
	}
	if took := time.Since(start); took < 950*time.Millisecond || took > 3*time.Second {
		t.Errorf("rfc931 1 against a silent identd took %v, want about 1s", took)
	}
}

func TestDefaultEnvActs(t *testing.T) {
	env := DefaultEnv()
	if env.Ident == nil {
		t.Error("DefaultEnv makes no ident lookups")
	}
	if _, ok := env.Effects.(*ClientEffects); !ok {
		t.Errorf("DefaultEnv Effects = %T, want *ClientEffects", env.Effects)
	}
}
