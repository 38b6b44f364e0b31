package wrapopts

import (
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
)

// TestSanitisedExpansions: hostile reverse-DNS names, user names and daemon
// names reach /bin/sh only after libwrap's sanitising, so no shell syntax
// in them runs.
func TestSanitisedExpansions(t *testing.T) {
	dir := openDir(t)
	pwned := filepath.Join(dir, "pwned")
	tests := []struct {
		name   string
		host   string // reverse and forward name of 127.0.0.9
		user   string
		daemon string
		expand string // the %-sequences spawn echoes
		want   string
	}{
		{name: "rm -rf", host: "a;rm -rf /.example.com", expand: "%n", want: "a_rm_-rf_/.example.com"},
		{name: "command substitution", host: "$(touch " + pwned + ").example.com", expand: "%n",
			want: "__touch_" + pwned + "_.example.com"},
		{name: "backquotes", host: "`touch " + pwned + "`.example.com", expand: "%n",
			want: "_touch_" + pwned + "_.example.com"},
		{name: "newline", host: "a\ntouch " + pwned + "\n.example.com", expand: "%n",
			want: "a_touch_" + pwned + "_.example.com"},
		{name: "pipe and redirect", host: "a|touch " + pwned + ">x.example.com", expand: "%n %h %c",
			want: strings.Repeat("a_touch_"+pwned+"_x.example.com ", 2) + "a_touch_" + pwned + "_x.example.com"},
		{name: "h before n is the address", host: "a;touch " + pwned + ".example.com", expand: "%h %n %h",
			want: "127.0.0.9 a_touch_" + pwned + ".example.com a_touch_" + pwned + ".example.com"},
		{name: "user", host: "ok.example.com", user: "u;touch " + pwned, expand: "%u %c",
			want: "u_touch_" + pwned + " u_touch_" + pwned + "@127.0.0.9"},
		{name: "daemon", host: "ok.example.com", daemon: "imap;touch " + pwned, expand: "%d %s",
			want: "imap_touch_" + pwned + " imap_touch_" + pwned + "@127.0.0.1"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ck := newChecker(t, nil)
			ck.env.Resolver = staticResolver{name: tt.host, addr: netip.MustParseAddr("127.0.0.9")}
			c := dial(t, "127.0.0.9")
			daemon := tt.daemon
			if daemon == "" {
				daemon = "imap"
			}
			out := "out" + strconv.Itoa(i)
			rule := "ALL: ALL: spawn echo " + tt.expand + " > " + filepath.Join(dir, out) + "\n"
			if tt.user != "" {
				// A known user: what an identd would have answered.
				p := hostsrules.Compile(hostsrules.Source{Name: "hosts.allow", Data: []byte(rule)}, hostsrules.Source{Name: "hosts.deny"})
				svc := ck.r.Service(c.fd, nil)
				cl, sv := c.endpoints()
				env := ck.env
				env.Effects = svc
				p.Check(t.Context(), &hostsrules.Request{Daemon: daemon, Client: cl, Server: sv, User: tt.user}, &env)
			} else if d, _ := ck.check(t, c, daemon, rule, ""); d.Verdict != hostsrules.Granted {
				t.Fatalf("decision %+v", d)
			}
			ck.r.Wait()
			if got := readFile(t, dir, out); got != tt.want+"\n" {
				t.Errorf("spawn wrote %q, want %q", got, tt.want+"\n")
			}
			if exists(pwned) {
				t.Fatalf("a command in a name ran: %s exists", pwned)
			}
		})
	}
}

// TestTwist: the command talks to the client over the passed socket, the
// check is refused as delegated, and the socket stays non-blocking.
func TestTwist(t *testing.T) {
	ck := newChecker(t, nil)
	c := dial(t, "127.0.0.1")
	d, _ := ck.check(t, c, "imap", `ALL: ALL: setenv FOO bar: twist echo twisted %a %d; echo "FOO=$FOO"; cat`+"\n", "")
	if !d.Delegated || d.Verdict != hostsrules.Denied || d.Reason != "twist" {
		t.Fatalf("decision %+v, want delegated and denied", d)
	}
	flags, err := unix.FcntlInt(uintptr(c.fd), unix.F_GETFL, 0)
	if err != nil || flags&unix.O_NONBLOCK == 0 {
		t.Errorf("client socket flags %#x, %v: O_NONBLOCK was cleared", flags, err)
	}
	// The command reads from the client too (cat), until the client
	// closes its sending side.
	c.client.Write([]byte("from client\n"))
	c.client.CloseWrite()
	got := c.readAll(t)
	if want := "twisted 127.0.0.1 imap\nFOO=bar\nfrom client\n"; got != want {
		t.Errorf("client got %q, want %q", got, want)
	}
}

