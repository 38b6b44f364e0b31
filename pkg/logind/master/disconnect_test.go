package master

import (
	"crypto/tls"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"

	"github.com/tcpwrapd/tcpwrapd/internal/proxytest"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/control"
)

var (
	logMsgRE    = regexp.MustCompile(`msg=("(?:[^"\\]|\\.)*"|\S+)`)
	sessionRE   = regexp.MustCompile(`session=<([A-Za-z0-9+/]{16})>`)
	authSecsRE  = regexp.MustCompile(`\(no auth attempts in \d+ secs\)`)
	disconnectS = "Disconnected"
)

// disconnects returns the "Disconnected..." lines in the lab's log, in
// order, with the seconds as N and the session id as S; sessions are the
// ids.
func (l *lab) disconnects() (lines, sessions []string) {
	for _, line := range strings.Split(l.logs.String(), "\n") {
		m := logMsgRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		msg := m[1]
		if u, err := strconv.Unquote(msg); err == nil {
			msg = u
		}
		if !strings.HasPrefix(msg, disconnectS+":") {
			continue
		}
		if s := sessionRE.FindStringSubmatch(msg); s != nil {
			sessions = append(sessions, s[1])
		}
		msg = sessionRE.ReplaceAllString(msg, "session=<S>")
		lines = append(lines, authSecsRE.ReplaceAllString(msg, "(no auth attempts in N secs)"))
	}
	return lines, sessions
}

