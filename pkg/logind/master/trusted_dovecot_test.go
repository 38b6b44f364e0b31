package master

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcpwrapd/tcpwrapd/internal/dovecotlab"
)

// trustedSession is one client's session in TestTrustedForwardingAsDovecot:
// from src, the commands (each answered by replies lines).
type trustedSession struct {
	src  string
	cmds []trustedCmd
}

type trustedCmd struct {
	line    string
	replies int
}

// run plays s against 127.0.0.1:port and returns the greeting and
// every reply line.
func (s trustedSession) run(t *testing.T, port int) []string {
	c := dialPort(t, port, s.src)
	got := []string{c.line()}
	for _, cmd := range s.cmds {
		got = append(got, c.cmd(cmd.line))
		for range cmd.replies - 1 {
			got = append(got, c.line())
		}
	}
	if end := c.line(); end != "EOF" {
		t.Errorf("from %s: %q after the last reply, want the end of the session", s.src, end)
	}
	return got
}

// TestTrustedForwardingAsDovecot plays the same sessions from a trusted
// peer (127.0.0.2, login_trusted_networks) and an untrusted one
// (127.0.0.3) against a real Dovecot 2.3's imap-login and pop3-login and
// against loginsvc (in front of the same Dovecot: its base_dir, its
// auth), and compares the replies byte for byte, greetings included, and the
// disconnect lines word for word: Dovecot's from its log file
// ("imap-login: Info: TEXT"), loginsvc's as login_log_path sends them to
// syslog ("imap-login: TEXT", Dovecot's syslog form of the same line).
func TestTrustedForwardingAsDovecot(t *testing.T) {
	dovecotlab.SkipIfUnavailable(t)
	const greeting = "loginsvc ready."
	d := dovecotlab.Start(t, dovecotlab.Config{NoAccessCheck: true,
		Extra: "login_trusted_networks = 127.0.0.2\nlogin_greeting = " + greeting + "\n"})
	imapID := `a ID ("name" "webmail" "x-originating-ip" "203.0.113.7" "X-Originating-Port" "4711" "x-connected-ip" "198.51.100.1" "x-connected-port" "993" "x-proxy-ttl" "3" "x-session-id" "webmail-1" "x-forward-foo" "bar")`
	for _, tc := range []struct {
		svc      string
		sessions []trustedSession
	}{
		{"imap-login", []trustedSession{
			{"127.0.0.2", []trustedCmd{{imapID, 2}, {`b ID ("x-originating-ip" "203.0.113.99" "x-session-id" "second")`, 2}, {"c LOGOUT", 2}}},
			{"127.0.0.2", []trustedCmd{{`a ID ("x-originating-ip" "203.0.113.8" "bad" x)`, 1}, {`b ID ("x-originating-ip" "10.1")`, 2}, {"c LOGOUT", 2}}},
			{"127.0.0.3", []trustedCmd{{imapID, 2}, {"c LOGOUT", 2}}},
		}},
		{"pop3-login", []trustedSession{
			{"127.0.0.2", []trustedCmd{{"XCLIENT ADDR=203.0.113.9 PORT=4711 SESSION=proxy-1 TTL=3 X-OTHER=1", 1}, {"xclient addr=203.0.113.10 PORT=0", 1}, {"XCLIENT TTL=x", 1}, {"QUIT", 1}}},
			{"127.0.0.2", []trustedCmd{{"XOIP 203.0.113.11", 1}, {"QUIT", 1}}},
			{"127.0.0.3", []trustedCmd{{"XCLIENT ADDR=203.0.113.9 SESSION=proxy-2", 1}, {"XOIP 203.0.113.9", 1}, {"QUIT", 1}}},
		}},
	} {
		t.Run(tc.svc, func(t *testing.T) {
			proto := strings.TrimSuffix(tc.svc, "-login")
			sink := newSyslogSink(t)
			l := startLab(t, tc.svc, "base_dir = "+d.BaseDir+"\ndisable_plaintext_auth = no\nlogin_trusted_networks = 127.0.0.2\nlogin_log_path = "+sink.path, "service_count = 1")
			mark := d.LogMark()
			var dovecotLines, ourLines []string
			for i, s := range tc.sessions {
				want := s.run(t, d.Port(proto))
				got := s.run(t, l.port)
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("session %d from %s: replies (-Dovecot +loginsvc):\n%s", i, s.src, diff)
				}
				ourLines = append(ourLines, sink.next(t))
			}
			// Dovecot's disconnect lines, in the order the sessions ended.
			deadline := time.Now().Add(10 * time.Second)
			for {
				dovecotLines = nil
				for _, line := range strings.Split(d.LogSince(mark), "\n") {
					if _, text, ok := strings.Cut(line, " "+tc.svc+": Info: "); ok && strings.Contains(text, "Disconnected") {
						dovecotLines = append(dovecotLines, tc.svc+": "+text)
					}
				}
				if len(dovecotLines) >= len(tc.sessions) || time.Now().After(deadline) {
					break
				}
				time.Sleep(25 * time.Millisecond)
			}
			for i, m := range ourLines {
				p := syslogMsg.FindStringSubmatch(m)
				if p == nil || p[1] != "22" || p[3] != "dovecot" {
					t.Fatalf("not a syslog(3) message from dovecot at mail.info: %q", m)
				}
				ourLines[i] = p[4]
			}
			if diff := cmp.Diff(maskAll(dovecotLines), maskAll(ourLines)); diff != "" {
				t.Errorf("disconnect lines (-Dovecot +loginsvc):\n%s", diff)
			}
		})
	}
}

// maskAll masks each line's generated session id and seconds.
func maskAll(lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = maskSession(l)
	}
	return out
}

