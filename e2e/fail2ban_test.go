package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcpwrapd/tcpwrapd/internal/dovecot24lab"
	"github.com/tcpwrapd/tcpwrapd/internal/dovecotlab"
	"github.com/tcpwrapd/tcpwrapd/internal/peertest"
	"github.com/tcpwrapd/tcpwrapd/pkg/accessd"
)

// fail2ban's stock hostsdeny action, as Debian's fail2ban package ships it.
const fail2banHostsDenyAction = "/etc/fail2ban/action.d/hostsdeny.conf"

// fail2banAvailable says why a private fail2ban cannot run here.
func fail2banAvailable() error {
	for _, bin := range []string{"fail2ban-server", "fail2ban-client"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("fail2ban is not installed (apt-get install fail2ban): %w", err)
		}
	}
	if _, err := os.Stat(fail2banHostsDenyAction); err != nil {
		return fmt.Errorf("fail2ban's hostsdeny action is missing: %w", err)
	}
	return nil
}

// fail2ban is a private fail2ban-server, a child of the test, with its
// own configuration directory, socket, pid file, log and an in-memory
// database, and one jail whose only action is the stock hostsdeny action
// writing to a hosts.deny of the test's.
type fail2ban struct {
	p    *dovecotlab.Process
	sock string
	jail string
}