// waitDisconnects waits up to 5 s for the log to hold n disconnect
// lines and returns them (fewer if they did not come).
func (l *lab) waitDisconnects(n int) []string {
	deadline := time.Now().Add(5 * time.Second)
	for {
		lines, _ := l.disconnects()
		if len(lines) >= n || time.Now().After(deadline) {
			return lines
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// disconnectLine is the line Dovecot 2.3.19.1 logs, with N secs and
// session S, for a loopback client (rip == lip: "secured").
func disconnectLine(why string) string {
	if strings.Contains(why, "): user=") { // the extra reason and user given
		return "Disconnected: " + why + ", rip=127.0.0.1, lip=127.0.0.1, secured, session=<S>"
	}
	return "Disconnected: " + why + " (no auth attempts in N secs): user=<>, rip=127.0.0.1, lip=127.0.0.1, secured, session=<S>"
}

// reset closes c with a TCP reset (SO_LINGER 0).
func reset(c *tclient) {
	c.c.(*net.TCPConn).SetLinger(0)
	c.c.Close()
}

// disconnectCase is a client session (run, after the greeting) and the
// reason Dovecot logs for it.
type disconnectCase struct {
	name string
	run  func(c *tclient)
	why  string
}

// TestDisconnectLogLines: one line per client that goes away, with
// Dovecot's reason and format, for each way to go in both protocols (the
// texts are Dovecot 2.3.19.1's for the same sessions); no password is
// ever logged.
func TestDisconnectLogLines(t *testing.T) {
	for _, proto := range []struct {
		svc   string
		cases []disconnectCase
	}{
		{"imap-login", []disconnectCase{
			{"LOGOUT", func(c *tclient) { c.cmd("a LOGOUT") }, "Aborted login by logging out"},
			{"close", func(c *tclient) { c.c.Close() }, "Connection closed"},
			{"close inside a literal", func(c *tclient) {
				c.c.Write([]byte("a LOGIN bench {4+}\r\nab"))
				time.Sleep(50 * time.Millisecond)
				c.c.Close()
			}, "Connection closed"},
			{"reset", reset, "Connection closed: read(size=1026) failed: Connection reset by peer"},
			{"too many invalid commands", func(c *tclient) { c.c.Write([]byte("a X\r\nb X\r\nc X\r\n")); c.drain() }, "Too many invalid commands"},
			{"input buffer full", func(c *tclient) { c.c.Write([]byte("a LOGIN " + strings.Repeat("x", 2000) + "\r\n")); c.drain() }, "Input buffer full"},
			{"literal too large", func(c *tclient) { c.c.Write([]byte("a LOGIN bench {4294967296}\r\n")); c.drain() }, "Literal size too large"},
			{"AUTHENTICATE too large", func(c *tclient) {
				c.c.Write([]byte("a AUTHENTICATE PLAIN " + strings.Repeat("A", 9000) + "\r\n"))
				c.drain()
			}, "Authentication response too large"},
			{"passwords", func(c *tclient) {
				c.c.Write([]byte("a LOGIN bench {11+}\r\ns3cr3t-lit1\r\nb LOGIN bench \"s3cr3t-quoted\"\r\nc LOGIN bench {11}\r\n"))
				c.line()
				c.line()
				c.line() // + OK
				c.c.Write([]byte("s3cr3t-lit2\r\nd LOGIN bench s3cr3t-atom\r\n"))
				c.line()
				c.line()
				c.cmd("e LOGOUT")
				// No Dovecot behind: every LOGIN is a temporary failure.
			}, "Aborted login by logging out (auth service reported temporary failure): user=<>, method=PLAIN"},
		}},
		{"pop3-login", []disconnectCase{
			{"QUIT", func(c *tclient) { c.cmd("QUIT") }, "Aborted login by logging out"},
			{"close", func(c *tclient) { c.c.Close() }, "Connection closed"},
			// Sic: Dovecot 2.3.19.1 repeats "Disconnected:".
			{"too many bad commands", func(c *tclient) { c.c.Write([]byte("X\r\nY\r\nZ\r\n")); c.drain() }, "Disconnected: Too many bad commands"},
			{"input buffer full", func(c *tclient) { c.c.Write([]byte("USER " + strings.Repeat("x", 2000) + "\r\n")); c.drain() }, "Input buffer full"},
			// No Dovecot behind: PASS is a temporary failure; the user is
			// auth's (none here), as in pop3-login, where USER sets it only
			// when plaintext is refused.
			{"password", func(c *tclient) { c.cmd("USER bench"); c.cmd("PASS s3cr3t-pop3"); c.cmd("QUIT") },
				"Aborted login by logging out (auth service reported temporary failure): user=<>, method=PLAIN"},
		}},
	} {
		t.Run(proto.svc, func(t *testing.T) {
			l := startLab(t, proto.svc, "", "service_count = 0\nprocess_min_avail = 1")
			for i, tc := range proto.cases {
				t.Run(tc.name, func(t *testing.T) {
					c := l.dial("")
					c.line()
					tc.run(c)
					lines := l.waitDisconnects(i + 1)
					if len(lines) != i+1 {
						t.Fatalf("%d disconnect lines after %d clients:\n%s", len(lines), i+1, strings.Join(lines, "\n"))
					}
					if d := cmp.Diff(disconnectLine(tc.why), lines[i]); d != "" {
						t.Errorf("(-want +got)\n%s", d)
					}
				})
			}
			time.Sleep(100 * time.Millisecond)
			lines, sessions := l.disconnects()
			if len(lines) != len(proto.cases) {
				t.Errorf("%d disconnect lines for %d clients", len(lines), len(proto.cases))
			}
			seen := map[string]bool{}
			for _, s := range sessions {
				if seen[s] {
					t.Errorf("session id %s logged twice", s)
				}
				seen[s] = true
			}
			if strings.Contains(l.logs.String(), "s3cr3t") {
				t.Errorf("a password is in the log:\n%s", l.logs.String())
			}
		})
	}
}

// TestDisconnectLogLinesClosedByServer: the pre-login deadline
// ("Inactivity", in whole seconds since accept), an eviction
// ("Connection queue full") and shutdown ("Shutting down"), in both
// protocols, as Dovecot 2.3.19.1 logs them.
func TestDisconnectLogLinesClosedByServer(t *testing.T) {
	for _, svc := range []string{"imap-login", "pop3-login"} {
		t.Run(svc, func(t *testing.T) {
			l := startLab(t, svc, "login_prelogin_timeout = 1s", "service_count = 1\nprocess_limit = 1")
			idle := l.dial("")
			idle.line()
			idle.drain()
			// Whole seconds since accept: 1, or 2 across a second's edge.
			if lines := l.waitDisconnects(1); len(lines) != 1 ||
				!strings.Contains(l.logs.String(), "Disconnected: Inactivity (no auth attempts in 1 secs)") &&
					!strings.Contains(l.logs.String(), "Disconnected: Inactivity (no auth attempts in 2 secs)") {
				t.Fatalf("after the deadline: %q", lines)
			}
			want := []string{disconnectLine("Inactivity")}
			old := l.dial("")
			old.line()
			l.waitFor("the first client logging in", func(s control.ServiceStatus) bool { return len(s.Procs) == 1 && s.Procs[0].LoggingIn == 1 })
			arrival := l.dial("")
			arrival.line()
			old.drain()
			want = append(want, disconnectLine("Connection queue full"))
			if err := l.stop(); err != nil {
				t.Fatal(err)
			}
			arrival.drain()
			want = append(want, disconnectLine("Shutting down"))
			if d := cmp.Diff(want, l.waitDisconnects(3)); d != "" {
				t.Errorf("(-want +got)\n%s", d)
			}
		})
	}
}

// TestDisconnectLogLinesAddresses: rip and lip are the PROXY header's on
// a haproxy listener, "secured" follows docs/loginsvc.md (a proxy that
// terminated TLS, login_trusted_networks, rip == lip on a direct
// connection; not a haproxy connection whose header addresses are
// equal), "TLS" after STARTTLS. As Dovecot 2.3.19.1 logged the same
// sessions.
func TestDisconnectLogLinesAddresses(t *testing.T) {
	t.Run("haproxy and trusted networks", func(t *testing.T) {
		l, hport := haproxyLab(t, "login_trusted_networks = 127.0.0.3/32", "service_count = 0\nprocess_min_avail = 1")
		for i, tc := range []struct {
			name, src string
			header    []byte
			want      string
		}{
			{"v1 header", "127.0.0.1", []byte(proxytest.V1TCP4), "rip=198.51.100.9, lip=203.0.113.1, session=<S>"},
			{"v1 header, equal addresses", "127.0.0.1", []byte("PROXY TCP4 198.51.100.7 198.51.100.7 40000 143\r\n"), "rip=198.51.100.7, lip=198.51.100.7, session=<S>"},
			{"v2 header with SSL", "127.0.0.1", proxytest.V2TCP6SSL(t), "rip=2001:db8::5, lip=2001:db8::1, secured, session=<S>"},
			{"v2 header without the client SSL bit", "127.0.0.1", proxytest.V2(t, proxyproto.PROXY, proxyproto.TCPv4, proxytest.TCP("198.51.100.4:40004"), proxytest.TCP("203.0.113.1:143"), proxytest.SSLTLV(t, tlvparse.PP2_BITFIELD_CLIENT_CERT_CONN)), "rip=198.51.100.4, lip=203.0.113.1, session=<S>"},
			{"direct, rip != lip", "127.0.0.2", nil, "rip=127.0.0.2, lip=127.0.0.1, session=<S>"},
			{"direct, trusted", "127.0.0.3", nil, "rip=127.0.0.3, lip=127.0.0.1, secured, session=<S>"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				port := l.port
				if tc.header != nil {
					port = hport
				}
				c := dialPort(t, port, tc.src)
				c.c.Write(tc.header)
				c.line()
				c.cmd("a LOGOUT")
				lines := l.waitDisconnects(i + 1)
				if len(lines) != i+1 {
					t.Fatalf("lines %q", lines)
				}
				want := "Disconnected: Aborted login by logging out (no auth attempts in N secs): user=<>, " + tc.want
				if d := cmp.Diff(want, lines[i]); d != "" {
					t.Errorf("(-want +got)\n%s", d)
				}
			})
		}
	})
	t.Run("STARTTLS", func(t *testing.T) {
		l, _, pool, _ := tlsLab(t, "imap-login", "", "service_count = 0\nprocess_min_avail = 1")
		c := l.dial("")
		c.line()
		c.cmd("a STARTTLS")
		if err := c.upgrade(tlsClientConfig(pool)); err != nil {
			t.Fatal(err)
		}
		c.cmd("b LOGOUT")
		want := []string{"Disconnected: Aborted login by logging out (no auth attempts in N secs): user=<>, rip=127.0.0.1, lip=127.0.0.1, TLS, session=<S>"}
		if d := cmp.Diff(want, l.waitDisconnects(1)); d != "" {
			t.Errorf("(-want +got)\n%s", d)
		}
		if _, ok := c.c.(*tls.Conn); !ok {
			t.Errorf("not TLS")
		}
	})
}