// TestBanners: the banner file reaches the client during the check, with
// CRLF line ends and %-expansions, before any verdict.
func TestBanners(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "imap"), []byte("Hello %a from %d\nline2 ;$(x)\n"), 0o644)
	tests := []struct {
		name, rule, want, log string
	}{
		{name: "file", rule: "ALL: ALL: banners " + dir + ": allow\n", want: "Hello 127.0.0.1 from imap\r\nline2 ;$(x)\r\n"},
		{name: "no file for daemon", rule: "ALL: ALL: banners " + dir + "\n", want: ""},
		{name: "no directory", rule: "ALL: ALL: banners " + dir + "/nope\n", want: "", log: "banners: " + dir + "/nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ck := newChecker(t, nil)
			c := dial(t, "127.0.0.1")
			daemon := "imap"
			if tt.name == "no file for daemon" {
				daemon = "pop3"
			}
			d, _ := ck.check(t, c, daemon, tt.rule, "")
			if d.Verdict != hostsrules.Granted {
				t.Fatalf("decision %+v", d)
			}
			// Written before Check returned: the client can read it now,
			// while the service still holds the socket.
			buf := make([]byte, 4096)
			c.client.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			n, _ := c.client.Read(buf)
			if got := string(buf[:n]); got != tt.want {
				t.Errorf("client got %q, want %q", got, tt.want)
			}
			if tt.log != "" && !strings.Contains(ck.log.String(), tt.log) {
				t.Errorf("log lacks %q:\n%s", tt.log, ck.log)
			}
		})
	}
}

// TestBannerConfined: the daemon name comes from the process that asks, so
// a name that leaves the banners directory reads nothing and sends nothing
// (libwrap opens DIR/<daemon> as it is); a planted FIFO, device or
// directory is refused without blocking.
func TestBannerConfined(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "banners")
	for _, d := range []string{dir, filepath.Join(dir, "sub")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(base, "secret"), []byte("SECRET\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "sub", "imap"), []byte("SECRET\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "shared"), []byte("Welcome %d\n"), 0o644)
	os.Symlink("shared", filepath.Join(dir, "linked"))
	os.Symlink("/dev/zero", filepath.Join(dir, "zero"))
	if err := unix.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		daemon, want, log string
	}{
		{daemon: "../secret", log: `not a plain name: \"../secret\" contains \"/\"`},
		{daemon: "../../../../../../" + base + "/secret", log: "not a plain name"},
		{daemon: "sub/imap", log: "not a plain name"},
		{daemon: "..", log: `not a plain name: \"..\"`},
		{daemon: ".", log: "not a plain name"},
		{daemon: "sub\x01", log: "control character 0x01"},
		{daemon: "sub\x7f", log: "control character 0x7f"},
		{daemon: "fifo", log: "not a regular file"},
		{daemon: "zero", log: "not a regular file"},
		{daemon: "sub", log: "not a regular file"},
		{daemon: "linked", want: "Welcome linked\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.daemon, func(t *testing.T) {
			ck := newChecker(t, nil)
			c := dial(t, "127.0.0.1")
			start := time.Now()
			d, _ := ck.check(t, c, tt.daemon, "ALL: ALL: banners "+dir+"\n", "")
			if d.Verdict != hostsrules.Granted || d.Err != nil {
				t.Errorf("decision %+v", d)
			}
			if el := time.Since(start); el > 5*time.Second {
				t.Errorf("check took %v", el)
			}
			if got := c.readAll(t); got != tt.want {
				t.Errorf("client got %q, want %q", got, tt.want)
			}
			if tt.log != "" && !strings.Contains(ck.log.String(), tt.log) {
				t.Errorf("log lacks %q:\n%s", tt.log, ck.log)
			}
		})
	}
}

