package e2e

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcpwrapd/tcpwrapd/internal/dovecot24lab"
	"github.com/tcpwrapd/tcpwrapd/internal/dovecotlab"
	"github.com/tcpwrapd/tcpwrapd/internal/peertest"
	"github.com/tcpwrapd/tcpwrapd/internal/testcert"
)

// loginsvc in front of Dovecot (docs/loginsvc.md, "In front of
// Dovecot"): the shipped Dovecot sides examples/dovecot2N-99-loginsvc.conf
// checked with the real Dovecot of each release, and the shipped
// examples/dovecot23-front.conf serving a real IMAP login.

// example returns the text of examples/name.
func example(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "examples", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// stockWithSnippet copies Debian's pristine configuration of the Dovecot
// package (dovecot.conf and conf.d/ from share, /usr/share/dovecot) into
// dir and drops snippet in as conf.d/99-loginsvc.conf, as the README
// tells an administrator to.
func stockWithSnippet(t *testing.T, share, dir, snippet string) {
	t.Helper()
	out, err := exec.Command("cp", "-r", filepath.Join(share, "dovecot.conf"), filepath.Join(share, "conf.d"), dir).CombinedOutput()
	if err != nil {
		t.Fatalf("copy %s: %v: %s", share, err, out)
	}
	if err := os.WriteFile(filepath.Join(dir, "conf.d", "99-loginsvc.conf"), []byte(snippet), 0o644); err != nil {
		t.Fatal(err)
	}
}

// loginListeners reads doveconf -a output and returns, per login service
// (a service whose name ends in -login), each inet_listener with its
// port as printed ("" when doveconf printed none: the default).
func loginListeners(doveconf string) map[string]map[string]string {
	out := map[string]map[string]string{}
	var path []string
	for _, line := range strings.Split(doveconf, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasSuffix(line, "{"):
			path = append(path, strings.TrimSpace(strings.TrimSuffix(line, "{")))
			if len(path) == 2 && strings.HasPrefix(path[0], "service ") && strings.HasSuffix(path[0], "-login") && strings.HasPrefix(path[1], "inet_listener ") {
				svc, l := strings.TrimPrefix(path[0], "service "), strings.TrimPrefix(path[1], "inet_listener ")
				if out[svc] == nil {
					out[svc] = map[string]string{}
				}
				out[svc][l] = ""
			}
		case line == "}":
			if len(path) > 0 {
				path = path[:len(path)-1]
			}
		case len(path) == 2 && strings.HasPrefix(line, "port = "):
			if l := out[strings.TrimPrefix(path[0], "service ")]; l != nil {
				l[strings.TrimPrefix(path[1], "inet_listener ")] = strings.TrimPrefix(line, "port = ")
			}
		}
	}
	return out
}

// checkListenersOff fails unless every login listener doveconf -a shows
// has port 0, and the standard ones are among them.
func checkListenersOff(t *testing.T, doveconf string, want map[string][]string) {
	t.Helper()
	got := loginListeners(doveconf)
	for svc, ls := range got {
		for l, port := range ls {
			if port != "0" {
				t.Errorf("service %s inet_listener %s: port %q, want 0", svc, l, port)
			}
		}
	}
	for svc, ls := range want {
		for _, l := range ls {
			if _, ok := got[svc][l]; !ok {
				t.Errorf("doveconf -a shows no service %s inet_listener %s", svc, l)
			}
		}
	}
	if t.Failed() {
		t.Logf("doveconf -a:\n%s", doveconf)
	}
}

// TestDovecotFrontSnippet23: Debian 12's own Dovecot 2.3 configuration
// with examples/dovecot23-99-loginsvc.conf in conf.d parses with the
// real doveconf, and every login listener (imap, imaps, pop3, pop3s,
// submission, sieve) has port 0 in the effective configuration, while
// auth's login/login and the post-login login/imap, login/pop3,
// login/submission, login/sieve listeners remain.
func TestDovecotFrontSnippet23(t *testing.T) {
	peertest.Require(t, "dovecot 2.3", dovecotlab.Available())
	dir := t.TempDir()
	stockWithSnippet(t, "/usr/share/dovecot", dir, example(t, "dovecot23-99-loginsvc.conf"))
	out, err := exec.Command("doveconf", "-c", filepath.Join(dir, "dovecot.conf"), "-a").CombinedOutput()
	if err != nil {
		t.Fatalf("doveconf -a: %v\n%s", err, out)
	}
	checkListenersOff(t, string(out), map[string][]string{
		"imap-login": {"imap", "imaps"}, "pop3-login": {"pop3", "pop3s"},
		"submission-login": {"submission"}, "managesieve-login": {"sieve"},
	})
	for _, sock := range []string{"login/login", "login/imap", "login/pop3", "login/submission", "login/sieve"} {
		if !strings.Contains(string(out), "unix_listener "+sock+" {") {
			t.Errorf("doveconf -a has no unix_listener %s", sock)
		}
	}
	for _, set := range []string{"base_dir = /run/dovecot\n", "default_login_user = dovenull\n"} {
		if !strings.Contains(string(out), set) {
			t.Errorf("doveconf -a lacks %q", set)
		}
	}
}

