package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcpwrapd/tcpwrapd/internal/dovecotlab"
)

// flipTimeout bounds how long a rule edit may take to change verdicts.
// tcpwrapd runs with --reload-interval 100ms; libwrap re-reads the files
// on every lookup.
const flipTimeout = 15 * time.Second

// builds holds the commands built for the tests, once each, in one
// temporary directory removed by TestMain.
var builds struct {
	sync.Mutex
	dir  string
	bins map[string]string
	errs map[string]error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if builds.dir != "" {
		os.RemoveAll(builds.dir)
	}
	os.Exit(code)
}

// tcpwrapdBinary builds ./cmd/tcpwrapd once per test binary and returns
// its path.
func tcpwrapdBinary(t *testing.T) string { return goBinary(t, "tcpwrapd") }

// goBinary builds ./cmd/NAME once per test binary (extra environment
// env, e.g. CGO_ENABLED=0 as packaged) and returns its path; a failed
// build fails the test.
func goBinary(t *testing.T, name string, env ...string) string {
	t.Helper()
	builds.Lock()
	defer builds.Unlock()
	if bin, ok := builds.bins[name]; ok || builds.errs[name] != nil {
		if err := builds.errs[name]; err != nil {
			t.Fatal(err)
		}
		return bin
	}
	err := func() error {
		root, err := filepath.Abs("..")
		if err != nil {
			return err
		}
		if builds.dir == "" {
			if builds.dir, err = os.MkdirTemp("", "e2e-bin"); err != nil {
				return err
			}
			// Dovecot's unprivileged users never run them, but keep
			// them world-readable like installed binaries.
			os.Chmod(builds.dir, 0o755)
		}
		goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
		if _, err := os.Stat(goBin); err != nil {
			goBin = "go"
		}
		cmd := exec.Command(goBin, "build", "-o", filepath.Join(builds.dir, name), "./cmd/"+name)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build ./cmd/%s: %v\n%s", name, err, out)
		}
		return nil
	}()
	if builds.bins == nil {
		builds.bins, builds.errs = map[string]string{}, map[string]error{}
	}
	if err != nil {
		builds.errs[name] = err
		t.Fatal(err)
	}
	builds.bins[name] = filepath.Join(builds.dir, name)
	return builds.bins[name]
}

// lab is one Dovecot whose logins ask one access backend.
type lab struct {
	d *dovecotlab.Dovecot
	// entry is the login_access_sockets entry, as the log names it.
	entry string
	// setRules replaces the rule files; atomic asks for a rename into
	// place where the backend allows it.
	setRules func(allow, deny string, atomic bool) error
	// daemon is tcpwrapd's process, nil for Dovecot's own tcpwrap.
	daemon *dovecotlab.Process
}

// backend starts a lab with the given initial rules.
type backend struct {
	name  string
	start func(t *testing.T, allow, deny string) *lab
}

var backends = []backend{
	{"tcpwrapd", startTcpwrapd},
	{"dovecot-tcpwrap", startOwnTcpwrap},
}

