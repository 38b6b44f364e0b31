package master

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tcpwrapd/tcpwrapd/internal/dovecotlab"
	"github.com/tcpwrapd/tcpwrapd/internal/testcert"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/config"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/control"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/imap"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/ipc"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login"
)

// testCert writes a fresh self-signed certificate for localhost and
// 127.0.0.1 and its key (mode 0600) into dir; it returns the paths and a
// pool trusting the certificate. Nothing of it outlives the test.
func testCert(t *testing.T, dir string) (certPath, keyPath string, pool *x509.CertPool) {
	return testcert.Write(t, dir)
}

// tlsLab starts a lab for svc with TLS on (ssl, ssl_cert, ssl_key from a
// test certificate) and an extra ssl = yes listener; it returns the lab,
// that listener's port and the client trust pool.
func tlsLab(t *testing.T, svc, global, conf string) (*lab, int, *x509.CertPool, string) {
	t.Helper()
	dir := t.TempDir()
	certPath, keyPath, pool := testCert(t, dir)
	sport := freePort(t)
	l := startLab(t, svc, fmt.Sprintf("ssl = yes\nssl_cert = <%s\nssl_key = <%s\n%s", certPath, keyPath, global),
		fmt.Sprintf("inet_listener %ss {\n port = %d\n ssl = yes\n}\n%s", strings.TrimSuffix(svc, "-login"), sport, conf))
	return l, sport, pool, keyPath
}

func tlsClientConfig(pool *x509.CertPool) *tls.Config {
	return &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
}

// dialTLS connects to port with implicit TLS from src ("" = any).
func dialTLS(t *testing.T, port int, src string, cfg *tls.Config) (*tclient, error) {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	c, err := (&tls.Dialer{NetDialer: d, Config: cfg}).Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	return &tclient{t: t, c: c, r: bufio.NewReader(c)}, nil
}

// upgrade runs the client side of STARTTLS/STLS on c.
func (c *tclient) upgrade(cfg *tls.Config) error {
	if c.r.Buffered() > 0 {
		return fmt.Errorf("%d bytes after the STARTTLS reply", c.r.Buffered())
	}
	tc := tls.Client(c.c, cfg)
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err != nil {
		return err
	}
	tc.SetDeadline(time.Time{})
	c.c, c.r = tc, bufio.NewReader(tc)
	return nil
}

func TestIMAPImplicitTLSAndSTARTTLS(t *testing.T) {
	l, sport, pool, _ := tlsLab(t, "imap-login", "", "service_count = 1")
	cfg := tlsClientConfig(pool)

	// imaps: the greeting comes over TLS, without STARTTLS.
	c, err := dialTLS(t, sport, "", cfg)
	if err != nil {
		t.Fatalf("imaps: %v", err)
	}
	// Secured, but no auth behind: no PLAIN, so LOGINDISABLED.
	if g := c.line(); g != "* OK [CAPABILITY "+imap.Capabilities+" LOGINDISABLED] loginsvc ready." {
		t.Errorf("imaps greeting %q", g)
	}
	if v := c.c.(*tls.Conn).ConnectionState().Version; v < tls.VersionTLS12 {
		t.Errorf("TLS version %x", v)
	}
	if r := c.cmd("b STARTTLS"); r != "b BAD TLS is already active." {
		t.Errorf("STARTTLS over TLS: %q", r)
	}
	if r := c.cmd("c NOOP"); r != "c OK NOOP completed." {
		t.Errorf("NOOP over TLS: %q", r)
	}

	// imap + STARTTLS; plaintext pipelined after STARTTLS is dropped.
	p := l.dial("")
	if g := p.line(); !strings.Contains(g, " LITERAL+ STARTTLS LOGINDISABLED] ") {
		t.Errorf("plain greeting %q lacks STARTTLS", g)
	}
	p.c.Write([]byte("a STARTTLS\r\nx NOOP\r\n"))
	if r := p.line(); r != "a OK Begin TLS negotiation now." {
		t.Fatalf("STARTTLS: %q", r)
	}
	if err := p.upgrade(cfg); err != nil {
		t.Fatalf("STARTTLS handshake: %v", err)
	}
	if r := p.cmd("b CAPABILITY"); r != "* CAPABILITY "+imap.Capabilities+" LOGINDISABLED" {
		t.Errorf("CAPABILITY after STARTTLS: %q", r)
	}
	if r := p.line(); !strings.HasPrefix(r, "b OK ") {
		t.Errorf("CAPABILITY: %q", r)
	}
	if r := p.cmd("c NOOP"); r != "c OK NOOP completed." {
		t.Errorf("NOOP after STARTTLS: %q (the pipelined plaintext must not run)", r)
	}
	if r := p.cmd("d LOGOUT"); r != "* BYE Logging out" {
		t.Errorf("LOGOUT: %q", r)
	}

	// ssl_min_protocol TLSv1.2 (the default) refuses TLS 1.1.
	old := cfg.Clone()
	old.MinVersion, old.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	if _, err := dialTLS(t, sport, "", old); err == nil {
		t.Error("a TLS 1.1 client was accepted")
	}
	l.waitFor("counters", func(s control.ServiceStatus) bool { return s.Counters.Accepted >= 3 })
}

