package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcpwrapd/tcpwrapd/internal/dovecot24lab"
	"github.com/tcpwrapd/tcpwrapd/internal/dovecotlab"
	"github.com/tcpwrapd/tcpwrapd/internal/peertest"
)

// tcpwrapd in front of Dovecot through loginsvc (docs/loginsvc.md, "In
// front of Dovecot"; docs/dovecot-managed.md, "The login access-check
// protocol"): loginsvc's login_access_sockets ask the real tcpwrapd,
// whose socket is in a sub-directory of base_dir/login, before any byte
// to the client. Dovecot 2.4 has no login_access_sockets of its own;
// this is how hosts.deny protects its logins.

// frontUser and frontPass log in; frontDenied is the address hosts.deny
// refuses imap to.
const (
	frontUser   = "alice"
	frontPass   = "secret"
	frontDenied = "127.0.0.9"
)

// TestTcpwrapdRefusesInFrontOfDovecot23: Dovecot 2.3 (its own
// login_access_sockets empty) behind loginsvc, which asks tcpwrapd.
func TestTcpwrapdRefusesInFrontOfDovecot23(t *testing.T) {
	peertest.Require(t, "dovecot 2.3", dovecotlab.Available())
	d := dovecotlab.Start(t, dovecotlab.Config{
		NoAccessCheck: true, NoLoginListeners: true, Protocols: []string{"imap"},
		Users: map[string]string{frontUser: frontPass},
		Extra: "mail_log_prefix = \"%s(%u)<rip=%r><%{session}>: \"\n",
	})
	if err := d.Deliver(frontUser, "Subject: in front\r\n\r\nhello through tcpwrapd and loginsvc\r\n"); err != nil {
		t.Fatal(err)
	}
	testTcpwrapdRefuses(t, d.BaseDir, d.Log)
}

// TestTcpwrapdRefusesInFrontOfDovecot24 is the same with Dovecot 2.4.1,
// which has no access sockets; under CI=true it must run.
func TestTcpwrapdRefusesInFrontOfDovecot24(t *testing.T) {
	dovecot24lab.Require(t)
	d := dovecot24lab.Start(t, dovecot24lab.Config{
		NoLoginListeners: true, Protocols: []string{"imap"},
		Users: map[string]string{frontUser: frontPass},
		Extra: "mail_log_prefix = \"%{service}(%{user})<rip=%{remote_ip}><%{session}>: \"\n",
	})
	if err := d.Deliver(frontUser, "Subject: in front\r\n\r\nhello through tcpwrapd and loginsvc\r\n"); err != nil {
		t.Fatal(err)
	}
	testTcpwrapdRefuses(t, d.BaseDir(), d.Log)
}