// startTcpwrapd starts tcpwrapd under systemd-socket-activate on
// base_dir/login/tcpwrapd/access, then Dovecot with
// login_access_sockets = tcpwrapd/access. The socket comes first, as
// with a systemd tcpwrapd.socket ordered before dovecot.service.
func startTcpwrapd(t *testing.T, allow, deny string) *lab {
	t.Helper()
	bin := tcpwrapdBinary(t)
	d := dovecotlab.New(t, dovecotlab.Config{AccessSockets: dovecotlab.DefaultAccessSocket, HostsAllow: allow, HostsDeny: deny})
	dir, err := d.ExternalSocketDir("tcpwrapd")
	if err != nil {
		t.Fatal(err)
	}
	p, err := dovecotlab.StartSocketActivated(t, dovecotlab.SocketActivation{
		Socket: filepath.Join(dir, "access"),
		// systemd-socket-activate creates the socket 0644 root:root;
		// imap-login (dovenull) needs write permission to connect.
		Perm:       dovecotlab.SocketPerm{User: dovecotlab.LoginUser, Mode: 0o600},
		FDName:     "access",
		OutputPath: filepath.Join(d.Dir, "tcpwrapd.out"),
		Argv: []string{bin,
			"--allow-file", d.HostsAllow, "--deny-file", d.HostsDeny,
			"--reload-interval", "100ms", "--log-level", "debug"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Launch(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("tcpwrapd output:\n%s", p.Output())
		}
	})
	return &lab{
		d:      d,
		entry:  dovecotlab.DefaultAccessSocket,
		daemon: p,
		setRules: func(allow, deny string, atomic bool) error {
			write := dovecotlab.WriteInPlace
			if atomic {
				write = dovecotlab.WriteAtomic
			}
			if err := write(d.HostsAllow, allow); err != nil {
				return err
			}
			return write(d.HostsDeny, deny)
		},
	}
}

// startOwnTcpwrap starts Dovecot with its own tcpwrap service, the lab's
// rule files bind-mounted over /etc/hosts.* in a private mount namespace.
func startOwnTcpwrap(t *testing.T, allow, deny string) *lab {
	t.Helper()
	d := dovecotlab.Start(t, dovecotlab.Config{OwnTcpwrap: true, HostsAllow: allow, HostsDeny: deny})
	return &lab{
		d:     d,
		entry: dovecotlab.OwnTcpwrapSocket,
		// Always in place: a rename would replace the file behind the
		// bind mount, which keeps showing the old inode.
		setRules: func(allow, deny string, _ bool) error { return d.SetHosts(allow, deny) },
	}
}

// verdicts maps "proto from ip" to what the client saw.
type verdicts map[string]dovecotlab.Verdict

var clients = []struct{ proto, src string }{
	{"imap", "127.0.0.1"}, {"imap", "127.0.0.2"},
	{"pop3", "127.0.0.1"}, {"pop3", "127.0.0.2"},
}

// probe connects every client once.
func (l *lab) probe(ctx context.Context) (verdicts, error) {
	got := verdicts{}
	for _, c := range clients {
		res, err := dovecotlab.Probe(ctx, c.proto, c.src, l.d.Addr(c.proto))
		if err != nil {
			return got, err
		}
		got[c.proto+" from "+c.src] = res.Verdict
	}
	return got, nil
}

const (
	A = dovecotlab.Allowed
	R = dovecotlab.Refused
)

// step is one rule set of the scenario and the verdicts it must give.
type step struct {
	name        string
	allow, deny string
	atomic      bool // replace the files by rename (tcpwrapd only)
	want        verdicts
}

// scenario starts with hosts.deny "ALL: 127.0.0.2", then edits the rule
// files under the running daemon; each edit must flip verdicts without a
// restart.
var scenario = []step{
	{
		name: "deny 127.0.0.2",
		deny: "ALL: 127.0.0.2\n",
		want: verdicts{"imap from 127.0.0.1": A, "imap from 127.0.0.2": R, "pop3 from 127.0.0.1": A, "pop3 from 127.0.0.2": R},
	},
	{
		name:  "allow 127.0.0.2, deny 127.0.0.1 (in-place edit)",
		allow: "ALL: 127.0.0.2\n",
		deny:  "ALL: 127.0.0.1\n",
		want:  verdicts{"imap from 127.0.0.1": R, "imap from 127.0.0.2": A, "pop3 from 127.0.0.1": R, "pop3 from 127.0.0.2": A},
	},
	{
		name:   "daemon names are protocol names (rename into place)",
		allow:  "# only comments here\n",
		deny:   "imap: 127.0.0.2\npop3: 127.0.0.1\n",
		atomic: true,
		want:   verdicts{"imap from 127.0.0.1": A, "imap from 127.0.0.2": R, "pop3 from 127.0.0.1": R, "pop3 from 127.0.0.2": A},
	},
	{
		name: "deny ALL except 127.0.0.1",
		deny: "ALL: ALL EXCEPT 127.0.0.1\n",
		want: verdicts{"imap from 127.0.0.1": A, "imap from 127.0.0.2": R, "pop3 from 127.0.0.1": A, "pop3 from 127.0.0.2": R},
	},
}

// runScenario plays the scenario on l and returns the verdicts of each
// step. The first step must hold at once; after each edit it polls until
// the verdicts match (or flipTimeout passes).
func runScenario(t *testing.T, l *lab) []verdicts {
	t.Helper()
	var all []verdicts
	for i, st := range scenario {
		if i > 0 {
			if err := l.setRules(st.allow, st.deny, st.atomic); err != nil {
				t.Fatal(err)
			}
		}
		mark := l.d.LogMark()
		start := time.Now()
		var got verdicts
		var err error
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			got, err = l.probe(ctx)
			cancel()
			if i == 0 || (err == nil && cmp.Equal(st.want, got)) || time.Since(start) > flipTimeout {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		all = append(all, got)
		if err != nil {
			t.Errorf("step %d %q: %v\ndovecot log since step:\n%s", i, st.name, err, l.d.LogSince(mark))
			continue
		}
		if diff := cmp.Diff(st.want, got); diff != "" {
			t.Errorf("step %d %q (after %v): verdicts (-want +got):\n%s\ndovecot log since step:\n%s",
				i, st.name, time.Since(start).Round(time.Millisecond), diff, l.d.LogSince(mark))
			continue
		}
		t.Logf("step %d %q: ok after %v", i, st.name, time.Since(start).Round(time.Millisecond))
		checkRefusalLogs(t, l, mark, st)
	}
	return all
}

// checkRefusalLogs checks Dovecot's "Client refused" line for every
// refused client of st (and, for tcpwrapd, its own "access refused" line).
func checkRefusalLogs(t *testing.T, l *lab, mark int64, st step) {
	t.Helper()
	var keys []string
	for k := range st.want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if st.want[k] != R {
			continue
		}
		proto, ip, _ := strings.Cut(k, " from ")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if _, err := l.d.WaitLog(ctx, mark, dovecotlab.RefusedLine(proto, l.entry, ip)); err != nil {
			t.Errorf("step %q: %v", st.name, err)
		}
		cancel()
		if l.daemon != nil && !hasLogLine(l.daemon.Output(), `msg="access refused"`, "daemon="+proto, "client_addr="+ip) {
			t.Errorf("step %q: tcpwrapd did not log the refusal of %s from %s", st.name, proto, ip)
		}
	}
}

// hasLogLine reports whether a line of text contains all of parts.
func hasLogLine(text string, parts ...string) bool {
	for _, line := range strings.Split(text, "\n") {
		ok := true
		for _, p := range parts {
			if !strings.Contains(line, p) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// TestAccessScenario runs the scenario against tcpwrapd and against
// Dovecot's own tcpwrap, and checks that both gave the same verdicts.
func TestAccessScenario(t *testing.T) {
	dovecotlab.SkipIfUnavailable(t)
	results := map[string][]verdicts{}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			l := b.start(t, scenario[0].allow, scenario[0].deny)
			results[b.name] = runScenario(t, l)
			if l.daemon != nil {
				checkDaemonHealthy(t, l.daemon)
			}
		})
	}
	if len(results) == len(backends) {
		if diff := cmp.Diff(results["dovecot-tcpwrap"], results["tcpwrapd"]); diff != "" {
			t.Errorf("tcpwrapd and Dovecot's tcpwrap disagree (-dovecot-tcpwrap +tcpwrapd):\n%s", diff)
		}
	}
}

// checkDaemonHealthy checks that tcpwrapd is still running and stops
// cleanly on SIGTERM with exit status 0.
func checkDaemonHealthy(t *testing.T, p *dovecotlab.Process) {
	t.Helper()
	if done, err := p.Exited(); done {
		t.Fatalf("tcpwrapd exited during the test (%v):\n%s", err, p.Output())
	}
	if err := p.Stop(); err != nil {
		t.Errorf("stop tcpwrapd: %v", err)
	}
	if _, err := p.Exited(); err != nil {
		t.Errorf("tcpwrapd exit after SIGTERM: %v\n%s", err, p.Output())
	}
}

// TestTcpwrapdSurvivesDovecotRestart restarts Dovecot under a running
// tcpwrapd: Dovecot must start although a live socket sits in
// base_dir/login/tcpwrapd/, must not delete it, and the same tcpwrapd
// process keeps answering (docs/dovecot-managed.md, "The login
// access-check protocol").
func TestTcpwrapdSurvivesDovecotRestart(t *testing.T) {
	dovecotlab.SkipIfUnavailable(t)
	l := startTcpwrapd(t, "", "ALL: 127.0.0.2\n")
	want := scenario[0].want
	check := func(when string) {
		t.Helper()
		got, err := l.probe(context.Background())
		if err != nil {
			t.Fatalf("%s: %v\nlog:\n%s", when, err, l.d.Log())
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: verdicts (-want +got):\n%s\nlog:\n%s", when, diff, l.d.Log())
		}
	}
	check("before restart")
	pid := l.daemon.PID()
	if err := l.d.Restart(); err != nil {
		t.Fatal(err)
	}
	check("after restart")
	if l.daemon.PID() != pid {
		t.Errorf("tcpwrapd PID changed from %d to %d", pid, l.daemon.PID())
	}
	checkDaemonHealthy(t, l.daemon)
}