// TestDovecotFrontSnippet24: the same for Debian 13's Dovecot 2.4.1 (in
// the trixie root, doveconf run there with chroot) with
// examples/dovecot24-99-loginsvc.conf, including 2.4's submissions and
// Debian 13's sieve_deprecated listener; and a lab Dovecot 2.4 with the
// snippet starts, listens on no TCP port, and has auth's and the
// post-login sockets in base_dir/login.
func TestDovecotFrontSnippet24(t *testing.T) {
	root := dovecot24lab.Require(t)
	snippet := example(t, "dovecot24-99-loginsvc.conf")
	t.Run("stock", func(t *testing.T) {
		dir, err := os.MkdirTemp(filepath.Join(root, "lab"), "front")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		stockWithSnippet(t, filepath.Join(root, "usr/share/dovecot"), dir, snippet)
		conf := "/lab/" + filepath.Base(dir) + "/dovecot.conf"
		cmd := exec.Command("chroot", root, "doveconf", "-c", conf, "-a")
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C"}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("doveconf -a: %v\n%s", err, stderr.String())
		}
		checkListenersOff(t, string(out), map[string][]string{
			"imap-login": {"imap", "imaps"}, "pop3-login": {"pop3", "pop3s"},
			"submission-login": {"submission", "submissions"}, "managesieve-login": {"sieve", "sieve_deprecated"},
		})
	})
	t.Run("running", func(t *testing.T) {
		// The lab's base_dir stays (its own line comes first); the
		// rest is the snippet as shipped.
		extra := strings.Replace(snippet, "base_dir = /run/dovecot\n", "", 1)
		d := dovecot24lab.Start(t, dovecot24lab.Config{NoLoginListeners: true, Protocols: []string{"imap", "pop3", "submission"}, Extra: extra})
		if l := tcpListeners(t, []int{d.PID()}); len(l) > 0 {
			t.Errorf("Dovecot 2.4 listens on TCP: %v", l)
		}
		for _, s := range []string{"login", "imap", "pop3", "submission"} {
			if fi, err := os.Stat(filepath.Join(d.BaseDir(), "login", s)); err != nil || fi.Mode()&os.ModeSocket == 0 {
				t.Errorf("base_dir/login/%s: %v", s, err)
			}
		}
	})
}

// tcpListeners returns the TCP sockets in LISTEN state (as
// "inode N port P") held by the processes pids and their descendants.
func tcpListeners(t *testing.T, pids []int) []string {
	t.Helper()
	listen := map[string]string{} // inode -> port
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			if len(fs) > 9 && fs[3] == "0A" {
				port, _ := strconv.ParseUint(fs[1][strings.LastIndexByte(fs[1], ':')+1:], 16, 16)
				listen[fs[9]] = strconv.FormatUint(port, 10)
			}
		}
	}
	tree := map[int]bool{}
	for _, p := range pids {
		tree[p] = true
	}
	// Children of the tree, to a fixed point (the master forks once).
	for grown := true; grown; {
		grown = false
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || tree[pid] {
				continue
			}
			stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			if i := strings.LastIndexByte(string(stat), ')'); i > 0 {
				if fs := strings.Fields(string(stat[i+1:])); len(fs) > 1 {
					if ppid, _ := strconv.Atoi(fs[1]); tree[ppid] {
						tree[pid], grown = true, true
					}
				}
			}
		}
	}
	var out []string
	for pid := range tree {
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		for _, fd := range fds {
			link, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
			if inode, ok := strings.CutPrefix(link, "socket:["); ok {
				if port, ok := listen[strings.TrimSuffix(inode, "]")]; ok {
					out = append(out, fmt.Sprintf("pid %d port %s", pid, port))
				}
			}
		}
	}
	return out
}

// TestLoginsvcInFrontOfDovecot23: the README's Debian 12 setup, run. A
// real Dovecot 2.3 with exactly examples/dovecot23-99-loginsvc.conf
// (base_dir rewritten to the lab's) listens on no TCP port; loginsvc
// with exactly examples/dovecot23-front.conf (base_dir the lab's, listen
// 127.0.0.1, free ports, a test certificate) serves the logins: an IMAP
// LOGIN with a pipelined SELECT is handed to Dovecot's imap, which logs
// the user in, and loginsvc logs Dovecot's Login: line.
func TestLoginsvcInFrontOfDovecot23(t *testing.T) {
	peertest.Require(t, "dovecot 2.3", dovecotlab.Available())
	d := dovecotlab.New(t, dovecotlab.Config{
		NoAccessCheck: true, NoLoginListeners: true,
		Users: map[string]string{"alice": "secret"},
	})
	d.Config.Extra = strings.Replace(example(t, "dovecot23-99-loginsvc.conf"), "base_dir = /run/dovecot\n", "base_dir = "+d.BaseDir+"\n", 1)
	if err := d.Deliver("alice", "Subject: in front\r\n\r\nhello through loginsvc\r\n"); err != nil {
		t.Fatal(err)
	}
	if err := d.Launch(); err != nil {
		t.Fatal(err)
	}
	if l := tcpListeners(t, []int{d.PID()}); len(l) > 0 {
		t.Errorf("Dovecot listens on TCP with the snippet: %v", l)
	}

	frontLogin(t, "dovecot23-front.conf", d.BaseDir, d.Log)
}