func TestPOP3STLS(t *testing.T) {
	l, sport, pool, _ := tlsLab(t, "pop3-login", "", "service_count = 1")
	cfg := tlsClientConfig(pool)
	p := l.dial("")
	if g := p.line(); g != "+OK loginsvc ready." {
		t.Fatalf("greeting %q", g)
	}
	capa := func(c *tclient) string {
		var b strings.Builder
		for r := c.cmd("CAPA"); r != "." && r != "EOF"; r = c.line() {
			b.WriteString(r + " ")
		}
		return b.String()
	}
	if got := capa(p); !strings.Contains(got, "AUTH-RESP-CODE STLS ") {
		t.Errorf("CAPA without STLS: %q", got)
	}
	if r := p.cmd("STLS"); r != "+OK Begin TLS negotiation now." {
		t.Fatalf("STLS: %q", r)
	}
	if err := p.upgrade(cfg); err != nil {
		t.Fatalf("STLS handshake: %v", err)
	}
	if got := capa(p); strings.Contains(got, "STLS") {
		t.Errorf("CAPA over TLS offers STLS: %q", got)
	}
	if r := p.cmd("STLS"); r != "-ERR TLS is already active." {
		t.Errorf("STLS twice: %q", r)
	}
	if r := p.cmd("QUIT"); r != "+OK Logging out" {
		t.Errorf("QUIT: %q", r)
	}
	c, err := dialTLS(t, sport, "", cfg)
	if err != nil {
		t.Fatalf("pop3s: %v", err)
	}
	if g := c.line(); g != "+OK loginsvc ready." {
		t.Errorf("pop3s greeting %q", g)
	}
}