// TestBannerFullSocket: a client that reads nothing cannot hold the check
// longer than BannerTimeout.
func TestBannerFullSocket(t *testing.T) {
	dir := t.TempDir()
	line := strings.Repeat("x", 1000) + "\n"
	os.WriteFile(filepath.Join(dir, "imap"), []byte(strings.Repeat(line, 20000)), 0o644)
	ck := newChecker(t, &Runner{BannerTimeout: 300 * time.Millisecond})
	c := dial(t, "127.0.0.1")
	start := time.Now()
	d, _ := ck.check(t, c, "imap", "ALL: ALL: banners "+dir+"\n", "")
	took := time.Since(start)
	if d.Verdict != hostsrules.Granted {
		t.Errorf("decision %+v", d)
	}
	if took > 3*time.Second || took < 300*time.Millisecond {
		t.Errorf("check took %v, want about the 300ms banner timeout", took)
	}
	if !strings.Contains(ck.log.String(), "write to client failed") {
		t.Errorf("no write failure logged:\n%s", ck.log)
	}
}

// TestACLExec: the exit status decides whether the rule matches (Debian),
// the client socket is the command's stdio, and a command over its time
// limit is killed with its whole process group.
func TestACLExec(t *testing.T) {
	tests := []struct {
		name        string
		allow, deny string
		verdict     hostsrules.Verdict
		file        string
		client      string
	}{
		{name: "exit 0 keeps the allow rule", allow: "ALL: ALL: aclexec exit 0\n", deny: "ALL: ALL\n",
			verdict: hostsrules.Granted, file: "hosts.allow"},
		{name: "exit 3 skips to hosts.deny", allow: "ALL: ALL: aclexec exit 3\n", deny: "ALL: ALL\n",
			verdict: hostsrules.Denied, file: "hosts.deny"},
		{name: "failure in hosts.deny grants", deny: "ALL: ALL: aclexec false\n",
			verdict: hostsrules.Granted, file: ""},
		{name: "success in hosts.deny denies", deny: "ALL: ALL: aclexec true\n",
			verdict: hostsrules.Denied, file: "hosts.deny"},
		{name: "stdio is the client", allow: "ALL: ALL: aclexec echo hello-from-aclexec %a\n",
			verdict: hostsrules.Granted, file: "hosts.allow", client: "hello-from-aclexec 127.0.0.1\n"},
		{name: "signal counts as failure", allow: "ALL: ALL: aclexec kill -9 $$\n", deny: "ALL: ALL\n",
			verdict: hostsrules.Denied, file: "hosts.deny"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ck := newChecker(t, nil)
			c := dial(t, "127.0.0.1")
			d, _ := ck.check(t, c, "imap", tt.allow, tt.deny)
			if d.Verdict != tt.verdict || d.File != tt.file {
				t.Errorf("decision %v from %q, want %v from %q", d.Verdict, d.File, tt.verdict, tt.file)
			}
			if got := c.readAll(t); got != tt.client {
				t.Errorf("client got %q, want %q", got, tt.client)
			}
		})
	}

	t.Run("timeout kills the group", func(t *testing.T) {
		dir := t.TempDir()
		late := filepath.Join(dir, "late")
		ck := newChecker(t, &Runner{ACLExecTimeout: 300 * time.Millisecond})
		c := dial(t, "127.0.0.1")
		start := time.Now()
		d, _ := ck.check(t, c, "imap", "ALL: ALL: aclexec (sleep 1; touch "+late+") & sleep 30\n", "ALL: ALL\n")
		took := time.Since(start)
		if d.Verdict != hostsrules.Denied || d.File != "hosts.deny" {
			t.Errorf("decision %+v, want the aclexec rule skipped", d)
		}
		if took > 2*time.Second {
			t.Errorf("check took %v, want about 300ms", took)
		}
		time.Sleep(1200 * time.Millisecond)
		if exists(late) {
			t.Error("the command's background child survived the kill")
		}
	})
}

