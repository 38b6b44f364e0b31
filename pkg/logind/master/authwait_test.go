package master

import (
	"bufio"
	"encoding/base64"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeAuth is a Dovecot auth stand-in on base_dir/login/login: it
// answers the handshake once release is closed, and every AUTH with OK
// for alice.
func fakeAuth(t *testing.T, baseDir string, release <-chan struct{}) {
	t.Helper()
	path := filepath.Join(baseDir, "login", "login")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o666)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				<-release
				c.Write([]byte("VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nSPID\t4242\nCUID\t1\nCOOKIE\t0123456789abcdef0123456789abcdef\nDONE\n"))
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					if f := strings.Split(line, "\t"); f[0] == "AUTH" {
						c.Write([]byte("OK\t" + f[1] + "\tuser=alice\n"))
					}
				}
			}()
		}
	}()
}

// TestGreetingWaitsForAuth: while auth has not answered, the greeting is
// held (Dovecot's login processes wait for auth); once auth is there the
// client is greeted with auth's mechanisms. A hand-off that fails (no
// post-login imap socket) ends the session with Dovecot's internal-error
// notice and disconnect reason.
func TestGreetingWaitsForAuth(t *testing.T) {
	for _, mode := range authModes {
		t.Run(mode.name, func(t *testing.T) {
			l := startLab(t, "imap-login", "", mode.conf)
			release := make(chan struct{})
			fakeAuth(t, l.cfg.BaseDir, release)
			c := l.dial("")
			c.c.SetReadDeadline(time.Now().Add(time.Second))
			if g, err := c.r.ReadString('\n'); err == nil {
				t.Fatalf("greeted before auth answered: %q", g)
			}
			close(release)
			if g := c.line(); !strings.HasPrefix(g, "* OK [CAPABILITY ") || !strings.Contains(g, " AUTH=PLAIN]") {
				t.Fatalf("greeting %q", g)
			}
			if r := c.cmd("a LOGIN alice secret"); r != "* BYE [UNAVAILABLE] Internal login failure. Refer to server log for more information." {
				t.Errorf("failed hand-off: %q", r)
			}
			if r := c.line(); r != "EOF" {
				t.Errorf("after the failed hand-off: %q", r)
			}
			l.mustLog("Disconnected: Internal login failure (pid=", " id=", "): user=<alice>, method=PLAIN, rip=127.0.0.1, lip=127.0.0.1, secured, session=<")
		})
	}
}

// TestHandOffFailedNotice: in POP3, submission and ManageSieve too, a
// hand-off that fails (no post-login socket) ends the session with the
// login process's wording of Dovecot's internal-error text
// (pop3_client_notify_disconnect's "-ERR [SYS/TEMP]",
// submission_client_notify_disconnect's 421 4.0.0 with the host name,
// managesieve_client_notify_disconnect's BYE) and the disconnect reason.
func TestHandOffFailedNotice(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		host = "localhost"
	}
	plain := base64.StdEncoding.EncodeToString([]byte("\x00alice\x00secret"))
	const text = "Internal login failure. Refer to server log for more information."
	for _, tc := range []struct {
		svc      string
		greeting string   // the greeting's last line starts with it
		before   []string // commands and the first line of their replies
		login    string
		want     string
	}{
		{"pop3-login", "+OK ", []string{"USER alice", "+OK"}, "PASS secret", "-ERR [SYS/TEMP] " + text},
		{"submission-login", "220 ", []string{"EHLO client.example.org", "250-"}, "AUTH PLAIN " + plain, "421 4.0.0 " + host + " " + text},
		{"managesieve-login", "OK ", nil, `AUTHENTICATE "PLAIN" "` + plain + `"`, `BYE "` + text + `"`},
	} {
		t.Run(tc.svc, func(t *testing.T) {
			l := startLab(t, tc.svc, "", "service_count = 1")
			release := make(chan struct{})
			close(release)
			fakeAuth(t, l.cfg.BaseDir, release)
			c := l.dial("")
			g := c.line()
			for !strings.HasPrefix(g, tc.greeting) && g != "EOF" {
				g = c.line()
			}
			if g == "EOF" {
				t.Fatal("no greeting")
			}
			for i := 0; i < len(tc.before); i += 2 {
				r := c.cmd(tc.before[i])
				if !strings.HasPrefix(r, tc.before[i+1]) {
					t.Fatalf("%s: %q", tc.before[i], r)
				}
				for strings.HasPrefix(r, "250-") {
					r = c.line()
				}
			}
			if r := c.cmd(tc.login); r != tc.want {
				t.Errorf("failed hand-off: %q, want %q", r, tc.want)
			}
			if r := c.line(); r != "EOF" {
				t.Errorf("after the failed hand-off: %q", r)
			}
			l.mustLog("Disconnected: Internal login failure (pid=", " id=", "): user=<alice>, method=PLAIN, rip=127.0.0.1, lip=127.0.0.1, secured, session=<")
		})
	}
}

// TestGreetingWaitHangup: while the greeting waits for auth, a client
// that hangs up is let go at once (Dovecot reads its input then), and
// one that sends its LOGIN before the greeting has it answered after
// the greeting: the watch for the hang-up leaves the input unread.
func TestGreetingWaitHangup(t *testing.T) {
	for _, mode := range authModes {
		t.Run(mode.name, func(t *testing.T) {
			l := startLab(t, "imap-login", "", mode.conf)
			release := make(chan struct{})
			fakeAuth(t, l.cfg.BaseDir, release)
			gone := l.dial("127.0.0.2")
			early := l.dial("")
			early.c.Write([]byte("a LOGIN alice secret\r\n"))
			gone.c.Close()
			l.mustLog("Disconnected: Connection closed", "rip=127.0.0.2")
			close(release)
			if g := early.line(); !strings.HasPrefix(g, "* OK [CAPABILITY ") {
				t.Fatalf("greeting %q", g)
			}
			if r := early.line(); r != "* BYE [UNAVAILABLE] Internal login failure. Refer to server log for more information." {
				t.Errorf("the LOGIN sent before the greeting: %q", r)
			}
		})
	}
}

// TestAuthNotResponding: auth silent for 10 s: the client is told
// Dovecot's waiting notice (and a warning is logged); the greeting
// follows once auth answers.
func TestAuthNotResponding(t *testing.T) {
	l := startLab(t, "imap-login", "", "service_count = 1")
	release := make(chan struct{})
	fakeAuth(t, l.cfg.BaseDir, release)
	c := l.dial("")
	c.c.SetReadDeadline(time.Now().Add(15 * time.Second))
	start := time.Now()
	n, err := c.r.ReadString('\n')
	if err != nil || n != "* OK Waiting for authentication process to respond..\r\n" || time.Since(start) < 9*time.Second {
		t.Fatalf("after %v: %q, %v", time.Since(start), n, err)
	}
	l.mustLog("Auth process not responding, delayed sending initial response (greeting)")
	close(release)
	if g := c.line(); !strings.HasPrefix(g, "* OK [CAPABILITY ") {
		t.Fatalf("greeting %q", g)
	}
}