// startFail2ban writes the configuration into dir (nothing outside dir is
// read but the stock action, copied from /etc/fail2ban, and nothing
// outside dir is written) and starts fail2ban-server in the foreground.
// It returns once the server answers a ping.
func startFail2ban(t *testing.T, dir, hostsDeny string) *fail2ban {
	t.Helper()
	action, err := os.ReadFile(fail2banHostsDenyAction)
	if err != nil {
		t.Fatal(err)
	}
	f := &fail2ban{sock: filepath.Join(dir, "f2b.sock"), jail: "tcpwrapd-e2e"}
	files := map[string]string{
		"action.d/hostsdeny.conf": string(action),
		"fail2ban.conf": fmt.Sprintf(`[Definition]
loglevel = INFO
logtarget = %s
socket = %s
pidfile = %s
dbfile = :memory:
allowipv6 = auto
dbpurgeage = 1d
`, filepath.Join(dir, "fail2ban.log"), f.sock, filepath.Join(dir, "f2b.pid")),
		// No filter: the bans come from banip/unbanip. The log file only
		// gives the polling backend something to watch.
		"jail.conf": fmt.Sprintf(`[%s]
enabled = true
filter =
backend = polling
logpath = %s
ignoreself = false
ignoreip =
bantime = -1
action = hostsdeny[file="%s"]
`, f.jail, filepath.Join(dir, "watched.log"), hostsDeny),
		"watched.log": "",
	}
	for name, text := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("fail2ban-server", "-f", "-x", "-c", dir, "-s", f.sock, "-p", filepath.Join(dir, "f2b.pid"), "start")
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"}
	p, err := dovecotlab.StartProcess(t, "fail2ban-server", cmd, filepath.Join(dir, "fail2ban-server.out"))
	peertest.Require(t, "fail2ban", err)
	f.p = p
	t.Cleanup(func() {
		// fail2ban-client stop first (the server runs its actionstop and
		// exits); the Process cleanup registered by StartProcess, which
		// runs after this one, sends SIGTERM and then SIGKILL to whatever
		// is left.
		if done, _ := p.Exited(); !done {
			if out, err := f.client("stop"); err != nil {
				t.Logf("fail2ban-client stop: %v: %s", err, out)
			}
			select {
			case <-p.Done():
			case <-time.After(30 * time.Second):
				t.Errorf("fail2ban-server still running 30 s after fail2ban-client stop")
			}
		}
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "fail2ban.log"))
			t.Logf("fail2ban-server output:\n%s\nfail2ban.log:\n%s", p.Output(), log)
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := f.client("ping")
		if err == nil && strings.Contains(out, "pong") {
			break
		}
		if done, werr := p.Exited(); done {
			peertest.Require(t, "fail2ban", fmt.Errorf("fail2ban-server exited (%v): %s", werr, p.Output()))
		}
		if time.Now().After(deadline) {
			peertest.Require(t, "fail2ban", fmt.Errorf("fail2ban-server did not answer in 60 s: %v %s\n%s", err, out, p.Output()))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if out, err := f.client("status", f.jail); err != nil {
		t.Fatalf("fail2ban-client status %s: %v: %s", f.jail, err, out)
	}
	return f
}

// client runs fail2ban-client against the private server's socket.
func (f *fail2ban) client(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "fail2ban-client", append([]string{"-s", f.sock}, args...)...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// f2bPhase is what the hosts.deny says about the cycle's target address:
// while stable, every check that starts and ends in the phase must get
// its verdict; while the file is being changed, the target may get either
// verdict. The control address is allowed in every phase.
type f2bPhase struct {
	target string
	banned bool // the stable verdict: denied
	stable bool
	checks atomic.Int64 // target checks that started and ended in this phase
}

// TestFail2banHostsDeny: Debian's fail2ban (a private fail2ban-server
// driven by fail2ban-client set JAIL banip/unbanip) writes, with its stock
// hostsdeny action ("printf ... >> file" to ban, "sed -i" to unban), the
// hosts.deny that the tcpwrapd binary serves on its auth policy listener
// to a real Dovecot 2.3 (auth_policy_reject_on_fail = yes).
//
// Each cycle bans a fresh address 127.0.0.2NN (fresh, so that Dovecot's
// auth penalty for the refused login does not slow the next cycle) and
// unbans it. After each fail2ban-client command the test waits for
// tcpwrapd's "rules loaded" event for the next generation, not for a
// time, and then the verdict must have flipped: Dovecot's IMAP login from
// the target gets "NO [ALERT] Access denied." after the ban and "OK"
// after the unban. Dovecot holds the refused address's next login for its
// auth penalty (4 s here), so after the first three unbans the flip back
// is checked by the HTTP checker alone (it must have checked the target
// in every phase).
//
// All the while a checker sends allow requests exactly as Dovecot 2.3
// does (its default attributes) over one keep-alive connection, for the
// target and for the control address 127.0.0.2, and a second checker
// logs in through Dovecot from 127.0.0.2. Every verdict must be the
// before- or the after-state of the file: the control address is allowed
// always, and a target check that started and ended within a stable phase
// gets that phase's verdict. Every prefix of a line fail2ban writes,
// "ALL: 127.0.0.2" or "ALL: 127.0.0." or a line without its newline (an
// error that denies everyone), would deny the control address, so a
// half-written file read by tcpwrapd would show.
func TestFail2banHostsDeny(t *testing.T) {
	peertest.Require(t, "fail2ban", fail2banAvailable())
	dovecotlab.SkipIfUnavailable(t)
	dir, err := os.MkdirTemp("", "f2b") // short: unix socket paths
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	allowFile, denyFile := filepath.Join(dir, "hosts.allow"), filepath.Join(dir, "hosts.deny")
	os.WriteFile(allowFile, nil, 0o644)
	// Lines of the admin's own that fail2ban's sed -i must keep.
	const denyBase = "# fail2ban's hostsdeny action appends below\nsshd: 192.0.2.1\npop3: 127.0.0.2\n"
	if err := os.WriteFile(denyFile, []byte(denyBase), 0o644); err != nil {
		t.Fatal(err)
	}
	f := startFail2ban(t, filepath.Join(dir, "f2b"), denyFile)

	ln := listenPassed(t, accessd.FrontEndAuthPolicy, "tcp", "127.0.0.1:0")
	d := startDaemon(t, dir, []passed{ln}, 1, "--allow-file", allowFile, "--deny-file", denyFile,
		"--reload-interval", "100ms")
	loads := func() int { return strings.Count(d.p.Output(), `msg="rules loaded"`) }
	if n := loads(); n != 1 {
		t.Fatalf("%d rule loads at start, want 1", n)
	}
	dc := dovecotlab.Start(t, dovecotlab.Config{NoAccessCheck: true, Protocols: []string{"imap"}, Extra: `
auth_policy_server_url = http://` + ln.addr + `/
auth_policy_hash_nonce = e2e-nonce
auth_policy_reject_on_fail = yes
auth_failure_delay = 0
`})
	const control, denied, granted = "127.0.0.2", `{"status":-1,"msg":"Access denied."}`, `{"status":0}`
	dovecotLogin := func(src string) string {
		got, err := dovecot24lab.Login(context.Background(), "imap", src, dc.Addr("imap"), "alice", "secret")
		if err != nil {
			return "error: " + err.Error()
		}
		return got
	}

	cycles := 20
	if testing.Short() {
		cycles = 5
	}
	var cur atomic.Pointer[f2bPhase]
	cur.Store(&f2bPhase{target: "127.0.0.200", stable: true})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var stopOnce sync.Once
	// halt stops the checkers; as a cleanup (run before the processes'
	// cleanups) it also ends them when the test fails half-way.
	halt := func() {
		stopOnce.Do(func() { close(stop) })
		wg.Wait()
	}
	t.Cleanup(halt)
	var mu sync.Mutex
	var bad []string
	var httpChecks, dovecotChecks atomic.Int64
	violation := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(bad) < 20 {
			bad = append(bad, fmt.Sprintf(format, args...))
		}
	}
	// The HTTP checker: Dovecot 2.3's request body with its default
	// auth_policy_request_attributes, over one keep-alive connection.
	wg.Go(func() {
		hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
		defer hc.CloseIdleConnections()
		ask := func(src string) (string, error) {
			body := fmt.Sprintf(`{"device_id":"","login":"alice","protocol":"imap","pwhash":"1e2f3a4b","remote":%q,"session_id":"f2b","tls":false}`, src)
			resp, err := hc.Post("http://"+ln.addr+"/?command=allow", "application/x-www-form-urlencoded", strings.NewReader(body))
			if err != nil {
				return "", err
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err == nil && resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("HTTP %d", resp.StatusCode)
			}
			return string(b), err
		}
		for {
			select {
			case <-stop:
				return
			default:
			}
			p0 := cur.Load()
			got, err := ask(p0.target)
			p1 := cur.Load()
			httpChecks.Add(1)
			switch {
			case err != nil:
				violation("allow for %s: %v", p0.target, err)
			case p0 == p1 && p0.stable:
				want := granted
				if p0.banned {
					want = denied
				}
				if got != want {
					violation("allow for %s (banned=%v, stable): %s, want %s", p0.target, p0.banned, got, want)
				}
				p0.checks.Add(1)
			case got != granted && got != denied:
				violation("allow for %s (changing): %s, want the before- or after-state", p0.target, got)
			}
			if got, err := ask(control); err != nil || got != granted {
				violation("allow for the control %s: %s, %v; want %s", control, got, err, granted)
			}
		}
	})
	// The Dovecot checker: real IMAP logins from the control address.
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if got := dovecotLogin(control); !strings.HasPrefix(got, "a OK") {
				violation("Dovecot login from the control %s: %q, want a OK", control, got)
			}
			dovecotChecks.Add(1)
		}
	})

	// step runs one fail2ban-client command for target, waits for the
	// rules load it causes and checks that the verdict flipped.
	var delays []time.Duration
	gen := 1
	step := func(target string, ban, login bool) {
		t.Helper()
		cur.Store(&f2bPhase{target: target, banned: !ban, stable: false})
		cmd := "unbanip"
		if ban {
			cmd = "banip"
		}
		t0 := time.Now()
		if out, err := f.client("set", f.jail, cmd, target); err != nil {
			t.Fatalf("fail2ban-client set %s %s %s: %v: %s", f.jail, cmd, target, err, out)
		}
		gen++
		for deadline := time.Now().Add(60 * time.Second); loads() < gen; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no rules load %d after %s %s in 60 s", gen, cmd, target)
			}
		}
		delays = append(delays, time.Since(t0))
		next := &f2bPhase{target: target, banned: ban, stable: true}
		cur.Store(next)
		want := "a OK"
		if ban {
			want = "a NO [ALERT] Access denied."
		}
		if ban || login {
			if got := dovecotLogin(target); !strings.HasPrefix(got, want) {
				t.Errorf("after %s %s (rules generation %d): Dovecot login from %s: %q, want %q", cmd, target, gen, target, got, want)
			}
		}
		// An HTTP check of this phase too, before the next change.
		for deadline := time.Now().Add(30 * time.Second); next.checks.Load() < 1; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the HTTP checker made no check in the phase after %s %s", cmd, target)
			}
		}
	}
	for i := range cycles {
		target := fmt.Sprintf("127.0.0.%d", 200+i)
		step(target, true, true)
		if b, _ := os.ReadFile(denyFile); string(b) != denyBase+"ALL: "+target+"\n" {
			t.Errorf("hosts.deny after banip %s:\n%s", target, b)
		}
		step(target, false, i < 3)
		if b, _ := os.ReadFile(denyFile); string(b) != denyBase {
			t.Errorf("hosts.deny after unbanip %s:\n%s", target, b)
		}
	}
	halt()

	for _, b := range bad {
		t.Error(b)
	}
	if n := loads(); n != gen {
		t.Errorf("%d rule loads for %d fail2ban changes, want %d: a load of an intermediate state", n, 2*cycles, gen)
	}
	if out := d.p.Output(); strings.Contains(out, "errors=1") || strings.Contains(out, "does not end in a newline") {
		t.Errorf("tcpwrapd loaded a broken hosts.deny:\n%s", out)
	}
	var maxDelay time.Duration
	for _, dl := range delays {
		maxDelay = max(maxDelay, dl)
	}
	t.Logf("%d ban/unban cycles; %d HTTP checks and %d Dovecot logins alongside; change to rules loaded: max %v (reload interval 100 ms + settle %v)",
		cycles, httpChecks.Load(), dovecotChecks.Load(), maxDelay, accessd.SettleTime)
	if err := d.p.Stop(); err != nil {
		t.Errorf("stop tcpwrapd: %v", err)
	}
}
