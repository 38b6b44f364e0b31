package master

import (
	"encoding/base64"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tcpwrapd/tcpwrapd/internal/dovecot24lab"
	"github.com/tcpwrapd/tcpwrapd/internal/dovecotlab"
	"github.com/tcpwrapd/tcpwrapd/internal/peertest"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/control"
)

// Logins through a real Dovecot: loginsvc's login processes ask
// Dovecot's auth (base_dir/login/login) and hand the client to Dovecot's
// imap (base_dir/login/imap); Dovecot's own imap-login has no listener.

const (
	authUser = "alice"
	authPass = "s3cret pass"
	authMsg  = "From: bob@example.org\r\nTo: alice@example.org\r\nSubject: through loginsvc\r\n\r\nhello from the hand-off\r\n"
)

// backend is a Dovecot behind loginsvc.
type backend struct {
	baseDir string
	log     func() string
}

// startDovecot23 starts a Dovecot 2.3 with alice's INBOX holding authMsg;
// its imap log lines name the client's address and session
// (mail_log_prefix), so the hand-off's are seen.
func startDovecot23(t *testing.T) backend {
	t.Helper()
	peertest.Require(t, "dovecot 2.3", dovecotlab.Available())
	d := dovecotlab.Start(t, dovecotlab.Config{
		NoAccessCheck: true, NoLoginListeners: true, Protocols: []string{"imap"}, AuthMechanisms: "plain login",
		Users: map[string]string{authUser: authPass},
		Extra: "mail_log_prefix = \"%s(%u)<rip=%r><%{session}>: \"\n",
	})
	if err := d.Deliver(authUser, authMsg); err != nil {
		t.Fatal(err)
	}
	return backend{baseDir: d.BaseDir, log: d.Log}
}