// testTcpwrapdRefuses runs the tcpwrapd binary on
// baseDir/login/tcpwrapd/access (hosts.deny "imap: 127.0.0.9") and, in
// each mode, the loginsvc binary with login_access_sockets =
// tcpwrapd/access in front of the Dovecot whose base_dir is baseDir
// (dovecotLog its log): a client from 127.0.0.9 gets no byte and end of
// file, one from 127.0.0.1 logs in and SELECTs its INBOX, and Dovecot
// logs the one and never hears of the other.
func testTcpwrapdRefuses(t *testing.T, baseDir string, dovecotLog func() string) {
	dir := t.TempDir()
	sock := startTcpwrapdIn(t, baseDir, dir, "", "imap: "+frontDenied+"\n")
	tcpwrapdOut := filepath.Join(dir, "tcpwrapd.out")
	for _, mode := range []struct{ name, conf string }{
		{"high-security", "service_count = 1"},
		{"high-performance", "service_count = 0\n  process_min_avail = 1"},
	} {
		t.Run(mode.name, func(t *testing.T) {
			port, logs := startLoginsvc(t, baseDir, "login_access_sockets = tcpwrapd/access\n", mode.conf)
			// The allowed client first: it waits for loginsvc to
			// listen and its login process to greet.
			allowed := dialLoginsvc(t, port, "127.0.0.1")
			refused := dialLoginsvc(t, port, frontDenied)
			refused.SetReadDeadline(time.Now().Add(30 * time.Second))
			if b, err := io.ReadAll(refused); len(b) != 0 || err != nil {
				t.Errorf("refused client: read %q, %v; want no byte and end of file", b, err)
			}
			waitText(t, "loginsvc's log", logs, "access(tcpwrapd/access): Client refused (rip="+frontDenied+")")
			waitText(t, "tcpwrapd's log", func() string { b, _ := os.ReadFile(tcpwrapdOut); return string(b) },
				`msg="access refused"`, "daemon=imap", "client_addr="+frontDenied+":")

			r := bufio.NewReader(allowed)
			allowed.SetDeadline(time.Now().Add(60 * time.Second))
			session := imapSession{t: t, r: r}
			if g := session.line(); !strings.HasPrefix(g, "* OK ") || !strings.Contains(g, "AUTH=PLAIN") {
				t.Fatalf("allowed client's greeting %q", g)
			}
			allowed.Write([]byte("a LOGIN " + frontUser + " " + frontPass + "\r\nb SELECT INBOX\r\n"))
			if ls := session.tagged("a"); !strings.HasPrefix(ls[len(ls)-1], "a OK ") || !strings.Contains(ls[len(ls)-1], "Logged in") {
				t.Fatalf("LOGIN: %q", ls)
			}
			if ls := session.tagged("b"); !strings.HasPrefix(ls[len(ls)-1], "b OK ") || !strings.Contains(strings.Join(ls, "\n"), "* 1 EXISTS") {
				t.Fatalf("SELECT INBOX: %q", ls)
			}
			allowed.Write([]byte("c LOGOUT\r\n"))
			session.tagged("c")
			login := waitText(t, "loginsvc's log", logs, "Login: user=<"+frontUser+">, method=PLAIN, rip=127.0.0.1, lip=127.0.0.1, mpid=")
			_, sess, _ := strings.Cut(login, "session=<")
			sess, _, _ = strings.Cut(sess, ">")
			// Dovecot logged the allowed session's end, after the
			// refusal: nothing of the refused client came before it.
			waitText(t, "Dovecot's log", dovecotLog, "imap("+frontUser+")<rip=127.0.0.1><"+sess+">", "Logged out")
			if strings.Contains(dovecotLog(), frontDenied) {
				t.Errorf("Dovecot's log names the refused client:\n%s", dovecotLog())
			}
		})
	}
	if _, err := os.Stat(sock); err != nil {
		t.Errorf("tcpwrapd's socket: %v", err)
	}
}

// startTcpwrapdIn runs the tcpwrapd binary with the rule files allow
// and deny (written into dir) on baseDir/login/tcpwrapd/access, owned
// by the login user (dovenull) with mode 0600, its output in
// dir/tcpwrapd.out; it waits for the socket and returns its path. The
// daemon is stopped at the end of the test.
func startTcpwrapdIn(t *testing.T, baseDir, dir, allow, deny string) string {
	t.Helper()
	bin := tcpwrapdBinary(t)
	sockDir := filepath.Join(baseDir, "login", "tcpwrapd")
	uid, gid, err := dovecotlab.LookupIDs(dovecotlab.LoginUser)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(sockDir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(sockDir, uid, gid); err != nil {
		t.Fatal(err)
	}
	allowFile, denyFile := filepath.Join(dir, "hosts.allow"), filepath.Join(dir, "hosts.deny")
	for f, text := range map[string]string{allowFile: allow, denyFile: deny} {
		if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sock := filepath.Join(sockDir, "access")
	p, err := dovecotlab.StartProcess(t, "tcpwrapd", exec.Command(bin,
		"--listen", sock, "--socket-user", dovecotlab.LoginUser, "--socket-mode", "0600",
		"--allow-file", allowFile, "--deny-file", denyFile, "--log-level", "debug"), filepath.Join(dir, "tcpwrapd.out"))
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if fi, err := os.Stat(sock); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return sock
		}
		if done, err := p.Exited(); done {
			t.Fatalf("tcpwrapd exited: %v\n%s", err, p.Output())
		}
		if time.Now().After(deadline) {
			t.Fatalf("tcpwrapd's socket %s did not appear:\n%s", sock, p.Output())
		}
	}
}

// startLoginsvc runs the loginsvc binary (as packaged, CGO_ENABLED=0)
// in front of the Dovecot whose base_dir is baseDir: imap on a free
// port of 127.0.0.1, global settings global, imap-login settings conf.
// It returns the port and a function reading loginsvc's log; loginsvc
// is stopped at the end of the test.
func startLoginsvc(t *testing.T, baseDir, global, conf string) (int, func() string) {
	t.Helper()
	text, ports, logs := runLoginsvc(t, 1, func(ports []int) string {
		return fmt.Sprintf("base_dir = %s\nlisten = 127.0.0.1\nprotocols = imap\n%sservice imap-login {\n  inet_listener imap {\n    port = %d\n  }\n  %s\n}\n", baseDir, global, ports[0], conf)
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("loginsvc.conf:\n%s\nloginsvc's log:\n%s", text, logs())
		}
	})
	return ports[0], logs
}

