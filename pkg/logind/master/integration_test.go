package master

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcpwrapd/tcpwrapd/internal/dovecotlab"
	"github.com/tcpwrapd/tcpwrapd/internal/privdrop"
	"github.com/tcpwrapd/tcpwrapd/pkg/accessd"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/config"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/control"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/imap"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/ipc"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login/logintest"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/managesieve"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/master/worker"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/pop3"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/submission"
)

// testProtocols are the login processes' protocols in these tests: the
// real ones, with the test-only commands (logintest).
var testProtocols = []login.Protocol{
	logintest.Wrap(imap.Protocol{}),
	logintest.Wrap(pop3.Protocol{}),
	logintest.Wrap(submission.Protocol{}),
	logintest.Wrap(managesieve.Protocol{}),
}

// TestMain makes the test binary the login process when the supervisor
// starts it (os/exec's helper-process pattern), with the test-only
// commands (logintest).
func TestMain(m *testing.M) {
	if os.Getenv(ipc.LoginProcessEnv) == "1" {
		if mode := os.Getenv("LOGINSVC_TEST_FAKE"); mode != "" {
			os.Exit(fakeLogin(mode, os.Getenv("LOGINSVC_TEST_TOKEN")))
		}
		os.Exit(login.Main(testProtocols...))
	}
	if conf := os.Getenv("LOGINSVC_TEST_SUPERVISOR"); conf != "" {
		os.Exit(supervisorChild(conf))
	}
	if os.Getenv("LOGINSVC_TEST_SANDBOX") != "" {
		os.Exit(sandboxChild())
	}
	if os.Getenv("LOGINSVC_TEST_OPENAS") != "" {
		os.Exit(openAsLoginUser(os.Getenv("LOGINSVC_TEST_OPENAS")))
	}
	os.Exit(m.Run())
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

type lab struct {
	t      *testing.T
	sup    *Supervisor
	cfg    *config.Config
	port   int
	cancel context.CancelFunc
	done   chan error
	logs   *syncBuf
}

// freePort returns a free port on 127.0.0.1 that no test of this process
// was given before (dovecotlab.FreePort: below the kernel's ephemeral
// range, where the connections of the tests running beside it do not
// take it before the lab binds it).
func freePort(t *testing.T) int {
	p, err := dovecotlab.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// startLab runs a Supervisor in-process with real login processes (this
// test binary) for one service svc whose body is conf; base_dir is a
// temporary directory unless conf sets it.
func startLab(t *testing.T, svc, global, conf string) *lab {
	t.Helper()
	return startLabEnv(t, nil, svc, global, conf)
}

// startLabEnv is startLab with env added to the login processes'
// environment (ExecRunner.Env).
func startLabEnv(t *testing.T, env []string, svc, global, conf string) *lab {
	t.Helper()
	port := freePort(t)
	proto := strings.TrimSuffix(strings.TrimPrefix(svc, "manage"), "-login")
	listener := map[string]string{"imap": "imap", "pop3": "pop3", "submission": "submission", "sieve": "sieve"}[proto]
	text := fmt.Sprintf("base_dir = %s\nprotocols = %s\nlisten = 127.0.0.1\n%s\nservice %s {\n inet_listener %s {\n  port = %d\n }\n%s\n}\n",
		t.TempDir(), proto, global, svc, listener, port, conf)
	if strings.Contains(global, "base_dir") {
		text = strings.Replace(text, "base_dir = ", "#base_dir = ", 1)
	}
	cfg, err := config.Parse("lab.conf", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuf{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	l := &lab{t: t, cfg: cfg, port: port, logs: logs, done: make(chan error, 1)}
	l.sup = &Supervisor{Logger: log, ShutdownGrace: 3 * time.Second,
		Runner: &worker.ExecRunner{Path: os.Args[0], Env: env, Logger: log, NoSandbox: os.Geteuid() != 0}}
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	ready := make(chan struct{})
	l.sup.OnReady = func() { close(ready) }
	go func() { l.done <- l.sup.Run(ctx, cfg) }()
	select {
	case <-ready:
	case err := <-l.done:
		t.Fatalf("supervisor: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("supervisor did not start")
	}
	t.Cleanup(func() {
		l.stop()
		if t.Failed() {
			t.Logf("supervisor log:\n%s", logs.String())
		}
	})
	return l
}

func (l *lab) stop() error {
	l.cancel()
	select {
	case err := <-l.done:
		l.done <- err
		return err
	case <-time.After(15 * time.Second):
		l.t.Error("supervisor did not stop")
		return nil
	}
}

func (l *lab) status() control.ServiceStatus {
	st := l.sup.Status()
	if len(st.Services) != 1 {
		l.t.Fatalf("status: %d services", len(st.Services))
	}
	return st.Services[0]
}

// waitFor polls cond for up to 10 s.
func (l *lab) waitFor(what string, cond func(control.ServiceStatus) bool) control.ServiceStatus {
	l.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := l.status()
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("timed out waiting for %s; status %+v", what, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// hasLog waits up to 5 s for the supervisor log to contain sub.
func (l *lab) hasLog(sub string) bool {
	for i := 0; i < 250; i++ {
		if strings.Contains(l.logs.String(), sub) {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

func readyProcs(st control.ServiceStatus) int {
	n := 0
	for _, p := range st.Procs {
		if p.Ready {
			n++
		}
	}
	return n
}

type tclient struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func (l *lab) dial(src string) *tclient {
	l.t.Helper()
	return dialPort(l.t, l.port, src)
}

// dialPort connects to 127.0.0.1:port from src ("": any address); the
// connection is closed at the end of the test.
func dialPort(t *testing.T, port int, src string) *tclient {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	c, err := d.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &tclient{t: t, c: c, r: bufio.NewReader(c)}
}

// line reads one line (without CRLF), "EOF" at end of stream.
func (c *tclient) line() string {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	s, err := c.r.ReadString('\n')
	if err != nil {
		if s == "" {
			return "EOF"
		}
		return s
	}
	return strings.TrimRight(s, "\r\n")
}

func (c *tclient) cmd(s string) string {
	c.t.Helper()
	c.c.Write([]byte(s + "\r\n"))
	return c.line()
}

func TestHighSecurityProcessesAndEviction(t *testing.T) {
	l := startLab(t, "imap-login", "", "service_count = 1\nprocess_limit = 4")
	var cs []*tclient
	for i := 0; i < 4; i++ {
		c := l.dial("")
		if g := c.line(); !strings.HasPrefix(g, "* OK [CAPABILITY") {
			t.Fatalf("client %d greeting %q", i, g)
		}
		cs = append(cs, c)
		time.Sleep(20 * time.Millisecond)
	}
	st := l.waitFor("4 processes with one logging-in client each", func(s control.ServiceStatus) bool {
		n := 0
		for _, p := range s.Procs {
			n += p.LoggingIn
		}
		return len(s.Procs) == 4 && n == 4
	})
	if os.Geteuid() == 0 {
		for _, p := range st.Procs {
			checkSandboxed(t, p.PID, filepath.Join(l.cfg.BaseDir, "login"))
		}
	}
	// The oldest client is proxying: it must never be evicted.
	if r := cs[0].cmd("p XPROXY"); r != "p OK" {
		t.Fatalf("XPROXY: %q", r)
	}
	l.waitFor("client 0 proxying", func(s control.ServiceStatus) bool {
		for _, p := range s.Procs {
			if p.Proxying == 1 {
				return true
			}
		}
		return false
	})
	cs = evictOnePerArrival(t, l, cs)
	st = l.waitFor("counters", func(s control.ServiceStatus) bool { return s.Counters.Evicted == 2 })
	if len(st.Procs) > 4 {
		t.Errorf("%d processes over process_limit 4", len(st.Procs))
	}
	// LOGOUT ends the process (service_count = 1).
	if r := cs[3].cmd("a LOGOUT"); r != "* BYE Logging out" {
		t.Errorf("LOGOUT: %q", r)
	}
	l.waitFor("3 processes after LOGOUT", func(s control.ServiceStatus) bool { return len(s.Procs) == 3 })
}

// checkSandboxed verifies a login process runs as dovenull, chrooted.
func checkSandboxed(t *testing.T, pid int, root string) {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	uid, gid, _ := dovecotlab.LookupIDs("dovenull")
	wantUID := fmt.Sprintf("Uid:\t%d\t%d\t%d\t%d", uid, uid, uid, uid)
	wantGID := fmt.Sprintf("Gid:\t%d\t%d\t%d\t%d", gid, gid, gid, gid)
	if !strings.Contains(string(status), wantUID) || !strings.Contains(string(status), wantGID) {
		t.Errorf("pid %d not dovenull:\n%s", pid, status)
	}
	if r, _ := os.Readlink(fmt.Sprintf("/proc/%d/root", pid)); r != root {
		t.Errorf("pid %d root %q, want %q", pid, r, root)
	}
	fi, err := os.Stat(root)
	if err != nil || fi.Mode().Perm() != 0o750 || fi.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Errorf("chroot %s: %v %v (want root-owned 0750)", root, fi.Mode(), err)
	}
}

func TestHighPerformanceSpillOverCrashAndReplacement(t *testing.T) {
	l := startLab(t, "imap-login", "", "service_count = 0\nclient_limit = 3\nprocess_min_avail = 1\nprocess_limit = 3")
	l.waitFor("one preforked process", func(s control.ServiceStatus) bool { return readyProcs(s) == 1 })
	p := l.status().Procs[0]
	if got := procEnv(t, p.PID, "GOMAXPROCS"); got != "1" {
		t.Errorf("high-performance process %d: GOMAXPROCS=%q, want 1 (one thread serves its clients, as in Dovecot)", p.PID, got)
	}
	if got, want := "GODEBUG="+procEnv(t, p.PID, "GODEBUG"), worker.SysmonNoDeepSleep; got != want {
		t.Errorf("high-performance process %d: %s, want %s", p.PID, got, want)
	}
	var cs []*tclient
	for i := 0; i < 4; i++ {
		c := l.dial("")
		if g := c.line(); !strings.HasPrefix(g, "* OK") {
			t.Fatalf("greeting %q", g)
		}
		cs = append(cs, c)
	}
	st := l.waitFor("spill-over to a second process", func(s control.ServiceStatus) bool {
		return len(s.Procs) == 2 && s.Procs[0].LoggingIn == 3 && s.Procs[1].LoggingIn == 1
	})
	// Crash the first process: its three clients are lost, the other
	// process's client is unharmed, and process_min_avail is restored.
	syscall.Kill(st.Procs[0].PID, syscall.SIGKILL)
	for i := 0; i < 3; i++ {
		if got := cs[i].line(); got != "EOF" {
			t.Errorf("client %d of the crashed process: %q", i, got)
		}
	}
	if r := cs[3].cmd("n NOOP"); r != "n OK NOOP completed." {
		t.Errorf("client of the other process: %q", r)
	}
	st = l.waitFor("crash counted", func(s control.ServiceStatus) bool { return s.Counters.Crashes == 1 && s.Counters.Lost == 3 })
	c := l.dial("")
	if g := c.line(); !strings.HasPrefix(g, "* OK") {
		t.Fatalf("after crash greeting %q", g)
	}
}

// TestHighPerformanceClientLimitAcrossListeners: a process accepting from
// two listeners at once still never holds more than client_limit clients
// (one accept loop for all of a process's listeners); clients arriving on
// both at once spill over to further processes and all are greeted.
func TestHighPerformanceClientLimitAcrossListeners(t *testing.T) {
	port2 := freePort(t)
	l := startLab(t, "imap-login", "", fmt.Sprintf("inet_listener imap2 {\n  port = %d\n }\nservice_count = 0\nclient_limit = 3\nprocess_min_avail = 1\nprocess_limit = 10", port2))
	l.waitFor("one preforked process", func(s control.ServiceStatus) bool { return readyProcs(s) == 1 })
	const n = 24
	var wg sync.WaitGroup
	greetings := make([]string, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			port := l.port
			if i%2 == 1 {
				port = port2
			}
			c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 5*time.Second)
			if err != nil {
				greetings[i] = err.Error()
				return
			}
			t.Cleanup(func() { c.Close() })
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			g, _ := bufio.NewReader(c).ReadString('\n')
			greetings[i] = g
		}(i)
	}
	wg.Wait()
	for i, g := range greetings {
		if !strings.HasPrefix(g, "* OK") {
			t.Errorf("client %d: %q", i, g)
		}
	}
	st := l.waitFor("all 24 logging in", func(s control.ServiceStatus) bool {
		n := 0
		for _, p := range s.Procs {
			n += p.LoggingIn
		}
		return n == 24
	})
	for _, p := range st.Procs {
		if p.Served > 3 || p.LoggingIn+p.Checking > 3 {
			t.Errorf("process %d: served %d, holds %d clients; client_limit is 3", p.PID, p.Served, p.LoggingIn+p.Checking)
		}
	}
}

// TestShutdownWhileSpawningForAnotherListener: with two listeners and no
// preforked process, a client on one listener makes the supervisor spawn
// (duplicating both listening sockets) while shutdown closes the other
// listener; pools stop spawning before any listener is closed, so the
// two never meet (go test -race saw them meet before).
func TestShutdownWhileSpawningForAnotherListener(t *testing.T) {
	for i := 0; i < 5; i++ {
		port2 := freePort(t)
		l := startLab(t, "imap-login", "", fmt.Sprintf("inet_listener imap2 {\n  port = %d\n }\nservice_count = 0\nprocess_min_avail = 0", port2))
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port2), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.stop(); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
}

// TestHighPerformanceDirectAcceptEviction: high-performance processes
// accept by themselves; at process_limit x client_limit the supervisor
// takes the next arrival, evicts the oldest logging-in client of all
// (never a proxying one) exactly once and gives the arrival its slot.
func TestHighPerformanceDirectAcceptEviction(t *testing.T) {
	l := startLab(t, "imap-login", "", "service_count = 0\nclient_limit = 2\nprocess_min_avail = 2\nprocess_limit = 2")
	l.waitFor("two preforked processes", func(s control.ServiceStatus) bool { return readyProcs(s) == 2 })
	var cs []*tclient
	for i := 0; i < 4; i++ {
		c := l.dial("")
		if g := c.line(); !strings.HasPrefix(g, "* OK") {
			t.Fatalf("client %d greeting %q", i, g)
		}
		cs = append(cs, c)
		// The next one arrives after this one is known to the
		// supervisor: the victims' order is the arrivals'.
		n := i + 1
		l.waitFor(fmt.Sprintf("%d direct accepts", n), func(s control.ServiceStatus) bool { return s.Counters.Direct == uint64(n) })
	}
	l.waitFor("2 processes x 2 logging-in clients, all accepted directly", func(s control.ServiceStatus) bool {
		return len(s.Procs) == 2 && s.Procs[0].LoggingIn == 2 && s.Procs[1].LoggingIn == 2 && s.Counters.Direct == 4
	})
	if r := cs[0].cmd("p XPROXY"); r != "p OK" {
		t.Fatalf("XPROXY: %q", r)
	}
	l.waitFor("client 0 proxying", func(s control.ServiceStatus) bool { return s.Procs[0].Proxying+s.Procs[1].Proxying == 1 })
	cs = evictOnePerArrival(t, l, cs)
	st := l.waitFor("two evictions, 4 clients in 2 processes", func(s control.ServiceStatus) bool {
		n := 0
		for _, p := range s.Procs {
			n += p.LoggingIn + p.Proxying
		}
		return s.Counters.Evicted == 2 && n == 4
	})
	for _, p := range st.Procs {
		if p.LoggingIn+p.Proxying > 2 {
			t.Errorf("process %d has %d clients, client_limit 2", p.PID, p.LoggingIn+p.Proxying)
		}
	}
	if st.Counters.Accepted != 6 || st.Counters.Direct != 4 {
		t.Errorf("counters %+v", st.Counters)
	}
	// A slot frees up: the processes accept by themselves again. (An
	// arrival racing with the departure could still be taken by the
	// supervisor, whose view then lags by one report.)
	cs[3].cmd("a LOGOUT")
	l.waitFor("a free slot", func(s control.ServiceStatus) bool { return s.Procs[0].LoggingIn+s.Procs[1].LoggingIn == 2 })
	c := l.dial("")
	if g := c.line(); !strings.HasPrefix(g, "* OK") {
		t.Fatalf("after LOGOUT greeting %q", g)
	}
	l.waitFor("direct accept again", func(s control.ServiceStatus) bool { return s.Counters.Direct == 5 && s.Counters.Evicted == 2 })
}

func TestVszLimitKillsOnlyThatProcess(t *testing.T) {
	l := startLab(t, "imap-login", "", "service_count = 1\nvsz_limit = 64M")
	a, b := l.dial(""), l.dial("")
	a.line()
	b.line()
	st := l.waitFor("two processes", func(s control.ServiceStatus) bool { return len(s.Procs) == 2 })
	a.c.Write([]byte("x XALLOC 300\r\n"))
	if got := a.line(); got != "EOF" {
		t.Errorf("over vsz_limit got %q, want the connection to die", got)
	}
	if r := b.cmd("n NOOP"); r != "n OK NOOP completed." {
		t.Errorf("other client: %q", r)
	}
	after := l.waitFor("crash counted", func(s control.ServiceStatus) bool { return s.Counters.Crashes == 1 && len(s.Procs) == 1 })
	// The runtime usually dies with "fatal error: ... out of memory"
	// (logged with a vsz_limit hint), occasionally with SIGSEGV when an
	// mmap fails inside the collector; either way only that process dies.
	// Its goroutines' stacks (printed whatever GOTRACEBACK says) are
	// logged only in part (crashTrim).
	for _, p := range st.Procs {
		if p.PID == after.Procs[0].PID {
			continue
		}
		n := 0
		pid := p.PID
		for _, line := range strings.Split(l.logs.String(), "\n") {
			if strings.Contains(line, fmt.Sprintf(" pid=%d", pid)) {
				n++
			}
		}
		t.Logf("%d lines logged for the process that died", n)
		if n > worker.CrashLines+10 {
			t.Errorf("%d lines logged for the process that died, want at most %d", n, worker.CrashLines+10)
		}
	}
	c := l.dial("")
	if g := c.line(); !strings.HasPrefix(g, "* OK") {
		t.Errorf("new client after the crash: %q", g)
	}
}

func TestPreloginLimits(t *testing.T) {
	t.Run("imap bad commands are cumulative", func(t *testing.T) {
		l := startLab(t, "imap-login", "", "")
		c := l.dial("")
		c.line()
		got := []string{c.cmd("a BOGUS"), c.cmd("b NOOP"), c.cmd("c BOGUS"), c.cmd("d BOGUS"), c.line()}
		want := []string{"a BAD Error in IMAP command received by server.", "b OK NOOP completed.", "c BAD Error in IMAP command received by server.", "* BYE Too many invalid IMAP commands.", "EOF"}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("got %q\nwant %q", got, want)
		}
	})
	t.Run("pop3 bad commands are consecutive", func(t *testing.T) {
		l := startLab(t, "pop3-login", "", "")
		c := l.dial("")
		if g := c.line(); g != "+OK loginsvc ready." {
			t.Fatalf("greeting %q", g)
		}
		got := []string{c.cmd("X"), c.cmd("X"), c.cmd("CAPA")}
		for c.line() != "." {
		}
		got = append(got, c.cmd("X"), c.cmd("X"), c.cmd("X"), c.line(), c.line())
		want := []string{"-ERR Unknown command.", "-ERR Unknown command.", "+OK", "-ERR Unknown command.", "-ERR Unknown command.", "-ERR Unknown command.", "-ERR Too many invalid bad commands.", "EOF"}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("got %q\nwant %q", got, want)
		}
	})
	t.Run("absolute pre-login deadline", func(t *testing.T) {
		l := startLab(t, "imap-login", "login_prelogin_timeout = 1500ms", "service_count = 0")
		c := l.dial("")
		c.line()
		start := time.Now()
		time.Sleep(700 * time.Millisecond)
		if r := c.cmd("n NOOP"); r != "n OK NOOP completed." {
			t.Fatalf("NOOP %q", r)
		}
		if got := c.line(); got != "* BYE Disconnected for inactivity." {
			t.Errorf("got %q", got)
		}
		if e := time.Since(start); e > 1900*time.Millisecond {
			t.Errorf("deadline not absolute: %v after greeting", e)
		}
	})
	t.Run("input buffer full", func(t *testing.T) {
		l := startLab(t, "imap-login", "", "")
		c := l.dial("")
		c.line()
		if got := c.cmd("a LOGIN " + strings.Repeat("x", 2000)); got != "* BYE Input buffer full, aborting" {
			t.Errorf("got %q", got)
		}
	})
}

func TestReloadAndGracefulShutdown(t *testing.T) {
	l := startLab(t, "imap-login", "shutdown_clients = no", "service_count = 0\nprocess_min_avail = 2")
	a := l.dial("")
	if g := a.line(); !strings.HasSuffix(g, "] loginsvc ready.") {
		t.Fatalf("greeting %q", g)
	}
	text := fmt.Sprintf("base_dir = %s\nprotocols = imap\nlisten = 127.0.0.1\nshutdown_clients = no\nlogin_greeting = reloaded.\nservice imap-login {\n inet_listener imap {\n  port = %d\n }\n service_count = 0\n process_min_avail = 2\n}\n", l.cfg.BaseDir, l.port)
	cfg, err := config.Parse("lab2.conf", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if err := l.sup.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	t.Logf("reload took %v", time.Since(t0))
	if strings.Contains(l.logs.String(), "still accepting") {
		t.Errorf("Reload gave up waiting for the old generation's processes to stop accepting")
	}
	// Reload returns once the old generation has stopped accepting:
	// every connection from now on meets the new configuration.
	for i := 0; i < 20; i++ {
		c := l.dial("")
		if g := c.line(); !strings.HasSuffix(g, "] reloaded.") {
			t.Fatalf("connection %d after reload: greeting %q", i, g)
		}
		c.c.Close()
	}
	b := l.dial("")
	if g := b.line(); !strings.HasSuffix(g, "] reloaded.") {
		t.Fatalf("after reload greeting %q", g)
	}
	if r := a.cmd("n NOOP"); r != "n OK NOOP completed." {
		t.Errorf("old client after reload: %q", r)
	}
	st := l.status()
	gens := map[uint64]bool{}
	for _, p := range st.Procs {
		gens[p.Generation] = true
	}
	if !gens[1] || !gens[2] {
		t.Errorf("want processes of generations 1 (draining) and 2: %+v", st.Procs)
	}
	var pids []int
	for _, p := range st.Procs {
		pids = append(pids, p.PID)
	}
	start := time.Now()
	if err := l.stop(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*tclient{a, b} {
		if got := c.line(); got != "* BYE Shutting down" {
			t.Errorf("at shutdown got %q", got)
		}
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("shutdown took %v", d)
	}
	for _, pid := range pids {
		if syscall.Kill(pid, 0) == nil {
			if s, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); !strings.Contains(string(s), ") Z") {
				t.Errorf("login process %d still alive after shutdown", pid)
			}
		}
	}
	if _, err := os.Stat(l.cfg.ControlSocket()); err == nil {
		if _, err := control.QueryStatus(context.Background(), l.cfg.ControlSocket()); err == nil {
			t.Errorf("control socket still answers after shutdown")
		}
	}
}

func TestControlSocket(t *testing.T) {
	l := startLab(t, "pop3-login", "", "process_min_avail = 2")
	l.waitFor("prefork", func(s control.ServiceStatus) bool { return readyProcs(s) == 2 })
	st, err := control.QueryStatus(context.Background(), l.cfg.ControlSocket())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Services) != 1 || st.Services[0].Name != "pop3-login" || len(st.Services[0].Procs) != 2 || st.Services[0].Mode != "high-security" {
		t.Fatalf("status %+v", st)
	}
	// A one-client process runs on one P.
	for _, p := range st.Services[0].Procs {
		if got := procEnv(t, p.PID, "GOMAXPROCS"); got != "1" {
			t.Errorf("high-security process %d: GOMAXPROCS=%q, want 1", p.PID, got)
		}
	}
}

// procEnv is the value of name in the environment of process pid ("" if
// unset).
func procEnv(t *testing.T, pid int, name string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range strings.Split(string(b), "\x00") {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v
		}
	}
	return ""
}

// TestAccessChecks runs the access check against tcpwrapd (in-process
// accessd on a socket inside the chroot) with two entries in order.
func TestAccessChecksWithTcpwrapd(t *testing.T) {
	base := startTcpwrapd(t)
	l := startLab(t, "imap-login", "base_dir = "+base+"\nlogin_access_sockets = tcpwrapd/access /tcpwrapd/access", "service_count = 0")
	ok := l.dial("127.0.0.1")
	if g := ok.line(); !strings.HasPrefix(g, "* OK") {
		t.Errorf("allowed client: %q", g)
	}
	no := l.dial("127.0.0.2")
	if got := no.line(); got != "EOF" {
		t.Errorf("refused client got %q, want EOF without a byte", got)
	}
	l.waitFor("refused counted", func(s control.ServiceStatus) bool { return s.Counters.Refused == 1 })
	if !l.hasLog(`msg="access(tcpwrapd/access): Client refused (rip=127.0.0.2)"`) {
		t.Errorf("no Dovecot refusal line in the log:\n%s", l.logs.String())
	}
	// A refused client was never a client: no "Disconnected" line (as
	// in Dovecot), unlike the allowed one.
	ok.cmd("a LOGOUT")
	l.waitDisconnects(1)
	time.Sleep(100 * time.Millisecond)
	lines, _ := l.disconnects()
	if d := cmp.Diff([]string{disconnectLine("Aborted login by logging out")}, lines); d != "" {
		t.Errorf("disconnect lines (-want +got)\n%s", d)
	}
}

// TestAccessChecksHighPerformanceNearClientLimit: a high-performance
// process with login_access_sockets holds, for each client being
// checked, the client's socket and a connection to the access socket;
// its open-file limit allows for both, so 190 clients arriving at once
// at a process with client_limit 200 are all checked and greeted (with
// client_limit + 64 descriptors, 30 or so of them failed with "too many
// open files").
func TestAccessChecksHighPerformanceNearClientLimit(t *testing.T) {
	base := startTcpwrapd(t)
	l := startLab(t, "imap-login", "base_dir = "+base+"\nlogin_access_sockets = tcpwrapd/access", "service_count = 0\nclient_limit = 200\nprocess_limit = 1\nprocess_min_avail = 1")
	l.waitFor("one preforked process", func(s control.ServiceStatus) bool { return readyProcs(s) == 1 })
	const n = 190
	cs := burst(t, l.port, n, 10*time.Second)
	greeted := 0
	for i, bc := range cs {
		if strings.HasPrefix(bc.greeting, "* OK") {
			greeted++
		} else if i < 5 || greeted < 5 {
			t.Errorf("client %d: %q", i, bc.greeting)
		}
	}
	st := l.waitFor("every client logging in", func(s control.ServiceStatus) bool {
		return len(s.Procs) == 1 && s.Procs[0].LoggingIn+s.Procs[0].Checking == greeted
	})
	if greeted != n || st.Counters.Refused != 0 || st.Counters.AccessErrors != 0 {
		t.Errorf("%d of %d greeted; counters %+v", greeted, n, st.Counters)
	}
	if strings.Contains(l.logs.String(), "too many open files") {
		t.Errorf("login process ran out of descriptors:\n%s", l.logs.String())
	}
	// 200 clients x 2 + 64 + 1 listener = 465 is below the in-flight
	// floor: worker.NoFileInFlightMin + 64 + 1 listener.
	if got, want := procNoFile(t, st.Procs[0].PID), strconv.Itoa(worker.NoFileInFlightMin+worker.NoFileReserve+1); got != want {
		t.Errorf("login process RLIMIT_NOFILE %s, want %s", got, want)
	}
}

// TestOpenFileLimitClampedToHardLimit: when client_limit needs more
// descriptors than the hard RLIMIT_NOFILE the supervisor has (and root
// without CAP_SYS_RESOURCE cannot raise it), the login processes run
// with the hard limit (they used to fail to start: setrlimit EPERM) and
// the supervisor says so at start.
func TestOpenFileLimitClampedToHardLimit(t *testing.T) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Max > 1<<20 {
		t.Skipf("hard RLIMIT_NOFILE %d: too high to exceed here", lim.Max)
	}
	base := startTcpwrapd(t)
	l := startLab(t, "imap-login", "base_dir = "+base+"\nlogin_access_sockets = tcpwrapd/access", fmt.Sprintf("service_count = 0\nclient_limit = %d\nprocess_min_avail = 1", lim.Max))
	st := l.waitFor("one preforked process", func(s control.ServiceStatus) bool { return readyProcs(s) == 1 })
	if got, want := procNoFile(t, st.Procs[0].PID), strconv.FormatUint(lim.Max, 10); got != want {
		t.Errorf("login process RLIMIT_NOFILE %s, want the hard limit %s", got, want)
	}
	c := l.dial("127.0.0.1")
	if g := c.line(); !strings.HasPrefix(g, "* OK") {
		t.Errorf("greeting %q", g)
	}
	want := fmt.Sprintf("required=%d hard_limit=%d clients_that_fit=%d", 2*lim.Max+65, lim.Max, (lim.Max-65)/2)
	if !l.hasLog("fd limit (ulimit -n) is lower than required under max. load") || !l.hasLog(want) {
		t.Errorf("no start-up warning with %q:\n%s", want, l.logs.String())
	}
}

// procNoFile is the soft "Max open files" of process pid.
func procNoFile(t *testing.T, pid int) string {
	t.Helper()
	return procLimit(t, pid, "Max open files")
}

// TestAccessCheckLocalFailure: when an access socket cannot be asked at
// all (here it does not exist; "too many open files" is the other usual
// cause), the client is closed without a byte, as in Dovecot, but the
// failure is logged with the client's address and counted as an access
// error, not as a refusal by the rules.
func TestAccessCheckLocalFailure(t *testing.T) {
	l := startLab(t, "imap-login", "login_access_sockets = nosuch/access", "service_count = 0")
	c := l.dial("127.0.0.1")
	if got := c.line(); got != "EOF" {
		t.Errorf("client got %q, want EOF without a byte", got)
	}
	st := l.waitFor("access error counted", func(s control.ServiceStatus) bool { return s.Counters.AccessErrors == 1 })
	if st.Counters.Refused != 0 {
		t.Errorf("counted as refused: %+v", st.Counters)
	}
	if !l.hasLog(`msg="connect(nosuch/access) failed: connect: no such file or directory (rip=127.0.0.1)"`) {
		t.Errorf("no connect failure line with rip= in the log:\n%s", l.logs.String())
	}
	if strings.Contains(l.logs.String(), "Client refused") {
		t.Errorf("logged as a refusal:\n%s", l.logs.String())
	}
}

// startTcpwrapd runs tcpwrapd (in-process accessd) with hosts.allow
// "imap pop3: 127.0.0.1" and hosts.deny "ALL: ALL" on
// BASE/login/tcpwrapd/access, BASE a new temporary directory meant as the
// lab's base_dir (so that "tcpwrapd/access" is the socket inside the
// chroot); it returns BASE. The daemon stops at the end of the test.
func startTcpwrapd(t *testing.T) string {
	t.Helper()
	base := t.TempDir()
	sockDir := filepath.Join(base, "login", "tcpwrapd")
	os.MkdirAll(sockDir, 0o755)
	allow := filepath.Join(base, "hosts.allow")
	deny := filepath.Join(base, "hosts.deny")
	os.WriteFile(allow, []byte("imap pop3: 127.0.0.1\n"), 0o644)
	os.WriteFile(deny, []byte("ALL: ALL\n"), 0o644)
	uid, gid := -1, -1
	if os.Geteuid() == 0 {
		uid, gid, _ = dovecotlab.LookupIDs("dovenull")
	}
	ctx, cancel := context.WithCancel(context.Background())
	adone := make(chan error, 1)
	go func() {
		adone <- accessd.Run(ctx, accessd.Config{Listen: filepath.Join(sockDir, "access"), SocketUID: uid, SocketGID: gid, AllowFile: allow, DenyFile: deny, ReloadInterval: -1})
	}()
	t.Cleanup(func() { cancel(); <-adone })
	for i := 0; ; i++ {
		if _, err := os.Stat(filepath.Join(sockDir, "access")); err == nil {
			break
		}
		if i > 200 {
			t.Fatal("tcpwrapd socket did not appear")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return base
}

// TestAccessChecksWithDovecotTcpwrap asks Dovecot's own tcpwrap, run by a
// lab Dovecot master (private mount namespace with the lab's hosts files
// over /etc/hosts.*), sharing its base_dir so the socket is in our chroot.
func TestAccessChecksWithDovecotTcpwrap(t *testing.T) {
	dovecotlab.SkipIfUnavailable(t)
	d := dovecotlab.Start(t, dovecotlab.Config{OwnTcpwrap: true, Protocols: []string{"pop3"}, HostsDeny: "ALL: 127.0.0.3\n"})
	l := startLab(t, "imap-login", "base_dir = "+d.BaseDir+"\nlogin_access_sockets = tcpwrap", "service_count = 1")
	ok := l.dial("127.0.0.1")
	if g := ok.line(); !strings.HasPrefix(g, "* OK") {
		t.Errorf("allowed client: %q", g)
	}
	no := l.dial("127.0.0.3")
	if got := no.line(); got != "EOF" {
		t.Errorf("refused client got %q", got)
	}
	l.waitFor("refused counted", func(s control.ServiceStatus) bool { return s.Counters.Refused == 1 })
	if !l.hasLog("access(tcpwrap): Client refused (rip=127.0.0.3)") {
		t.Errorf("no refusal line:\n%s", l.logs.String())
	}
}

// sandboxChild is the helper process of TestSandboxCannotRegainRoot.
func sandboxChild() int {
	uid, gid, err := dovecotlab.LookupIDs("dovenull")
	if err != nil {
		fmt.Println(err)
		return 1
	}
	in := &ipc.Settings{Chroot: os.Getenv("LOGINSVC_TEST_SANDBOX"), UID: uid, GID: gid, VszLimit: 64 << 20}
	if err := login.Sandbox(in); err != nil {
		fmt.Println("sandbox:", err)
		return 1
	}
	fmt.Printf("setuid(0)=%v seteuid(0)=%v setgid(0)=%v check=%v\n", syscall.Setuid(0), syscall.Seteuid(0), syscall.Setgid(0), privdrop.CheckNoRoot())
	return 0
}

func TestSandboxCannotRegainRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	root := t.TempDir()
	out, err := (&execCmd{env: "LOGINSVC_TEST_SANDBOX=" + root}).run()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	want := "setuid(0)=operation not permitted seteuid(0)=operation not permitted setgid(0)=operation not permitted check=<nil>\n"
	if out != want {
		t.Errorf("got %q\nwant %q", out, want)
	}
}

// evictOnePerArrival dials two arrivals into a full service whose client
// 0 is proxying: they evict clients 1 and 2 (the oldest logging in), one
// each, and the survivors 0, 3 and the arrivals still answer. It returns
// cs with the arrivals appended.
func evictOnePerArrival(t *testing.T, l *lab, cs []*tclient) []*tclient {
	t.Helper()
	for i, victim := range []int{1, 2} {
		nc := l.dial("")
		if g := nc.line(); !strings.HasPrefix(g, "* OK") {
			t.Fatalf("arrival %d greeting %q", i, g)
		}
		if got := cs[victim].line(); got != "* BYE Connection queue full" {
			t.Errorf("victim %d got %q", victim, got)
		}
		cs = append(cs, nc)
	}
	for _, i := range []int{0, 3, 4, 5} {
		if r := cs[i].cmd("n NOOP"); r != "n OK NOOP completed." {
			t.Errorf("client %d NOOP: %q", i, r)
		}
	}
	return cs
}