// waitLog waits up to 10 s for Dovecot's log to contain every one of subs
// on one line.
func (b backend) waitLog(t *testing.T, subs ...string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
	lines:
		for _, line := range strings.Split(b.log(), "\n") {
			for _, s := range subs {
				if !strings.Contains(line, s) {
					continue lines
				}
			}
			return line
		}
		if time.Now().After(deadline) {
			t.Fatalf("Dovecot's log has no line with %q:\n%s", subs, b.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// mustLog fails the test unless loginsvc's log gets a line with every
// one of subs within 5 s.
func (l *lab) mustLog(subs ...string) {
	l.t.Helper()
	for range 250 {
		for _, line := range strings.Split(l.logs.String(), "\n") {
			n := 0
			for _, s := range subs {
				if strings.Contains(line, s) {
					n++
				}
			}
			if n == len(subs) {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	l.t.Errorf("loginsvc's log has no line with %q", subs)
}

// readTagged reads lines up to the one tagged tag and returns them all.
func (c *tclient) readTagged(tag string) []string {
	c.t.Helper()
	var lines []string
	for {
		l := c.line()
		lines = append(lines, l)
		if strings.HasPrefix(l, tag+" ") || l == "EOF" {
			return lines
		}
	}
}

// loggedIn checks a session handed off to Dovecot's imap: the pipelined
// SELECT after the login (tagged b) ran, FETCH sees the message.
func loggedIn(t *testing.T, c *tclient, tag string, during ...func()) {
	t.Helper()
	if r := c.readTagged(tag); !strings.HasPrefix(r[len(r)-1], tag+" OK ") || !strings.Contains(r[len(r)-1], "Logged in") {
		t.Fatalf("login: %q", r)
	}
	if r := c.readTagged("b"); !strings.HasPrefix(r[len(r)-1], "b OK ") || !strings.Contains(strings.Join(r, "\n"), "1 EXISTS") {
		t.Fatalf("pipelined SELECT INBOX: %q", r)
	}
	c.c.Write([]byte("c FETCH 1 BODY[]\r\n"))
	if r := c.readTagged("c"); !strings.Contains(strings.Join(r, "\n"), "hello from the hand-off") || !strings.HasPrefix(r[len(r)-1], "c OK") {
		t.Fatalf("FETCH: %q", r)
	}
	for _, f := range during {
		f()
	}
	c.c.Write([]byte("d LOGOUT\r\n"))
	if r := c.readTagged("d"); !strings.HasPrefix(r[len(r)-1], "d OK") {
		t.Fatalf("LOGOUT: %q", r)
	}
}

var authModes = []struct{ name, conf string }{
	{"high-security", "service_count = 1"},
	{"high-performance", "service_count = 0\nprocess_min_avail = 1"},
}

// TestDovecot23Login: plaintext LOGIN from loopback (secured) with a
// pipelined SELECT, a wrong password answered after Dovecot's delay,
// STARTTLS then LOGIN, and implicit TLS with AUTHENTICATE PLAIN and
// SASL-IR, in both modes; Dovecot logs each session with the client's
// address.
func TestDovecot23Login(t *testing.T) {
	b := startDovecot23(t)
	testDovecotLogin(t, b)
}

func testDovecotLogin(t *testing.T, b backend) {
	for _, mode := range authModes {
		t.Run(mode.name, func(t *testing.T) {
			l, sport, pool, _ := tlsLab(t, "imap-login", "base_dir = "+b.baseDir, mode.conf)
			t.Run("LOGIN", func(t *testing.T) {
				c := l.dial("")
				if g := c.line(); !strings.Contains(g, " AUTH=PLAIN") || strings.Contains(g, "LOGINDISABLED") {
					t.Fatalf("greeting %q", g)
				}
				c.c.Write([]byte("a LOGIN " + authUser + " \"" + authPass + "\"\r\nb SELECT INBOX\r\n"))
				loggedIn(t, c, "a")
				l.mustLog("Login: user=<"+authUser+">, method=PLAIN, rip=127.0.0.1, lip=127.0.0.1, mpid=", ", secured, session=<")
				b.waitLog(t, "imap("+authUser+")<rip=127.0.0.1>", "Logged out")
			})
			t.Run("CAPABILITY first", func(t *testing.T) {
				// The hand-off prefix's flag: imap then answers with an
				// untagged CAPABILITY, not a [CAPABILITY] code.
				c := l.dial("")
				c.line()
				c.cmd("x CAPABILITY")
				c.line()
				c.c.Write([]byte("a LOGIN " + authUser + " \"" + authPass + "\"\r\n"))
				r := c.readTagged("a")
				if last := r[len(r)-1]; !strings.HasPrefix(last, "a OK ") || strings.Contains(last, "[CAPABILITY") || !strings.HasPrefix(r[0], "* CAPABILITY ") {
					t.Errorf("login after CAPABILITY: %q", r)
				}
				c.cmd("z LOGOUT")
			})
			t.Run("wrong password", func(t *testing.T) {
				c := l.dial("")
				c.line()
				start := time.Now()
				if r := c.cmd("a LOGIN " + authUser + " wrong"); r != "a NO [AUTHENTICATIONFAILED] Authentication failed." {
					t.Errorf("wrong password: %q", r)
				}
				if d := time.Since(start); d < time.Second {
					t.Errorf("answered after %v, before Dovecot's auth_failure_delay", d)
				}
				c.cmd("z LOGOUT")
				l.mustLog("Disconnected: Aborted login by logging out (auth failed, 1 attempts in ", "user=<"+authUser+">, method=PLAIN")
			})
			t.Run("client leaves before auth answers", func(t *testing.T) {
				// As in Dovecot, a client's hang-up is not watched for
				// while auth answers: the failure is judged and logged
				// as one (ban tools count it), not cut short as a
				// closed connection.
				c := l.dial("")
				c.line()
				// The client's side is closed (FIN, POLLRDHUP) and its
				// reply still read: auth's penalty grows with each
				// failure from 127.0.0.1 (up to 15 s).
				c.c.Write([]byte("a LOGIN " + authUser + " wrong\r\n"))
				c.c.(*net.TCPConn).CloseWrite()
				c.c.SetReadDeadline(time.Now().Add(30 * time.Second))
				if r, _ := c.r.ReadString('\n'); r != "a NO [AUTHENTICATIONFAILED] Authentication failed.\r\n" {
					t.Errorf("after the client's close: %q, want auth's failure", r)
				}
				l.mustLog("Disconnected: Connection closed", "(auth failed, 1 attempts in ", "user=<"+authUser+">, method=PLAIN")
			})
			t.Run("STARTTLS", func(t *testing.T) {
				c := l.dial("")
				c.line()
				if r := c.cmd("s STARTTLS"); r != "s OK Begin TLS negotiation now." {
					t.Fatalf("STARTTLS: %q", r)
				}
				if err := c.upgrade(tlsClientConfig(pool)); err != nil {
					t.Fatal(err)
				}
				c.c.Write([]byte("a LOGIN " + authUser + " \"" + authPass + "\"\r\nb SELECT INBOX\r\n"))
				loggedIn(t, c, "a")
				l.mustLog("Login: user=<"+authUser+">, method=PLAIN, rip=127.0.0.1, lip=127.0.0.1, mpid=", ", TLS, session=<")
			})
			t.Run("implicit TLS AUTHENTICATE", func(t *testing.T) {
				c, err := dialTLS(t, sport, "", tlsClientConfig(pool))
				if err != nil {
					t.Fatal(err)
				}
				if g := c.line(); !strings.Contains(g, "AUTH=PLAIN") {
					t.Fatalf("greeting %q", g)
				}
				ir := base64.StdEncoding.EncodeToString([]byte("\x00" + authUser + "\x00" + authPass))
				c.c.Write([]byte("a AUTHENTICATE PLAIN " + ir + "\r\nb SELECT INBOX\r\n"))
				loggedIn(t, c, "a", func() {
					// The relay is a proxying client of its login process:
					// counted there, never evicted.
					l.waitFor("a proxying client", func(s control.ServiceStatus) bool {
						n := 0
						for _, p := range s.Procs {
							n += p.Proxying
						}
						return n == 1
					})
				})
				l.mustLog("Login: user=<"+authUser+">, method=PLAIN, rip=127.0.0.1, lip=127.0.0.1, mpid=", ", TLS, session=<")
			})
			t.Run("SASL", func(t *testing.T) {
				c := l.dial("")
				c.line()
				// Multi-step: no initial response, then the response.
				if r := c.cmd("a AUTHENTICATE PLAIN"); r != "+ " {
					t.Fatalf("AUTHENTICATE PLAIN: %q", r)
				}
				if r := c.cmd(base64.StdEncoding.EncodeToString([]byte("\x00" + authUser + "\x00wrong"))); r != "a NO [AUTHENTICATIONFAILED] Authentication failed." {
					t.Errorf("wrong response: %q", r)
				}
				// The client aborts.
				if r := c.cmd("b AUTHENTICATE PLAIN"); r != "+ " {
					t.Fatalf("AUTHENTICATE PLAIN: %q", r)
				}
				if r := c.cmd("*"); r != "b BAD Authentication aborted by client." {
					t.Errorf("abort: %q", r)
				}
				// An empty initial response (=) is a response.
				if r := c.cmd("c AUTHENTICATE PLAIN ="); r != "c NO [AUTHENTICATIONFAILED] Authentication failed." {
					t.Errorf("empty initial response: %q", r)
				}
				if r := c.cmd("d AUTHENTICATE CRAM-MD5"); r != "d NO [ALERT] Unsupported authentication mechanism." {
					t.Errorf("unknown mechanism: %q", r)
				}
				// LOGIN, two challenges.
				if r := c.cmd("e AUTHENTICATE LOGIN"); !strings.HasPrefix(r, "+ ") {
					t.Fatalf("AUTHENTICATE LOGIN: %q", r)
				}
				if r := c.cmd(base64.StdEncoding.EncodeToString([]byte(authUser))); !strings.HasPrefix(r, "+ ") {
					t.Fatalf("LOGIN user: %q", r)
				}
				c.c.Write([]byte(base64.StdEncoding.EncodeToString([]byte(authPass)) + "\r\nb SELECT INBOX\r\n"))
				loggedIn(t, c, "e")
				l.mustLog("Login: user=<" + authUser + ">, method=LOGIN, rip=127.0.0.1")
			})
			t.Run("client leaves during SASL", func(t *testing.T) {
				c := l.dial("")
				c.line()
				if r := c.cmd("a AUTHENTICATE PLAIN"); r != "+ " {
					t.Fatalf("AUTHENTICATE PLAIN: %q", r)
				}
				c.c.Close()
				l.mustLog("Disconnected: Connection closed (client didn't finish SASL auth, waited ", "user=<>, method=PLAIN")
			})
			if strings.Contains(l.logs.String(), authPass) {
				t.Error("the password is in loginsvc's log")
			}
		})
	}
}

// startDovecot24 is startDovecot23 for a Dovecot 2.4.1 (the 2.4 hand-off
// layout, auth-client protocol 1.3); under CI=true it must run.
func startDovecot24(t *testing.T) backend {
	t.Helper()
	dovecot24lab.Require(t)
	d := dovecot24lab.Start(t, dovecot24lab.Config{
		NoLoginListeners: true, Protocols: []string{"imap"},
		Users: map[string]string{authUser: authPass},
		Extra: "mail_log_prefix = \"%{service}(%{user})<rip=%{remote_ip}><%{session}>: \"\n",
	})
	if err := d.Deliver(authUser, authMsg); err != nil {
		t.Fatal(err)
	}
	return backend{baseDir: d.BaseDir(), log: d.Log}
}

// TestDovecot24Login is TestDovecot23Login against Dovecot 2.4.
func TestDovecot24Login(t *testing.T) {
	testDovecotLogin(t, startDovecot24(t))
}