// TestLoginsvcInFrontOfDovecot24 is TestLoginsvcInFrontOfDovecot23 on
// Debian 13: a Dovecot 2.4.1 (in the trixie root) with exactly
// examples/dovecot24-99-loginsvc.conf (without its base_dir line: the
// lab's, inside the root, stays) behind loginsvc with exactly
// examples/dovecot24-front.conf.
func TestLoginsvcInFrontOfDovecot24(t *testing.T) {
	dovecot24lab.Require(t)
	d := dovecot24lab.Start(t, dovecot24lab.Config{
		NoLoginListeners: true, Protocols: []string{"imap", "pop3", "submission"},
		Extra: strings.Replace(example(t, "dovecot24-99-loginsvc.conf"), "base_dir = /run/dovecot\n", "", 1),
	})
	if err := d.Deliver("alice", "Subject: in front\r\n\r\nhello through loginsvc\r\n"); err != nil {
		t.Fatal(err)
	}
	if l := tcpListeners(t, []int{d.PID()}); len(l) > 0 {
		t.Errorf("Dovecot 2.4 listens on TCP with the snippet: %v", l)
	}
	frontLogin(t, "dovecot24-front.conf", d.BaseDir(), d.Log)
}

// frontLogin runs loginsvc with examples/frontExample, its base_dir
// rewritten to baseDir (the lab Dovecot's), listen 127.0.0.1, free
// ports and a test certificate, and logs alice (password secret) in over
// IMAP with a pipelined SELECT, FETCHes her message and checks both
// logs (dovecotLog is Dovecot's); loginsvc is stopped at the end.
func frontLogin(t *testing.T, frontExample, baseDir string, dovecotLog func() string) {
	t.Helper()
	// loginsvc.conf: the shipped example, with test paths and ports.
	cert, key, _ := testcert.Write(t, t.TempDir())
	stds := []string{"143", "993", "110", "995", "587", "4190"}
	conf, got, logs := runLoginsvc(t, len(stds), func(free []int) string {
		repl := []string{
			"base_dir = /run/dovecot\n", "base_dir = " + baseDir + "\n",
			"#listen = *, ::\n", "listen = 127.0.0.1\n",
			"</etc/dovecot/private/dovecot.pem", "<" + cert,
			"</etc/dovecot/private/dovecot.key", "<" + key,
		}
		for i, std := range stds {
			repl = append(repl, "port = "+std+"\n", "port = "+strconv.Itoa(free[i])+"\n")
		}
		return strings.NewReplacer(repl...).Replace(example(t, frontExample))
	})
	ports := map[string]int{}
	for i, std := range stds {
		ports[std] = got[i]
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("loginsvc.conf:\n%s\nloginsvc's log:\n%s\nDovecot's log:\n%s", conf, logs(), dovecotLog())
		}
	})

	// Connect until loginsvc listens (it opens its listeners, then its
	// login processes greet once Dovecot's auth answered).
	c := dialLoginsvc(t, ports["143"], "127.0.0.1")
	c.SetDeadline(time.Now().Add(60 * time.Second))
	s := imapSession{t, bufio.NewReader(c)}
	if g := s.line(); !strings.HasPrefix(g, "* OK ") || !strings.Contains(g, "AUTH=PLAIN") {
		t.Fatalf("greeting %q", g)
	}
	c.Write([]byte("a LOGIN alice secret\r\nb SELECT INBOX\r\n"))
	if ls := s.tagged("a"); !strings.HasPrefix(ls[len(ls)-1], "a OK ") || !strings.Contains(ls[len(ls)-1], "Logged in") {
		t.Fatalf("LOGIN: %q", ls)
	}
	if ls := s.tagged("b"); !strings.HasPrefix(ls[len(ls)-1], "b OK ") || !strings.Contains(strings.Join(ls, "\n"), "* 1 EXISTS") {
		t.Fatalf("SELECT INBOX: %q", ls)
	}
	c.Write([]byte("c FETCH 1 BODY[TEXT]\r\n"))
	if ls := s.tagged("c"); !strings.Contains(strings.Join(ls, "\n"), "hello through loginsvc") {
		t.Fatalf("FETCH: %q", ls)
	}
	c.Write([]byte("d LOGOUT\r\n"))
	s.tagged("d")
	waitText(t, "loginsvc's log", logs, "Login: user=<alice>, method=PLAIN, rip=127.0.0.1, lip=127.0.0.1, mpid=")
	waitText(t, "Dovecot's log", dovecotLog, "imap(alice)")
	if strings.Contains(dovecotLog(), "imap-login:") {
		t.Error("Dovecot's own imap-login ran")
	}
}
