package master

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcpwrapd/tcpwrapd/internal/peertest"
)

// syslogSink is a unix datagram socket standing in for the system
// logger (login_log_path = its path).
type syslogSink struct {
	path string
	c    *net.UnixConn
	got  chan string
}

func newSyslogSink(t *testing.T) *syslogSink {
	t.Helper()
	path := filepath.Join(t.TempDir(), "log")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o666)
	s := &syslogSink{path: path, c: c, got: make(chan string, 100)}
	go func() {
		buf := make([]byte, 1<<16)
		for {
			n, err := c.Read(buf)
			if err != nil {
				close(s.got)
				return
			}
			s.got <- string(buf[:n])
		}
	}()
	t.Cleanup(func() { c.Close() })
	return s
}

// next waits up to 10 s for the next message at level info (the
// clients' lines; others, such as a login process's complaint that no
// Dovecot auth is there to connect to, are logged and skipped).
func (s *syslogSink) next(t *testing.T) string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case m := <-s.got:
			if p := syslogMsg.FindStringSubmatch(m); p != nil && p[1] != "" {
				if pri, _ := strconv.Atoi(p[1]); pri&7 != 6 {
					t.Logf("syslog message skipped: %q", m)
					continue
				}
			}
			return m
		case <-deadline:
			t.Fatal("no syslog message within 10 s")
			return ""
		}
	}
}

// syslogMsg is a syslog(3) datagram as glibc writes it for a process
// that called openlog(ident, LOG_NDELAY, facility): "<PRI>Mmm dd
// hh:mm:ss ident: message", no pid.
var syslogMsg = regexp.MustCompile(`^<(\d+)>([A-Z][a-z]{2} [ 123]\d \d\d:\d\d:\d\d) ([^ :\[]+): (.*)$`)

// TestDovecotSyslogLines: with login_log_path, the login processes'
// lines reach syslog exactly as Dovecot 2.3 writes its imap-login's
// (ident dovecot, facility mail, "imap-login: " before the text), and
// fail2ban's own filter.d/dovecot.conf (Debian's fail2ban package, read
// from /etc, unchanged) finds the failures in them, the forwarded
// client's address among them. Without the setting (every other test)
// nothing changes.
func TestDovecotSyslogLines(t *testing.T) {
	sink := newSyslogSink(t)
	base := startTcpwrapd(t) // allows 127.0.0.1 only
	l := startLab(t, "imap-login", "base_dir = "+base+"\nlogin_access_sockets = tcpwrapd/access\nlogin_trusted_networks = 127.0.0.1\nlogin_log_path = "+sink.path, "service_count = 0")

	webmail := l.dial("127.0.0.1") // a trusted webmail forwarding its client
	webmail.line()
	webmail.cmd(`a ID ("x-originating-ip" "203.0.113.7")`)
	webmail.line()
	webmail.cmd("b LOGOUT")
	want := []string{"<22> dovecot: imap-login: Disconnected: Aborted login by logging out (no auth attempts in N secs): user=<>, rip=203.0.113.7, lip=127.0.0.1, secured, session=<ID>"}
	got := []string{sink.next(t)}

	bad := l.dial("127.0.0.1")
	bad.line()
	bad.cmd("a BOGUS")
	bad.cmd("b BOGUS")
	bad.cmd("c BOGUS")
	want = append(want, "<22> dovecot: imap-login: Disconnected: Too many invalid commands (no auth attempts in N secs): user=<>, rip=127.0.0.1, lip=127.0.0.1, secured, session=<ID>")
	got = append(got, sink.next(t))

	refused := l.dial("127.0.0.2")
	refused.line()
	want = append(want, "<22> dovecot: imap-login: access(tcpwrapd/access): Client refused (rip=127.0.0.2)")
	got = append(got, sink.next(t))

	var file strings.Builder // as rsyslog writes them to mail.log
	for i, m := range got {
		pri, ident, msg, line := mailLogLine(t, m)
		got[i] = "<" + pri + "> " + ident + ": " + maskSession(msg)
		file.WriteString(line)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("syslog messages (-want +got):\n%s", d)
	}

	// fail2ban's Dovecot filter: these pre-login failures are its
	// "aggressive" mode's (the default mode matches "auth failed").
	ips, summary := fail2ban(t, file.String(), "dovecot[mode=aggressive]")
	if d := cmp.Diff([]string{"127.0.0.1", "203.0.113.7"}, ips); d != "" {
		t.Errorf("fail2ban-regex found (-want +got):\n%s\nin:\n%s", d, file.String())
	}
	if m := regexp.MustCompile(`Lines: 3 lines, 0 ignored, (\d+) matched`).FindStringSubmatch(summary); m == nil || m[1] != "2" {
		t.Errorf("fail2ban-regex summary: want 2 of 3 lines matched:\n%s", summary)
	}
}

// mailLogLine splits syslog message m (see syslogMsg) into its priority,
// ident and message, and writes it as rsyslog writes it to mail.log
// (line, with its newline).
func mailLogLine(t *testing.T, m string) (pri, ident, msg, line string) {
	t.Helper()
	p := syslogMsg.FindStringSubmatch(m)
	if p == nil {
		t.Fatalf("not a syslog(3) message: %q", m)
	}
	return p[1], p[3], p[4], p[2] + " mail.example.org " + p[3] + ": " + p[4] + "\n"
}

// fail2ban runs Debian's fail2ban-regex with filter (a file, or a
// filter name with options, read from /etc/fail2ban) on the mail.log
// text lines: the addresses it finds (sorted, one per failure) and its
// summary output.
func fail2ban(t *testing.T, lines, filter string) (ips []string, summary string) {
	t.Helper()
	f2b, err := exec.LookPath("fail2ban-regex")
	peertest.Require(t, "fail2ban", err)
	logFile := filepath.Join(t.TempDir(), "mail.log")
	if err := os.WriteFile(logFile, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(f2b, "-o", "ip", logFile, filter).CombinedOutput()
	if err != nil {
		t.Fatalf("fail2ban-regex: %v\n%s", err, out)
	}
	ips = strings.Fields(string(out))
	slices.Sort(ips)
	out, _ = exec.Command(f2b, logFile, filter).CombinedOutput()
	return ips, string(out)
}

// maskSession writes a generated session id as "session=<ID>" and the
// seconds since accept ("in 0 secs", "in 1 secs" across a second's end)
// as "in N secs".
func maskSession(s string) string {
	s = regexp.MustCompile(`session=<[A-Za-z0-9+/]{16}>`).ReplaceAllString(s, "session=<ID>")
	return regexp.MustCompile(` in \d+ secs\)`).ReplaceAllString(s, " in N secs)")
}