// TestTLSKeyHandOver: the key file is root's (0600, in a directory
// anyone may enter); a process as dovenull cannot open it; the login
// processes have it only in memory: not in their chroot, not reachable
// from inside them, and no memfd is left open (in them or in the
// supervisor).
func TestTLSKeyHandOver(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (sandboxed login processes)")
	}
	l, sport, pool, keyPath := tlsLab(t, "imap-login", "", "service_count = 1\nprocess_min_avail = 1")
	for _, d := range []string{filepath.Dir(keyPath), filepath.Dir(filepath.Dir(keyPath))} {
		os.Chmod(d, 0o755) // only the file's own mode keeps dovenull out
	}
	out, err := (&execCmd{env: "LOGINSVC_TEST_OPENAS=" + keyPath}).run()
	if err != nil || out != "open "+keyPath+": permission denied\n" {
		t.Errorf("open as dovenull: %q %v", out, err)
	}

	c, err := dialTLS(t, sport, "", tlsClientConfig(pool))
	if err != nil {
		t.Fatalf("imaps: %v", err)
	}
	if g := c.line(); !strings.HasPrefix(g, "* OK ") {
		t.Fatalf("greeting %q", g)
	}
	if r := c.cmd("x XOPEN " + keyPath); r != "* XOPEN open "+keyPath+": no such file or directory" {
		t.Errorf("the key path from inside the login process: %q", r)
	}
	c.line()
	st := l.waitFor("the client's process and a preforked one", func(s control.ServiceStatus) bool { return readyProcs(s) == 2 })
	chroot := filepath.Join(l.cfg.BaseDir, "login")
	for _, p := range st.Procs {
		checkSandboxed(t, p.PID, chroot)
		checkNoKeyFds(t, strconv.Itoa(p.PID), keyPath)
		// Non-dumpable: /proc/PID/mem belongs to root, so another
		// dovenull process cannot read the key from memory (nor ptrace).
		if fi, err := os.Stat(fmt.Sprintf("/proc/%d/mem", p.PID)); err != nil || fi.Sys().(*syscall.Stat_t).Uid != 0 {
			t.Errorf("pid %d /proc/PID/mem: %v (want owned by root: not dumpable)", p.PID, err)
		}
	}
	checkNoKeyFds(t, "self", keyPath) // the supervisor closes its copies
	filepath.WalkDir(chroot, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if b, _ := os.ReadFile(path); strings.Contains(string(b), "PRIVATE KEY") {
				t.Errorf("key material in the chroot: %s", path)
			}
		}
		return nil
	})
}

// checkNoKeyFds fails if process pid has a memfd or the key file open.
func checkNoKeyFds(t *testing.T, pid, keyPath string) {
	t.Helper()
	dir := "/proc/" + pid + "/fd"
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		target, _ := os.Readlink(filepath.Join(dir, e.Name()))
		if strings.Contains(target, "memfd:") || target == keyPath {
			t.Errorf("pid %s fd %s -> %s", pid, e.Name(), target)
		}
	}
}

// openAsLoginUser is the helper process of TestTLSKeyHandOver: it drops
// to dovenull (no chroot) and tries to open path.
func openAsLoginUser(path string) int {
	uid, gid, err := dovecotlab.LookupIDs("dovenull")
	if err != nil {
		fmt.Println(err)
		return 1
	}
	if err := login.Sandbox(&ipc.Settings{UID: uid, GID: gid}); err != nil {
		fmt.Println("sandbox:", err)
		return 1
	}
	f, err := os.Open(path)
	if err != nil {
		fmt.Println(err)
		return 0
	}
	f.Close()
	fmt.Println("opened")
	return 0
}

// countingConn counts the bytes read from the server.
type countingConn struct {
	net.Conn
	n atomic.Int64
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.n.Add(int64(n))
	return n, err
}

// TestTLSAccessDenyBeforeHandshake: on an ssl = yes listener the access
// check runs first; a refused client gets its connection closed without
// a single byte, TLS or otherwise, even after sending its ClientHello.
func TestTLSAccessDenyBeforeHandshake(t *testing.T) {
	base := startTcpwrapd(t)
	for _, mode := range []string{"service_count = 1", "service_count = 0\nprocess_min_avail = 1"} {
		t.Run(strings.Fields(mode)[2], func(t *testing.T) {
			l, sport, pool, _ := tlsLab(t, "imap-login", "base_dir = "+base+"\nlogin_access_sockets = tcpwrapd/access", mode)
			cfg := tlsClientConfig(pool)
			ok, err := dialTLS(t, sport, "127.0.0.1", cfg)
			if err != nil {
				t.Fatalf("allowed client: %v", err)
			}
			if g := ok.line(); !strings.HasPrefix(g, "* OK") {
				t.Errorf("allowed client: %q", g)
			}
			d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
			raw, err := d.Dial("tcp", "127.0.0.1:"+strconv.Itoa(sport))
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			cc := &countingConn{Conn: raw}
			tc := tls.Client(cc, cfg)
			tc.SetDeadline(time.Now().Add(10 * time.Second))
			if err := tc.Handshake(); err == nil {
				t.Error("refused client completed a handshake")
			}
			if n := cc.n.Load(); n != 0 {
				t.Errorf("refused client read %d bytes from the server", n)
			}
			l.waitFor("refused counted", func(s control.ServiceStatus) bool { return s.Counters.Refused == 1 })
			l.stop()
		})
	}
}