// TestSpawn: spawn never delays the check, at most MaxBackground commands
// run at once (the rest are skipped and logged), and a command over its
// time limit is killed with its process group.
func TestSpawn(t *testing.T) {
	t.Run("background and bounded", func(t *testing.T) {
		dir := t.TempDir()
		ck := newChecker(t, &Runner{MaxBackground: 2})
		c := dial(t, "127.0.0.1")
		rule := "ALL: ALL: spawn sleep 0.5; echo $$ > " + dir + "/a: spawn sleep 0.5; touch " + dir + "/b: spawn touch " + dir + "/c\n"
		start := time.Now()
		d, _ := ck.check(t, c, "imap", rule, "")
		took := time.Since(start)
		running := ck.r.Running()
		if d.Verdict != hostsrules.Granted {
			t.Errorf("decision %+v", d)
		}
		if took > 300*time.Millisecond {
			t.Errorf("check took %v: spawn delayed the verdict", took)
		}
		if running != 2 {
			t.Errorf("Running() = %d right after the check, want 2", running)
		}
		if exists(dir + "/a") {
			t.Error("spawn finished before the check returned")
		}
		ck.r.Wait()
		got := []bool{exists(dir + "/a"), exists(dir + "/b"), exists(dir + "/c")}
		if diff := cmp.Diff([]bool{true, true, false}, got); diff != "" {
			t.Errorf("files a, b, c (-want +got):\n%s", diff)
		}
		if n := strings.Count(ck.log.String(), "spawn skipped: too many background commands"); n != 1 {
			t.Errorf("%d skip warnings, want 1:\n%s", n, ck.log)
		}
		if ck.r.Running() != 0 {
			t.Errorf("Running() = %d after Wait", ck.r.Running())
		}
		// stdio is /dev/null.
		pid := strings.TrimSpace(readFile(t, dir, "a"))
		if _, err := strconv.Atoi(pid); err != nil {
			t.Errorf("pid file %q", pid)
		}
	})
	t.Run("stdio on /dev/null", func(t *testing.T) {
		dir := t.TempDir()
		ck := newChecker(t, nil)
		c := dial(t, "127.0.0.1")
		ck.check(t, c, "imap", "ALL: ALL: spawn echo to-stdout; echo to-stderr >&2; readlink /proc/self/fd/0 /proc/self/fd/2 > "+dir+"/fds\n", "")
		ck.r.Wait()
		if got := c.readAll(t); got != "" {
			t.Errorf("client got %q from spawn", got)
		}
		if got := readFile(t, dir, "fds"); got != "/dev/null\n/dev/null\n" {
			t.Errorf("spawn stdin, stderr: %q", got)
		}
	})
	t.Run("time limit", func(t *testing.T) {
		dir := t.TempDir()
		ck := newChecker(t, &Runner{BackgroundTimeout: 300 * time.Millisecond})
		c := dial(t, "127.0.0.1")
		start := time.Now()
		ck.check(t, c, "imap", "ALL: ALL: spawn (sleep 1; touch "+dir+"/late) & sleep 30\n", "")
		ck.r.Wait()
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("Wait returned after %v, want about 300ms", took)
		}
		time.Sleep(1200 * time.Millisecond)
		if exists(dir + "/late") {
			t.Error("the command's background child survived the kill")
		}
		if !strings.Contains(ck.log.String(), "spawn killed after time limit") {
			t.Errorf("no kill logged:\n%s", ck.log)
		}
	})
}

// niceness returns the nice value commands started by this process get.
func niceness(t *testing.T) int {
	out, err := exec.Command("nice").Output()
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestCommandSettings: setenv, umask, nice, user and group apply to the
// commands of the check, and only to them.
func TestCommandSettings(t *testing.T) {
	base := niceness(t)
	root := os.Geteuid() == 0
	script := `(id -u; id -g; id -G; umask; nice; echo "FOO=[$FOO]") > OUT`
	tests := []struct {
		name     string
		opts     string
		want     string
		needRoot bool
	}{
		{name: "none", want: lines(os.Getuid(), os.Getgid(), "", "0022", base, "FOO=[]"), needRoot: true},
		{name: "setenv expanded and trimmed", opts: `setenv FOO  hello %a [x] \: y  : `,
			want: lines(0, 0, "", "0022", base, "FOO=[hello 127.0.0.1 [x] : y]"), needRoot: true},
		{name: "umask", opts: "umask 027: ", want: lines(0, 0, "", "0027", base, "FOO=[]"), needRoot: true},
		{name: "nice 5", opts: "nice 5: ", want: lines(0, 0, "", "0022", min(base+5, 19), "FOO=[]"), needRoot: true},
		{name: "nice default and cumulative", opts: "nice: nice 2: ", want: lines(0, 0, "", "0022", min(base+12, 19), "FOO=[]"), needRoot: true},
		{name: "user nobody", opts: "user nobody: ", want: lines(65534, 65534, "65534", "0022", base, "FOO=[]"), needRoot: true},
		{name: "user nobody.nogroup", opts: "user nobody.nogroup: ", want: lines(65534, 65534, "65534", "0022", base, "FOO=[]"), needRoot: true},
		{name: "group nogroup", opts: "group nogroup: ", want: lines(0, 65534, "65534", "0022", base, "FOO=[]"), needRoot: true},
		{name: "all", opts: "setenv FOO x: umask 077: nice 3: user nobody: ",
			want: lines(65534, 65534, "65534", "0077", min(base+3, 19), "FOO=[x]"), needRoot: true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.needRoot && !root {
				t.Skip("needs root")
			}
			dir := openDir(t)
			out := filepath.Join(dir, "out"+strconv.Itoa(i))
			ck := newChecker(t, nil)
			c := dial(t, "127.0.0.1")
			rule := "ALL: ALL: " + tt.opts + "spawn " + strings.ReplaceAll(script, "OUT", out) + "\n"
			d, _ := ck.check(t, c, "imap", rule, "")
			if d.Verdict != hostsrules.Granted || d.Err != nil {
				t.Fatalf("decision %+v", d)
			}
			ck.r.Wait()
			got := readFile(t, dir, filepath.Base(out))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("command saw (-want +got):\n%s", diff)
			}
		})
	}
	// The service itself is unchanged.
	if got := niceness(t); got != base {
		t.Errorf("our niceness changed from %d to %d", base, got)
	}
	if os.Getenv("FOO") != "" {
		t.Errorf("FOO leaked into our environment")
	}
}

