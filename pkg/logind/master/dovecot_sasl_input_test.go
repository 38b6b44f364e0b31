package master

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestDovecot23SASLResponseAlphabet: a SASL response with a character
// outside the base64 alphabet (a space, a tab, a control character, "!")
// is failed by the login process itself, as Dovecot 2.3.19.1's
// imap-login does (measured against it: "NO [ALERT] Invalid base64 in
// response", a failed attempt, nothing sent to auth), while malformed
// base64 of the right characters goes to auth, which answers BAD
// (code=invalid_base64). Before, every response went to auth, whose
// base64 decoder skips whitespace: " YWxpY2U=" was taken as "alice" and
// "!!!" answered BAD instead of Dovecot's NO.
func TestDovecot23SASLResponseAlphabet(t *testing.T) {
	b := startDovecot23(t)
	l, _, _, _ := tlsLab(t, "imap-login", "base_dir = "+b.baseDir, "service_count = 0\nprocess_min_avail = 1")
	user := base64.StdEncoding.EncodeToString([]byte(authUser))
	tests := []struct{ name, resp, want string }{
		{"bang", "!!!", "a NO [ALERT] Invalid base64 in response"},
		{"leading space", " " + user, "a NO [ALERT] Invalid base64 in response"},
		{"inner space", user[:4] + " " + user[4:], "a NO [ALERT] Invalid base64 in response"},
		{"trailing tab", user + "\t", "a NO [ALERT] Invalid base64 in response"},
		{"control character", "a\x01b=", "a NO [ALERT] Invalid base64 in response"},
		{"no padding", strings.TrimRight(user, "="), "a BAD Invalid base64 data in continued response"},
		{"padding inside", user[:2] + "=" + user[2:], "a BAD Invalid base64 data in continued response"},
		{"valid", user, "+ UGFzc3dvcmQ6"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := l.dial("")
			c.line()
			if r := c.cmd("a AUTHENTICATE LOGIN"); r != "+ VXNlcm5hbWU6" {
				t.Fatalf("AUTHENTICATE LOGIN: %q", r)
			}
			if r := c.cmd(tt.resp); r != tt.want {
				t.Errorf("response %q: %q, want %q", tt.resp, r, tt.want)
			}
			if strings.HasPrefix(tt.want, "+ ") {
				c.cmd("*")
			}
			// The attempt ended either way: the next one runs.
			if r := c.cmd("b AUTHENTICATE LOGIN"); r != "+ VXNlcm5hbWU6" {
				t.Errorf("AUTHENTICATE LOGIN after it: %q", r)
			}
			c.cmd("*")
			c.cmd("z LOGOUT")
		})
	}
	l.mustLog("Disconnected: Aborted login by logging out (auth failed, 2 attempts in ", "method=LOGIN")
	// Alone, the failed response leaves the client "waiting" for SASL
	// input in Dovecot's disconnect line.
	c := l.dial("")
	c.line()
	c.cmd("a AUTHENTICATE LOGIN")
	if r := c.cmd(" " + user); r != "a NO [ALERT] Invalid base64 in response" {
		t.Errorf("response with a space: %q", r)
	}
	c.cmd("z LOGOUT")
	l.mustLog("Disconnected: Aborted login by logging out (client didn't finish SASL auth, waited ", "method=LOGIN")
}

// TestDovecot23AbortStorm: 300 "AUTHENTICATE PLAIN" + "*" pairs in one
// write, then a LOGIN, through a real Dovecot 2.3's auth. Dovecot's
// imap-login answers the 300 in well under a second. Before, each
// authentication ended by waiting for its client-hangup watch's 100 ms
// poll step, so the storm took 30 s (3,000 took the whole pre-login
// timeout: 1,735 answered, then "* BYE Disconnected for inactivity."),
// and every login's reply came up to 100 ms late. The bound (15 s) is
// far above what it takes now on a busy 2-core machine.
func TestDovecot23AbortStorm(t *testing.T) {
	b := startDovecot23(t)
	l, _, _, _ := tlsLab(t, "imap-login", "base_dir = "+b.baseDir, "service_count = 1")
	const n = 300
	c := l.dial("")
	c.line()
	var storm strings.Builder
	for i := range n {
		fmt.Fprintf(&storm, "a%d AUTHENTICATE PLAIN\r\n*\r\n", i)
	}
	start := time.Now()
	c.c.SetDeadline(start.Add(60 * time.Second))
	c.c.Write([]byte(storm.String()))
	for i := range n {
		if r := c.line(); r != "+ " {
			t.Fatalf("cycle %d: %q, want the continuation", i, r)
		}
		if r, want := c.line(), fmt.Sprintf("a%d BAD Authentication aborted by client.", i); r != want {
			t.Fatalf("cycle %d: %q, want %q", i, r, want)
		}
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("%d aborted authentications took %v", n, d)
	}
	c.c.Write([]byte("a LOGIN " + authUser + " \"" + authPass + "\"\r\nb SELECT INBOX\r\n"))
	loggedIn(t, c, "a")
	l.mustLog("Login: user=<" + authUser + ">, method=PLAIN, rip=127.0.0.1")
}
