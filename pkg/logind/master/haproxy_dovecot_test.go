package master

import (
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/tcpwrapd/tcpwrapd/internal/dovecot24lab"
	"github.com/tcpwrapd/tcpwrapd/internal/dovecotlab"
	"github.com/tcpwrapd/tcpwrapd/internal/peertest"
)

// A client behind a real HAProxy logs in through loginsvc to a real
// Dovecot: Dovecot's auth and its imap name the client's address, not
// the proxy's (issue 13, "a client behind HAProxy (haproxy = yes) ...
// appear in Dovecot's own log with their real rip").

// sessionID finds the session=<...> of loginsvc's Login: line.
var sessionID = regexp.MustCompile(`session=<([^>]+)>`)

// TestHAProxyDovecot23Login: through HAProxy (send-proxy and
// send-proxy-v2) to loginsvc's haproxy = yes listener and on to
// Dovecot 2.3, in both modes.
func TestHAProxyDovecot23Login(t *testing.T) {
	peertest.Require(t, "dovecot 2.3", dovecotlab.Available())
	d := dovecotlab.Start(t, dovecotlab.Config{
		NoAccessCheck: true, NoLoginListeners: true, Protocols: []string{"imap"},
		Users: map[string]string{authUser: authPass},
		Extra: "auth_debug = yes\nmail_log_prefix = \"%s(%u)<rip=%r><%{session}>: \"\n",
	})
	if err := d.Deliver(authUser, authMsg); err != nil {
		t.Fatal(err)
	}
	testHAProxyDovecotLogin(t, backend{baseDir: d.BaseDir, log: d.Log}, "auth: Debug: passwd-file("+authUser+",%s,<")
}

// TestHAProxyDovecot24Login is TestHAProxyDovecot23Login against
// Dovecot 2.4.1; under CI=true it must run.
func TestHAProxyDovecot24Login(t *testing.T) {
	dovecot24lab.Require(t)
	d := dovecot24lab.Start(t, dovecot24lab.Config{
		NoLoginListeners: true, Protocols: []string{"imap"},
		Users: map[string]string{authUser: authPass},
		Extra: "auth_debug = yes\nmail_log_prefix = \"%{service}(%{user})<rip=%{remote_ip}><%{session}>: \"\n",
	})
	if err := d.Deliver(authUser, authMsg); err != nil {
		t.Fatal(err)
	}
	testHAProxyDovecotLogin(t, backend{baseDir: d.BaseDir(), log: d.Log}, "auth("+authUser+",%s,sasl:plain)<")
}

// testHAProxyDovecotLogin logs alice in through HAProxy and loginsvc
// into b from a loopback address other than HAProxy's (127.0.0.1), with
// a pipelined SELECT and a FETCH, for each mode and each PROXY protocol
// version, and checks the logs of the session: loginsvc's Login: line,
// Dovecot's auth lines (its AUTH request as auth_debug shows it, and
// authPrefix: the log prefix of its passdb lookup, %s the client's
// address) and its imap lines name the client; HAProxy's address
// appears only as the real_rip.
func testHAProxyDovecotLogin(t *testing.T, b backend, authPrefix string) {
	_, err := exec.LookPath("haproxy")
	peertest.Require(t, "haproxy", err)
	for _, mode := range authModes {
		t.Run(mode.name, func(t *testing.T) {
			// A proxied client is secured only by the proxy's TLS (SSL
			// TLV) or login_trusted_networks, as in Dovecot: this one
			// is neither, so plaintext is allowed outright.
			l, hport := haproxyLab(t, "base_dir = "+b.baseDir+"\ndisable_plaintext_auth = no", mode.conf)
			v1Port, v2Port := startHAProxy(t, hport)
			for _, tc := range []struct {
				name string
				port int
				src  string // the client's address: a line of its own
			}{{"send-proxy", v1Port, "127.0.0.7"}, {"send-proxy-v2", v2Port, "127.0.0.8"}} {
				t.Run(tc.name, func(t *testing.T) {
					c := dialRetry(t, tc.port, tc.src)
					if g := c.line(); !strings.Contains(g, " AUTH=PLAIN") || strings.Contains(g, "LOGINDISABLED") {
						t.Fatalf("greeting through haproxy %q", g)
					}
					c.c.Write([]byte("a LOGIN " + authUser + " \"" + authPass + "\"\r\nb SELECT INBOX\r\n"))
					loggedIn(t, c, "a")
					want := "Login: user=<" + authUser + ">, method=PLAIN, rip=" + tc.src + ", lip=127.0.0.1, mpid="
					l.mustLog(want)
					m := sessionID.FindStringSubmatch(lineWith(l.logs.String(), want))
					if m == nil {
						t.Fatalf("no session in loginsvc's Login: line:\n%s", l.logs.String())
					}
					session, authPrefix := m[1], fmt.Sprintf(authPrefix, tc.src)
					b.waitLog(t, "imap("+authUser+")<rip="+tc.src+"><"+session+">", "Logged out")
					b.waitLog(t, authPrefix, session)
					b.waitLog(t, "client in: AUTH\t", "\tsession="+session+"\t", "\trip="+tc.src+"\t", "\treal_rip=127.0.0.1\t")
					// Besides the real_rip and the lip, no line of the
					// session names HAProxy's address.
					proxy := strings.NewReplacer("\treal_rip=127.0.0.1\t", "\t", "\tlip=127.0.0.1\t", "\t")
					for _, line := range strings.Split(b.log(), "\n") {
						if strings.Contains(line, session) && strings.Contains(proxy.Replace(line), "127.0.0.1") {
							t.Errorf("Dovecot's line of the session names the proxy: %q", line)
						}
					}
				})
			}
		})
	}
}

// lineWith returns the first line of text that contains sub.
func lineWith(text, sub string) string {
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, sub) {
			return line
		}
	}
	return ""
}