// lines formats id -u, id -g, id -G (empty: the same as id -g, for root's
// groups 0), umask, nice and the FOO line as the test script prints them.
func lines(uid, gid int, groups, umask string, nice int, foo string) string {
	if groups == "" {
		groups = strconv.Itoa(gid)
	}
	return strconv.Itoa(uid) + "\n" + strconv.Itoa(gid) + "\n" + groups + "\n" + umask + "\n" + strconv.Itoa(nice) + "\n" + foo + "\n"
}

// TestSettingsApplyToTwistAndACLExec: the recorded settings reach aclexec
// and twist commands as well.
func TestSettingsApplyToTwistAndACLExec(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	ck := newChecker(t, nil)
	c := dial(t, "127.0.0.1")
	d, _ := ck.check(t, c, "imap", `ALL: ALL: setenv FOO bar: umask 077: user nobody: aclexec echo "acl $(id -u) $FOO $(umask)": twist echo "twist $(id -u) $FOO $(umask)"`+"\n", "")
	if !d.Delegated {
		t.Fatalf("decision %+v", d)
	}
	ck.r.Wait()
	if got, want := c.readAll(t), "acl 65534 bar 0077\ntwist 65534 bar 0077\n"; got != want {
		t.Errorf("client got %q, want %q", got, want)
	}
}

// TestSocketOptions: keepalive and linger set the client socket's options.
func TestSocketOptions(t *testing.T) {
	tests := []struct {
		rule      string
		keepalive int
		linger    unix.Linger
	}{
		{rule: "ALL: ALL: keepalive: linger 7\n", keepalive: 1, linger: unix.Linger{Onoff: 1, Linger: 7}},
		{rule: "ALL: ALL: linger 0\n", keepalive: 0, linger: unix.Linger{}},
		{rule: "ALL: ALL: keepalive\n", keepalive: 1, linger: unix.Linger{}},
	}
	for _, tt := range tests {
		t.Run(strings.TrimSpace(tt.rule), func(t *testing.T) {
			ck := newChecker(t, nil)
			c := dial(t, "127.0.0.1")
			ck.check(t, c, "imap", tt.rule, "")
			ka, err := unix.GetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE)
			if err != nil || ka != tt.keepalive {
				t.Errorf("SO_KEEPALIVE = %d, %v; want %d", ka, err, tt.keepalive)
			}
			l, err := unix.GetsockoptLinger(c.fd, unix.SOL_SOCKET, unix.SO_LINGER)
			if err != nil || *l != tt.linger {
				t.Errorf("SO_LINGER = %+v, %v; want %+v", l, err, tt.linger)
			}
		})
	}
}

