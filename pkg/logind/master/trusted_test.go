package master

import (
	"strings"
	"testing"
)

// TestTrustedPeerForwardsTheClient: in both modes, a peer in
// login_trusted_networks (127.0.0.2) forwards its client's address with
// IMAP ID or POP3 XCLIENT, and the login process's disconnect line, as
// the supervisor logs it, names the forwarded client; an untrusted peer
// (127.0.0.3) cannot, and its own address is logged.
func TestTrustedPeerForwardsTheClient(t *testing.T) {
	for _, mode := range []struct{ name, conf string }{
		{"high-security", "service_count = 1"},
		{"high-performance", "service_count = 0"},
	} {
		t.Run("imap "+mode.name, func(t *testing.T) {
			l := startLab(t, "imap-login", "login_trusted_networks = 127.0.0.2/32", mode.conf)
			id := `a ID ("name" "webmail" "x-originating-ip" "203.0.113.7" "x-originating-port" "4711" "x-session-id" "webmail-1")`
			for _, src := range []string{"127.0.0.2", "127.0.0.3"} {
				c := l.dial(src)
				c.line()
				got := []string{c.cmd(id), c.line(), c.cmd("b LOGOUT"), c.line()}
				want := []string{`* ID ("name" "Dovecot")`, "a OK ID completed.", "* BYE Logging out", "b OK Logout completed."}
				if strings.Join(got, "|") != strings.Join(want, "|") {
					t.Errorf("from %s: got %q\nwant %q", src, got, want)
				}
			}
			for _, line := range []string{
				"user=<>, rip=203.0.113.7, lip=127.0.0.1, secured, session=<webmail-1>",
				"user=<>, rip=127.0.0.3, lip=127.0.0.1, session=<",
			} {
				if !l.hasLog(line) {
					t.Errorf("no log line %q", line)
				}
			}
			if n := strings.Count(l.logs.String(), "rip=203.0.113.7"); n != 1 {
				t.Errorf("rip=203.0.113.7 logged %d times, want once (the untrusted peer's ID must not count)", n)
			}
		})
		t.Run("pop3 "+mode.name, func(t *testing.T) {
			l := startLab(t, "pop3-login", "login_trusted_networks = 127.0.0.2", mode.conf)
			for _, tc := range []struct{ src, greeting, reply string }{
				{"127.0.0.2", "+OK [XCLIENT] loginsvc ready.", "+OK Updated"},
				{"127.0.0.3", "+OK loginsvc ready.", "+OK You are not from trusted IP - ignoring"},
			} {
				c := l.dial(tc.src)
				got := []string{c.line(), c.cmd("XCLIENT ADDR=203.0.113.9 PORT=4711 SESSION=proxy-" + tc.src), c.cmd("QUIT")}
				want := []string{tc.greeting, tc.reply, "+OK Logging out"}
				if strings.Join(got, "|") != strings.Join(want, "|") {
					t.Errorf("from %s: got %q\nwant %q", tc.src, got, want)
				}
			}
			for _, line := range []string{
				"user=<>, rip=203.0.113.9, lip=127.0.0.1, secured, session=<proxy-127.0.0.2>",
				"user=<>, rip=127.0.0.3, lip=127.0.0.1, session=<",
			} {
				if !l.hasLog(line) {
					t.Errorf("no log line %q", line)
				}
			}
		})
	}
}