// TestTLSHighPerformance: one long-running process serves several TLS
// clients at once (implicit TLS and STARTTLS), accepting them itself.
func TestTLSHighPerformance(t *testing.T) {
	l, sport, pool, _ := tlsLab(t, "imap-login", "", "service_count = 0\nclient_limit = 20\nprocess_min_avail = 1\nprocess_limit = 1")
	l.waitFor("one preforked process", func(s control.ServiceStatus) bool { return readyProcs(s) == 1 })
	cfg := tlsClientConfig(pool)
	const n = 8
	cs := make([]*tclient, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c *tclient
			var err error
			if i%4 == 3 { // every fourth: plain + STARTTLS
				c = l.dial("")
				if g := c.line(); !strings.Contains(g, "STARTTLS") {
					err = fmt.Errorf("plain greeting %q", g)
				} else if r := c.cmd("s STARTTLS"); r != "s OK Begin TLS negotiation now." {
					err = fmt.Errorf("STARTTLS %q", r)
				} else {
					err = c.upgrade(cfg)
				}
			} else if c, err = dialTLS(t, sport, "", cfg); err == nil {
				if g := c.line(); !strings.HasPrefix(g, "* OK [CAPABILITY") {
					err = fmt.Errorf("greeting %q", g)
				}
			}
			if err != nil {
				errs <- fmt.Errorf("client %d: %w", i, err)
			}
			cs[i] = c
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st := l.waitFor("one process with all clients", func(s control.ServiceStatus) bool {
		return len(s.Procs) == 1 && s.Procs[0].LoggingIn == n
	})
	if st.Counters.Direct == 0 {
		t.Errorf("no direct accepts: %+v", st.Counters)
	}
	for i, c := range cs {
		if r := c.cmd(fmt.Sprintf("n%d NOOP", i)); r != fmt.Sprintf("n%d OK NOOP completed.", i) {
			t.Errorf("client %d NOOP: %q", i, r)
		}
	}
}

func TestTLSConfig(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath, _ := testCert(t, dir)
	other := t.TempDir()
	_, otherKey, _ := testCert(t, other)
	for _, tc := range []struct{ name, conf, want string }{
		{"no cert", "ssl = yes\n", "lab.conf:1: ssl enabled, but ssl_cert not set"},
		{"no key", "ssl = required\nssl_cert = <" + certPath + "\n", "lab.conf:1: ssl enabled, but ssl_key not set"},
		{"mismatch", "ssl = yes\nssl_cert = <" + certPath + "\nssl_key = <" + otherKey + "\n", "lab.conf:3: ssl_cert, ssl_key: cannot load the key pair: tls: private key does not match public key"},
		{"min protocol", "ssl_min_protocol = SSLv3\n", `lab.conf:1: ssl_min_protocol: unsupported protocol "SSLv3" (use TLSv1, TLSv1.1, TLSv1.2 or TLSv1.3)`},
		{"bad ssl", "ssl = maybe\n", `lab.conf:1: ssl: invalid value "maybe" (use yes, no or required)`},
		{"curve Go lacks", "ssl_curve_list = X25519:X448\n", `lab.conf:1: ssl_curve_list: unsupported group "X448" (supported: X25519, prime256v1, secp384r1, secp521r1, X25519MLKEM768, SecP256r1MLKEM768, SecP384r1MLKEM1024)`},
		{"curve list empty item", "ssl_curve_list = X25519::P-256\n", `lab.conf:1: ssl_curve_list: empty group name in "X25519::P-256"`},
		{"curve list only unknown optional", "ssl_curve_list = ?X448\n", `lab.conf:1: ssl_curve_list: no supported group in "?X448"`},
		{"curve list ok", "ssl_curve_list = x25519:prime256v1:?X448:*secp384r1\n", ""},
		{"OpenSSL 3.5 tuples", "ssl_curve_list = ?*X25519MLKEM768 / ?*X25519:?secp256r1 / ?X448:?secp384r1\n", ""},
		{"ok", "ssl = yes\nssl_cert = <" + certPath + "\nssl_key = <" + keyPath + "\nssl_min_protocol = TLSv1.3\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse("lab.conf", []byte(tc.conf))
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Errorf("got %q\nwant %q", got, tc.want)
			}
			if strings.Contains(got, "PRIVATE") {
				t.Error("key material in an error")
			}
		})
	}
	// ssl = no: an ssl = yes listener is not opened (as in Dovecot).
	c, err := config.Parse("lab.conf", []byte("protocols = imap\nservice imap-login {\n inet_listener imap {\n port = 0\n }\n inet_listener imaps {\n port = 993\n ssl = yes\n }\n}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if l := c.Service("imap-login").Listeners[1]; !l.Disabled || len(c.Enabled()) != 0 {
		t.Errorf("imaps with ssl = no: disabled %v, enabled services %d", l.Disabled, len(c.Enabled()))
	}
	c, _ = config.Parse("lab.conf", []byte("ssl = yes\nssl_cert = <"+certPath+"\nssl_key = <"+keyPath+"\nservice imap-login {\n inet_listener imaps {\n address = 127.0.0.1 ::1\n port = 993\n ssl = yes\n }\n}\n"))
	if got := strings.Join(c.Service("imap-login").SSLListenAddrs(), " "); got != "127.0.0.1:993 [::1]:993" {
		t.Errorf("ssl listen addresses %q", got)
	}
}