// runLoginsvc runs the loginsvc binary (as packaged, CGO_ENABLED=0) with
// the configuration conf(ports) makes for n free ports of 127.0.0.1, and
// waits until it listens on all of them. A free port can be taken by
// another test's process before loginsvc binds it: then loginsvc exits
// with "address already in use", and it runs again on other ports (at
// most 5 times). It returns the configuration, the ports and a function
// reading loginsvc's log; loginsvc is stopped at the end of the test.
func runLoginsvc(t *testing.T, n int, conf func(ports []int) string) (string, []int, func() string) {
	t.Helper()
	bin := goBinary(t, "loginsvc", "CGO_ENABLED=0")
	dir := t.TempDir()
	confPath, logPath := filepath.Join(dir, "loginsvc.conf"), filepath.Join(dir, "loginsvc.log")
	logs := func() string { b, _ := os.ReadFile(logPath); return string(b) }
	for attempt := 1; ; attempt++ {
		ports := make([]int, n)
		for i := range ports {
			p, err := dovecotlab.FreePort()
			if err != nil {
				t.Fatal(err)
			}
			ports[i] = p
		}
		text := conf(ports)
		if err := os.WriteFile(confPath, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		p, err := dovecotlab.StartProcess(t, "loginsvc", exec.Command(bin, "-F", "-c", confPath), logPath)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := p.Stop(); err != nil {
				t.Errorf("stop loginsvc: %v", err)
			}
		})
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if listensOnAll(t, p.PID(), ports) {
				return text, ports, logs
			}
			if done, err := p.Exited(); done {
				if strings.Contains(logs(), "address already in use") && attempt < 5 {
					t.Logf("loginsvc could not bind %v (taken meanwhile), again on other ports", ports)
					break
				}
				t.Fatalf("loginsvc exited: %v\nloginsvc.conf:\n%s\nloginsvc's log:\n%s", err, text, logs())
			}
			if time.Now().After(deadline) {
				t.Fatalf("loginsvc does not listen on %v:\n%s", ports, logs())
			}
		}
	}
}

// listensOnAll reports whether process pid (or one it started) holds a
// listening TCP socket on every one of ports.
func listensOnAll(t *testing.T, pid int, ports []int) bool {
	t.Helper()
	ls := strings.Join(tcpListeners(t, []int{pid}), "\n") + "\n"
	for _, p := range ports {
		if !strings.Contains(ls, fmt.Sprintf(" port %d\n", p)) {
			return false
		}
	}
	return true
}

// dialLoginsvc connects to 127.0.0.1:port from src, trying again until
// loginsvc listens (at most 60 s); the connection is closed at the end
// of the test.
func dialLoginsvc(t *testing.T, port int, src string) *net.TCPConn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		c, err := d.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			t.Cleanup(func() { c.Close() })
			return c.(*net.TCPConn)
		}
		if time.Now().After(deadline) {
			t.Fatalf("loginsvc does not listen on %d: %v", port, err)
		}
	}
}

// waitText waits up to 30 s for a line of text() that contains every
// one of subs, and returns it; what names text in the failure.
func waitText(t *testing.T, what string, text func() string, subs ...string) string {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
	lines:
		for _, line := range strings.Split(text(), "\n") {
			for _, s := range subs {
				if !strings.Contains(line, s) {
					continue lines
				}
			}
			return line
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has no line with %q:\n%s", what, subs, text())
		}
	}
}

// imapSession reads an IMAP server's lines.
type imapSession struct {
	t *testing.T
	r *bufio.Reader
}

// line reads one line, without CR LF.
func (s imapSession) line() string {
	s.t.Helper()
	l, err := s.r.ReadString('\n')
	if err != nil {
		s.t.Fatalf("read: %v (so far %q)", err, l)
	}
	return strings.TrimRight(l, "\r\n")
}

// tagged reads lines up to the one tagged tag and returns them all.
func (s imapSession) tagged(tag string) []string {
	s.t.Helper()
	var ls []string
	for {
		l := s.line()
		ls = append(ls, l)
		if strings.HasPrefix(l, tag+" ") {
			return ls
		}
	}
}