// TestSeverity: the severity option is recorded per check.
func TestSeverity(t *testing.T) {
	tests := []struct {
		rule  string
		want  string
		level slog.Level
		ok    bool
	}{
		{rule: "ALL: ALL: severity local0.notice\n", want: "local0.notice", level: slog.LevelInfo + 2, ok: true},
		{rule: "ALL: ALL: severity CRIT: deny\n", want: "crit", level: slog.LevelError + 2, ok: true},
		{rule: "ALL: ALL: severity mail.debug: severity auth.warning\n", want: "auth.warning", level: slog.LevelWarn, ok: true},
		{rule: "ALL: ALL\n", want: "", ok: false},
	}
	for _, tt := range tests {
		t.Run(strings.TrimSpace(tt.rule), func(t *testing.T) {
			ck := newChecker(t, nil)
			_, svc := ck.check(t, nil, "imap", tt.rule, "")
			p, ok := svc.Severity()
			if ok != tt.ok {
				t.Fatalf("Severity() ok = %v", ok)
			}
			if !ok {
				return
			}
			if got := FormatPriority(p); got != tt.want {
				t.Errorf("priority %q, want %q", got, tt.want)
			}
			if got := SlogLevel(p.Level); got != tt.level {
				t.Errorf("slog level %v, want %v", got, tt.level)
			}
		})
	}
}

// TestNoClientSocket: a check without a descriptor runs commands with
// /dev/null and skips socket options and banner writes.
func TestNoClientSocket(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "imap"), []byte("hi\n"), 0o644)
	ck := newChecker(t, nil)
	d, _ := ck.check(t, nil, "imap", "ALL: ALL: keepalive: linger 3: banners "+dir+": aclexec test \"$(readlink /proc/self/fd/0)\" = /dev/null\n", "ALL: ALL\n")
	if d.Verdict != hostsrules.Granted || d.File != "hosts.allow" {
		t.Errorf("decision %+v, want granted by the aclexec rule", d)
	}
}

// TestNoClientSocketTwist: a check without a client socket (a policy
// front end: Dovecot's auth policy, Postfix's policy service) has no
// service for twist to replace and no client to talk to. The command is
// not run, the check is denied (delegated, as always with twist) and the
// skip is logged; spawn commands of the same rule run with /dev/null.
func TestNoClientSocketTwist(t *testing.T) {
	dir := t.TempDir()
	ck := newChecker(t, nil)
	d, _ := ck.check(t, nil, "imap", "ALL: ALL: spawn touch "+dir+"/spawned: twist touch "+dir+"/twisted\n", "")
	ck.r.Wait()
	if !d.Delegated || d.Verdict != hostsrules.Denied {
		t.Errorf("decision %+v, want denied and delegated", d)
	}
	if !exists(dir + "/spawned") {
		t.Error("spawn did not run without a client socket")
	}
	if exists(dir + "/twisted") {
		t.Error("twist ran without a client socket")
	}
	if !strings.Contains(ck.log.String(), "twist not run: no client socket") {
		t.Errorf("no log line for the skipped twist:\n%s", ck.log)
	}
}

func TestSplitSetenv(t *testing.T) {
	tests := []struct{ in, name, val string }{
		{"FOO bar", "FOO", "bar"},
		{"FOO   bar baz  ", "FOO", "bar baz"},
		{"FOO", "FOO", ""},
		{"FOO\tx", "FOO", "x"},
		{"FOO=bar", "", ""},
	}
	for _, tt := range tests {
		n, v, err := splitSetenv(tt.in)
		if n != tt.name || v != tt.val || (err != nil) != (tt.name == "") {
			t.Errorf("splitSetenv(%q) = %q, %q, %v", tt.in, n, v, err)
		}
	}
}

// TestRunnerStop: Stop kills the process groups of running background
// commands (grandchildren included) and later commands do not start.
func TestRunnerStop(t *testing.T) {
	dir := t.TempDir()
	ck := newChecker(t, &Runner{})
	c := dial(t, "127.0.0.1")
	rule := "ALL: ALL: spawn (sleep 317; touch " + dir + "/late) & sleep 317\n"
	ck.check(t, c, "imap", rule, "")
	if ck.r.Running() != 1 {
		t.Fatalf("Running() = %d, want 1", ck.r.Running())
	}
	start := time.Now()
	ck.r.Stop()
	ck.r.Wait()
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("Stop took %v", el)
	}
	waitUntil(t, "the backgrounded grandchild is gone too", func() bool { return countProcs("sleep\x00317\x00") == 0 })
	ck.check(t, dial(t, "127.0.0.1"), "imap", "ALL: ALL: spawn touch "+dir+"/after\n", "")
	ck.r.Wait()
	if exists(dir + "/after") {
		t.Error("a command started after Stop")
	}
}

// countProcs counts processes whose /proc/PID/cmdline equals cmdline.
func countProcs(cmdline string) int {
	ents, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range ents {
		if b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err == nil && string(b) == cmdline {
			n++
		}
	}
	return n
}

// waitUntil polls cond for up to 3 seconds.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
