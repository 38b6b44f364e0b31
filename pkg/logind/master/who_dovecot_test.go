package master

import (
	"bytes"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcpwrapd/tcpwrapd/internal/dovecotlab"
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

// command sends an IMAP command and reads up to its tagged reply; it
// returns the lines read.
func (c *tclient) command(tag, cmd string) []string {
	c.t.Helper()
	c.c.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := fmt.Fprintf(c.c, "%s %s\r\n", tag, cmd); err != nil {
		c.t.Fatalf("%s %s: %v", tag, cmd, err)
	}
	var lines []string
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("%s %s: %v after %q", tag, cmd, err, lines)
		}
		lines = append(lines, strings.TrimRight(line, "\r\n"))
		if strings.HasPrefix(line, tag+" ") {
			return lines
		}
	}
}

// TestWhoRealDovecotLogin: a client that logs in to a real Dovecot 2.3
// through loginsvc over TLS is listed by loginctl who (user, protocol,
// rip, TLS, the login process that relays it, Dovecot's imap process as
// the mail pid) while its session lasts, and disappears after LOGOUT. A
// plaintext client (loopback: secured) leaves loginsvc at the hand-off:
// it is only listed by loginctl who --recent, as handed-off. Its wrong
// password before is counted as a failed authentication.
func TestWhoRealDovecotLogin(t *testing.T) {
	d := dovecotlab.Start(t, dovecotlab.Config{Protocols: []string{"imap"}, NoAccessCheck: true,
		Users: map[string]string{"alice": "alicepw", "bob": "bobpw"}})
	if u, err := user.Lookup(dovecotlab.InternalUser); err == nil { // the lab's mail homes: writable by the mail user
		uid, _ := strconv.Atoi(u.Uid)
		os.Chown(filepath.Join(d.Dir, "home"), uid, -1)
	}
	l, sport, pool, _ := tlsLab(t, "imap-login", "base_dir = "+d.BaseDir, "service_count = 1")

	c, err := dialTLS(t, sport, "", tlsClientConfig(pool))
	if err != nil {
		t.Fatal(err)
	}
	c.c.SetReadDeadline(time.Now().Add(15 * time.Second))
	if g, err := c.r.ReadString('\n'); err != nil || !strings.HasPrefix(g, "* OK") {
		t.Fatalf("greeting %q, %v", g, err)
	}
	if r := c.command("a", "LOGIN alice alicepw"); !strings.HasPrefix(r[len(r)-1], "a OK") {
		t.Fatalf("LOGIN: %q\nDovecot log:\n%s", r, readFile(d.LogPath))
	}
	if r := c.command("b", "SELECT INBOX"); !strings.HasPrefix(r[len(r)-1], "b OK") {
		t.Fatalf("SELECT after the login: %q\nDovecot log:\n%s", r, readFile(d.LogPath))
	}
	s := l.waitWho(false, 1)[0]
	if s.User != "alice" || s.Protocol != "imap" || s.Mech != "PLAIN" || s.RemoteIP.String() != "127.0.0.1" || !s.TLS || s.State != "proxying" {
		t.Errorf("who: %+v", s)
	}
	if comm := readFile(fmt.Sprintf("/proc/%d/comm", s.MailPID)); strings.TrimSpace(comm) != "imap" {
		t.Errorf("mail pid %d is %q, want Dovecot's imap", s.MailPID, comm)
	}
	if ps := l.status().Procs; !hasProc(ps, s.PID, 1) {
		t.Errorf("login pid %d not among the processes with a proxying client: %+v", s.PID, ps)
	}
	out := l.loginctlWho()
	t.Logf("loginctl who:\n%s", out)
	want := fmt.Sprintf("alice  imap   127.0.0.1  %s  yes  %d  %d", s.Since.Local().Format("2006-01-02 15:04:05"), s.PID, s.MailPID)
	if !strings.Contains(out, want) {
		t.Errorf("loginctl who does not say %q", want)
	}

	if r := c.command("z", "LOGOUT"); !strings.HasPrefix(r[len(r)-1], "z OK") {
		t.Errorf("LOGOUT: %q", r)
	}
	l.waitWho(false, 0)
	if out := l.loginctlWho(); strings.Contains(out, "alice") {
		t.Errorf("after LOGOUT, loginctl who:\n%s", out)
	}

	// Plaintext: handed off, a recent login only.
	p := l.dial("")
	p.c.SetReadDeadline(time.Now().Add(15 * time.Second))
	if g, err := p.r.ReadString('\n'); err != nil || !strings.HasPrefix(g, "* OK") {
		t.Fatalf("greeting %q, %v", g, err)
	}
	if r := p.command("a0", "LOGIN bob wrong"); !strings.HasPrefix(r[len(r)-1], "a0 NO [AUTHENTICATIONFAILED]") {
		t.Fatalf("wrong password: %q", r)
	}
	if r := p.command("a", "LOGIN bob bobpw"); !strings.HasPrefix(r[len(r)-1], "a OK") {
		t.Fatalf("plaintext LOGIN: %q", r)
	}
	// Its login process reports it gone right after the hand-off.
	l.waitFor("both clients gone from loginsvc", func(s control.ServiceStatus) bool { return s.Counters.Closed == 2 })
	rec := l.waitWho(true, 1)[0]
	if rec.User != "bob" || rec.TLS || rec.State != control.StateHandedOff {
		t.Errorf("who --recent: %+v", rec)
	}
	if live := l.queryWho(false); len(live) != 0 {
		t.Errorf("a handed-off plaintext client listed as live: %+v", live)
	}
	if out := l.loginctlWho("--recent"); !strings.Contains(out, "handed-off") || !strings.Contains(out, "bob") {
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

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}
