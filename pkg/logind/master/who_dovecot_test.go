package master

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/tcpwrapd/tcpwrapd/pkg/ctl"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/control"
)

// loginctlWho runs `loginctl who ARGS` against the lab's control socket
// and returns its output.
func (l *lab) loginctlWho(args ...string) string {
	l.t.Helper()
	var out, errOut bytes.Buffer
	argv := append([]string{"loginctl", "who", "--socket", l.cfg.ControlSocket()}, args...)
	if code := ctl.Run(argv, &out, &errOut, "test"); code != 0 {
		l.t.Fatalf("loginctl who: exit %d: %s", code, errOut.String())
	}
	return out.String()
}

// command sends an IMAP command and returns the lines up to its tagged
// reply.
func (c *tclient) command(tag, cmd string) []string {
	c.t.Helper()
	c.c.Write([]byte(tag + " " + cmd + "\r\n"))
	return c.readTagged(tag)
}

// TestWhoDovecot23: see testWho.
func TestWhoDovecot23(t *testing.T) { testWho(t, startDovecot23(t)) }

// TestWhoDovecot24: testWho against Dovecot 2.4.1.
func TestWhoDovecot24(t *testing.T) { testWho(t, startDovecot24(t)) }

// testWho: a client that logs in to a real Dovecot through loginsvc over
// TLS is listed by loginctl who (user, protocol, rip, TLS, the login
// process that relays it, Dovecot's imap process as the mail pid) while
// its session lasts, and disappears after LOGOUT. A plaintext client
// (loopback: secured) leaves loginsvc at the hand-off: it is only listed
// by loginctl who --recent, as handed-off. Its wrong password before is
// counted as a failed authentication.
func testWho(t *testing.T, b backend) {
	l, sport, pool, _ := tlsLab(t, "imap-login", "base_dir = "+b.baseDir, "service_count = 1")
	c, err := dialTLS(t, sport, "", tlsClientConfig(pool))
	if err != nil {
		t.Fatal(err)
	}
	if g := c.line(); !strings.HasPrefix(g, "* OK") {
		t.Fatalf("greeting %q", g)
	}
	if r := c.command("a", "LOGIN "+authUser+" \""+authPass+"\""); !strings.HasPrefix(r[len(r)-1], "a OK") {
		t.Fatalf("LOGIN: %q\nDovecot log:\n%s", r, b.log())
	}
	if r := c.command("b", "SELECT INBOX"); !strings.HasPrefix(r[len(r)-1], "b OK") {
		t.Fatalf("SELECT after the login: %q\nDovecot log:\n%s", r, b.log())
	}
	s := l.waitWho(false, 1)[0]
	if s.User != authUser || s.Protocol != "imap" || s.Mech != "PLAIN" || s.RemoteIP.String() != "127.0.0.1" || !s.TLS || s.State != "proxying" {
		t.Errorf("who: %+v", s)
	}
	if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", s.MailPID)); strings.TrimSpace(string(comm)) != "imap" {
		t.Errorf("mail pid %d is %q, want Dovecot's imap", s.MailPID, comm)
	}
	if !hasProc(l.status().Procs, s.PID, 1) {
		t.Errorf("login pid %d not among the processes with a proxying client: %+v", s.PID, l.status().Procs)
	}
	out := l.loginctlWho()
	t.Logf("loginctl who:\n%s", out)
	want := fmt.Sprintf("%s  imap   127.0.0.1  %s  yes  %d  %d", authUser, s.Since.Local().Format("2006-01-02 15:04:05"), s.PID, s.MailPID)
	if !strings.Contains(out, want) {
		t.Errorf("loginctl who does not say %q", want)
	}

	if r := c.command("z", "LOGOUT"); !strings.HasPrefix(r[len(r)-1], "z OK") {
		t.Errorf("LOGOUT: %q", r)
	}
	l.waitWho(false, 0)
	if out := l.loginctlWho(); strings.Contains(out, authUser) {
		t.Errorf("after LOGOUT, loginctl who:\n%s", out)
	}

	// Plaintext: handed off, a recent login only.
	p := l.dial("")
	if g := p.line(); !strings.HasPrefix(g, "* OK") {
		t.Fatalf("greeting %q", g)
	}
	if r := p.cmd("a0 LOGIN " + authUser + " wrong"); !strings.HasPrefix(r, "a0 NO [AUTHENTICATIONFAILED]") {
		t.Fatalf("wrong password: %q", r)
	}
	if r := p.command("a", "LOGIN "+authUser+" \""+authPass+"\""); !strings.HasPrefix(r[len(r)-1], "a OK") {
		t.Fatalf("plaintext LOGIN: %q", r)
	}
	// Its login process reports it gone right after the hand-off.
	l.waitFor("both clients gone from loginsvc", func(s control.ServiceStatus) bool { return s.Counters.Closed == 2 })
	rec := l.waitWho(true, 1)[0]
	if rec.User != authUser || rec.TLS || rec.State != control.StateHandedOff || rec.MailPID == 0 {
		t.Errorf("who --recent: %+v", rec)
	}
	if live := l.queryWho(false); len(live) != 0 {
		t.Errorf("a handed-off plaintext client listed as live: %+v", live)
	}
	if out := l.loginctlWho("--recent"); !strings.Contains(out, "handed-off") {
		t.Errorf("loginctl who --recent:\n%s", out)
	}
	p.command("z", "LOGOUT")
	st := l.status()
	if st.Counters.Logins != 2 || st.Counters.AuthFailures != 1 || st.Counters.Violations != 0 {
		t.Errorf("counters %+v, want 2 logins, 1 failed authentication, no violation", st.Counters)
	}
}

// hasProc reports whether procs has pid with proxying clients.
func hasProc(procs []control.ProcInfo, pid, proxying int) bool {
	for _, p := range procs {
		if p.PID == pid && p.Proxying == proxying {
			return true
		}
	}
	return false
}