// TestTrustedLoginThroughDovecot: loginsvc in front of a real Dovecot
// 2.3 (its base_dir: auth's login socket, the imap post-login socket). A
// trusted webmail (127.0.0.2) forwards its user's address and session
// id with ID, the user fails once, then logs in and out. Dovecot's own
// auth (auth_verbose) names the forwarded client and session in its
// failure line, Dovecot's imap process (mail_log_prefix with %r) names
// it after the hand-off, and loginsvc's Dovecot-format lines
// (login_log_path) carry it in "Login:" and in the failed attempt's
// "Disconnected" line, in which fail2ban's default-mode dovecot filter
// finds the forwarded address.
func TestTrustedLoginThroughDovecot(t *testing.T) {
	dovecotlab.SkipIfUnavailable(t)
	d := dovecotlab.Start(t, dovecotlab.Config{NoAccessCheck: true, Protocols: []string{"imap"},
		Users: map[string]string{"alice": "secret"},
		Extra: "auth_verbose = yes\nmail_log_prefix = \"%s(%u)<%{pid}><%{session}><%r>: \"\n"})
	sink := newSyslogSink(t)
	l := startLab(t, "imap-login", "base_dir = "+d.BaseDir+"\ndisable_plaintext_auth = no\nlogin_trusted_networks = 127.0.0.2\nlogin_log_path = "+sink.path, "service_count = 1")
	mark := d.LogMark()

	c := l.dial("127.0.0.2")
	if g := c.line(); !strings.HasPrefix(g, "* OK ") {
		t.Fatalf("greeting %q", g)
	}
	c.cmd(`a ID ("name" "webmail" "x-originating-ip" "203.0.113.7" "x-originating-port" "4711" "x-session-id" "webmail-42")`)
	c.line()
	if r := c.cmd("b LOGIN alice wrong"); !strings.HasPrefix(r, "b NO ") {
		t.Fatalf("wrong password: %q", r)
	}
	if r := c.cmd("c LOGOUT"); r != "* BYE Logging out" {
		t.Fatalf("LOGOUT: %q", r)
	}
	c2 := l.dial("127.0.0.2")
	c2.line()
	c2.cmd(`a ID ("x-originating-ip" "203.0.113.7" "x-session-id" "webmail-43")`)
	c2.line()
	if r := c2.cmd("b LOGIN alice secret"); !strings.HasPrefix(r, "b OK ") {
		t.Fatalf("LOGIN: %q", r)
	}
	if r := c2.cmd("c LOGOUT"); r != "* BYE Logging out" { // Dovecot's imap, after the hand-off
		t.Errorf("LOGOUT after login: %q", r)
	}

	// Dovecot's own log: auth's failure line and the imap process's.
	for _, want := range []string{
		"auth: Info: passwd-file(alice,203.0.113.7,<webmail-42>): Password mismatch",
		"imap(alice)<",
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		line, err := d.WaitLog(ctx, mark, want)
		cancel()
		if err != nil {
			t.Error(err)
			continue
		}
		if want == "imap(alice)<" && !strings.Contains(line, "><webmail-43><203.0.113.7>: ") {
			t.Errorf("Dovecot's imap log line %q lacks the forwarded session and rip", line)
		}
	}

	// loginsvc's lines, as Dovecot's imap-login would write them.
	var lines []string
	var file strings.Builder
	for len(lines) < 2 {
		_, _, msg, line := mailLogLine(t, sink.next(t))
		lines = append(lines, regexp.MustCompile(`mpid=\d+`).ReplaceAllString(maskSession(msg), "mpid=N"))
		file.WriteString(line)
	}
	want := []string{
		"imap-login: Disconnected: Aborted login by logging out (auth failed, 1 attempts in N secs): user=<alice>, method=PLAIN, rip=203.0.113.7, lip=127.0.0.1, secured, session=<webmail-42>",
		"imap-login: Login: user=<alice>, method=PLAIN, rip=203.0.113.7, lip=127.0.0.1, mpid=N, secured, session=<webmail-43>",
	}
	if diff := cmp.Diff(want, lines); diff != "" {
		t.Errorf("loginsvc's Dovecot-format lines (-want +got):\n%s", diff)
	}
	if ips, _ := fail2ban(t, file.String(), "/etc/fail2ban/filter.d/dovecot.conf"); !slices.Equal(ips, []string{"203.0.113.7"}) {
		t.Errorf("fail2ban-regex (default mode) found %q, want 203.0.113.7 once, in:\n%s", ips, file.String())
	}
}

// TestTrustedLoginDovecot24: a trusted webmail's forwarded address and
// session reach a real Dovecot 2.4.1 through the 2.4 hand-off (its imap
// log line, mail_log_prefix with the remote_ip and session).
func TestTrustedLoginDovecot24(t *testing.T) {
	b := startDovecot24(t)
	l := startLab(t, "imap-login", "base_dir = "+b.baseDir+"\nlogin_trusted_networks = 127.0.0.2", "service_count = 0")
	c := l.dial("127.0.0.2")
	c.line()
	c.cmd(`a ID ("x-originating-ip" "2001:db8::7" "x-session-id" "webmail-24")`)
	c.line()
	if r := c.cmd(`b LOGIN ` + authUser + ` "` + authPass + `"`); !strings.HasPrefix(r, "b OK ") {
		t.Fatalf("LOGIN: %q", r)
	}
	c.cmd("c LOGOUT")
	b.waitLog(t, "<rip=2001:db8::7><webmail-24>: ")
	l.mustLog("Login: user=<alice>, method=PLAIN, rip=2001:db8::7, lip=127.0.0.1, mpid=", "session=<webmail-24>")
}