// TestSSLCurveList: ssl_curve_list limits the key exchanges of a TLS
// handshake; by default (empty) a client offering the X25519MLKEM768
// hybrid gets it, with ssl_curve_list = X25519:prime256v1 the same client
// gets X25519, and a client offering only groups outside the list is
// refused.
func TestSSLCurveList(t *testing.T) {
	for _, tc := range []struct {
		name, global string
		offer        []tls.CurveID // nil: Go's defaults
		want         tls.CurveID   // 0: the handshake fails
	}{
		{"default", "", nil, tls.X25519MLKEM768},
		{"classic list", "ssl_curve_list = X25519:prime256v1\n", nil, tls.X25519},
		{"OpenSSL names", "ssl_curve_list = secp384r1\n", nil, tls.CurveP384},
		{"nothing in common", "ssl_curve_list = X25519\n", []tls.CurveID{tls.CurveP256}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, sport, pool, _ := tlsLab(t, "imap-login", tc.global, "service_count = 0")
			cfg := tlsClientConfig(pool)
			cfg.CurvePreferences = tc.offer
			c, err := dialTLS(t, sport, "", cfg)
			if tc.want == 0 {
				if err == nil {
					err = c.c.(*tls.Conn).Handshake()
				}
				if err == nil {
					t.Fatal("handshake with no group in common succeeded")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if g := c.line(); !strings.HasPrefix(g, "* OK ") {
				t.Fatalf("greeting %q", g)
			}
			if got := c.c.(*tls.Conn).ConnectionState().CurveID; got != tc.want {
				t.Errorf("key exchange %v, want %v", got, tc.want)
			}
		})
	}
}
