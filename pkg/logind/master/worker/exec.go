package worker

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/config"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/ipc"
)

// ExecRunner starts real login processes by re-executing a binary (by
// default the running one) with ipc.LoginProcessEnv=1, the control socket as
// fd 3 and stderr piped into Logger line by line. Processes start as root
// (they need it to chroot) in their own process group with
// Pdeathsig = SIGKILL, and sandbox themselves before serving (see
// login.Main). It is safe for concurrent use.
type ExecRunner struct {
	// Path is the executable; "" means os.Executable().
	Path string
	// Args are extra arguments after argv[0] (argv[0] is the service
	// name, e.g. "imap-login", which is what ps shows).
	Args []string
	// Env is extra environment (KEY=VALUE) for the processes, after
	// LOGINSVC_LOGIN_PROCESS=1, GOTRACEBACK=none, GOMAXPROCS=1 and, for
	// a service with service_count = 0, SysmonNoDeepSleep; an entry here
	// overrides those.
	Env []string
	// Logger receives the processes' stderr lines; nil discards them.
	Logger *slog.Logger
	// LogBatch, if set, is the writer under Logger's handler: the
	// lines relayed from one read of a process's stderr go out in one
	// write (see LogBatch).
	LogBatch *LogBatch
	// NoSandbox skips chroot and the user change (for tests not running
	// as root); vsz_limit still applies.
	NoSandbox bool

	once    sync.Once
	pathErr error
	users   sync.Map // user name -> [2]int{uid, gid}

	spawnOnce sync.Once
	spawnReqs chan spawnReq
}

// StartNice is the nice value a login process starts with: its Go
// runtime start-up and set-up run at low priority, so that on a busy
// machine they do not delay the greetings of processes that already
// serve clients; it returns to nice 0 (all threads) before it sandboxes
// itself and reports ready.
const StartNice = 10

type spawnReq struct {
	cmd  *exec.Cmd
	done func(error)
}

// startAsync starts cmd from one dedicated OS thread whose nice value is
// StartNice (the child inherits it) and then calls done with the result,
// on that goroutine; it does not wait. The thread never exits, which
// also keeps Pdeathsig (tied to the thread that forked) from firing
// early.
func (r *ExecRunner) startAsync(cmd *exec.Cmd, done func(error)) {
	r.spawnOnce.Do(func() {
		r.spawnReqs = make(chan spawnReq, 1024)
		go func() {
			runtime.LockOSThread()                                  // never unlocked: this thread only forks
			syscall.Setpriority(syscall.PRIO_PROCESS, 0, StartNice) // this thread only (Linux)
			for req := range r.spawnReqs {
				cloexecInherited()
				req.done(req.cmd.Start())
			}
		}()
	})
	r.spawnReqs <- spawnReq{cmd, done}
}

// cloexecInherited marks every descriptor from 3 up close-on-exec, so that
// a login process starts with exactly the descriptors ExecRunner gives it
// (stdin and stdout on /dev/null, stderr, the control socket as fd 3 and
// the listening sockets from fd 4; os/exec puts them in place and clears
// their flag in the child). The Go runtime opens all of its own
// descriptors close-on-exec, but those the supervisor inherited when it
// was started (from a shell, a service manager, a test harness) are not,
// and would otherwise be inherited by every login process.
func cloexecInherited() {
	if unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC) == nil {
		return
	}
	ents, err := os.ReadDir("/proc/self/fd") // before Linux 5.11
	if err != nil {
		return
	}
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC)
		}
	}
}

func (r *ExecRunner) path() (string, error) {
	r.once.Do(func() {
		if r.Path == "" {
			r.Path, r.pathErr = os.Executable()
		}
	})
	return r.Path, r.pathErr
}

func (r *ExecRunner) lookupUser(name string) (int, int, error) {
	if v, ok := r.users.Load(name); ok {
		ids := v.([2]int)
		return ids[0], ids[1], nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return 0, 0, fmt.Errorf("login user %q: %w", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	r.users.Store(name, [2]int{uid, gid})
	return uid, gid, nil
}

// Settings are what a login process started for spec is sent first
// (ipc.MsgInit).
func (r *ExecRunner) Settings(spec Spec) (*ipc.Settings, error) {
	s := spec.Service
	in := &ipc.Settings{
		Service: s.Name, Protocol: s.Protocol, ClientLimit: s.ClientLimit, ServiceCount: s.ServiceCount,
		AccessSockets: s.AccessSockets, Greeting: s.Greeting, PreloginTimeout: spec.Config.PreloginTimeout,
		Chroot: s.Chroot, ChdirTo: filepath.Join(spec.Config.BaseDir, "login"), UID: -1, GID: -1,
		VszLimit: s.VszLimit, Generation: spec.Generation,
		Seq: spec.Seq, Listeners: len(spec.Listeners),
		SSL: spec.Config.SSL, SSLMinProtocol: spec.Config.SSLMinProtocol,
		SSLCurves: spec.Config.SSLCurves,
	}
	in.NoFile, _ = NoFile(s, spec.Config.SSL, len(spec.Listeners), HardNoFile())
	in.NProc = NProc(spec.Config, s)
	if in.SSL == "" {
		in.SSL = "no"
	}
	if in.SSL != "no" {
		in.TLSCertLen = len(spec.Config.SSLCert)
		in.SSLListen = s.SSLListenAddrs()
	}
	in.TrustedNetworks = s.TrustedNetworks
	in.AuthSocket, in.PostloginSocket, in.AuthAllowCleartext = spec.Config.AuthSocket, s.PostloginSocket, s.AuthAllowCleartext
	if in.HAProxyListen = s.HAProxyListenAddrs(); len(in.HAProxyListen) > 0 {
		in.HAProxyTrusted = spec.Config.HAProxyTrustedNetworks
		in.HAProxyTimeout = spec.Config.HAProxyTimeout
	}
	if r.NoSandbox {
		in.Chroot = ""
		return in, nil
	}
	uid, gid, err := r.lookupUser(s.User)
	if err != nil {
		return nil, err
	}
	in.UID, in.GID = uid, gid
	return in, nil
}

// nprocReserve is what NProc allows beyond the login processes'
// own threads, for other processes of the login user (Dovecot's own login
// processes also run as dovenull, each counting one).
const nprocReserve = 1024

// NProc is the RLIMIT_NPROC of a login process of svc (set once it
// runs as the login user). Dovecot's login processes set 1, so that they
// cannot fork at all; but the limit counts every thread of every process
// of the user, and a Go process creates threads as it runs (and dies
// when it cannot). So it is a ceiling instead: the threads that all
// login processes of cfg running as svc's user may have, twice over
// (during a reload the draining generation runs beside the new one),
// plus nprocReserve. A compromised login process can then fork no more
// than that, not the whole machine's worth.
func NProc(cfg *config.Config, svc *config.Service) uint64 {
	var n uint64
	for _, s := range cfg.Enabled() {
		if s.User == svc.User {
			n += uint64(s.ProcessLimit) * loginThreads(s)
		}
	}
	return 2*n + nprocReserve
}

// loginThreads is a generous bound on the OS threads of one login
// process of svc: GOMAXPROCS running threads (1, see loginEnv; the bound
// allows one per CPU in high-performance mode, where a process holds
// many clients), as many in blocking system calls, and the runtime's own.
func loginThreads(svc *config.Service) uint64 {
	procs := 1
	if svc.ServiceCount == 0 {
		procs = runtime.NumCPU()
	}
	return uint64(2*procs + 14)
}

// SysmonNoDeepSleep is the GODEBUG setting a high-performance login
// process runs with. The Go runtime's sysmon thread sleeps until it is
// needed while every P is idle, and whenever a system call wakes it from
// that sleep it polls every 20 µs for as long as a P is busy. A login
// process alternates between short bursts of work (a TLS handshake, a
// login) and waits for clients, auth and the post-login service, so
// sysmon polled through nearly all of its busy time: 20 to 30 wake-ups
// of its own per login, and futex wake-ups of it from the system calls,
// about 400 µs CPU per TLS login (bench/README.md, "hp logins"). With
// schedtrace set, sysmon never sleeps that deep sleep: it backs off to
// one wake-up every 10 ms and stays there. The interval is the largest
// there is (24.8 days), so the runtime's trace line is printed only
// when CLOCK_MONOTONIC is past it (once at start on a host up that
// long, then once every 24.8 days); relayLog drops those lines.
const SysmonNoDeepSleep = "GODEBUG=schedtrace=2147483647"

// WithSysmonNoDeepSleep returns environ (KEY=VALUE entries, as
// os.Environ gives them) with SysmonNoDeepSleep's setting added to
// GODEBUG after the settings GODEBUG already has, and whether it added
// it: not when GODEBUG already sets schedtrace, whose value then stands.
// The supervisor executes itself once more with it (cmd/loginsvc): it
// too waits for events most of the time and wakes for each relayed log
// line and report, and its sysmon woke and polled with every one of them.
func WithSysmonNoDeepSleep(environ []string) ([]string, bool) {
	key, setting, _ := strings.Cut(SysmonNoDeepSleep, "=")
	name, _, _ := strings.Cut(setting, "=")
	out := make([]string, 0, len(environ)+1)
	found := false
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		if k != key {
			out = append(out, kv)
			continue
		}
		if found {
			continue // a second GODEBUG: the first is the one the runtime reads
		}
		found = true
		for _, s := range strings.Split(v, ",") {
			if n, _, _ := strings.Cut(s, "="); strings.TrimSpace(n) == name {
				return environ, false
			}
		}
		if v != "" {
			setting = v + "," + setting
		}
	}
	return append(out, key+"="+setting), true
}

// loginEnv is the environment of a login process of svc: the marker,
// GOTRACEBACK=none, GOMAXPROCS=1, SysmonNoDeepSleep without a
// service_count, then extra (the last of a name wins).
func loginEnv(svc *config.Service, extra []string) []string {
	// One P, as Dovecot's login processes have one thread: a process for
	// service_count clients (one, in high-security mode) has no use for
	// parallel threads (one P saves about 20% CPU per connection and
	// 0.15 MB PSS per process), and a high-performance one serves its
	// clients from the netpoller's wake-ups on one thread instead of
	// handing each new client's goroutine to another (about 25% less
	// CPU per connection, bench/README.md).
	env := []string{ipc.LoginProcessEnv + "=1", "GOTRACEBACK=none", "GOMAXPROCS=1"}
	if svc.ServiceCount == 0 {
		// A long-lived process: its sysmon at 100 wake-ups a second
		// when idle costs less than polling through every login. Not
		// in high-security mode, where every relayed TLS session is a
		// process of its own.
		env = append(env, SysmonNoDeepSleep)
	}
	return append(env, extra...)
}

// NoFileReserve is what a login process needs in descriptors besides its
// clients: stdin, stdout, stderr, the control socket, the Go runtime's
// epoll set and its wake-up descriptor, the accept loop's epoll set and
// eventfd, and room for a client more than client_limit for a moment
// after an eviction (see loginProc.canAccept).
const NoFileReserve = 64

// NoFileNeed is how many descriptors a login process of svc that gets
// listeners listening sockets holds at most, with ssl (the global ssl):
// client_limit clients at once, each with NoFilePerClient descriptors,
// plus NoFileReserve (which holds the process's auth connection) and the
// listeners.
func NoFileNeed(svc *config.Service, ssl string, listeners int) uint64 {
	return uint64(svc.ClientLimit)*NoFilePerClient(ssl) + NoFileReserve + uint64(listeners)
}

// NoFile is the RLIMIT_NOFILE for a login process of svc: NoFileNeed,
// and at least what the service's processes can have in flight at once
// (one descriptor per client being handed off: process_limit ×
// client_limit, at least NoFileInFlightMin) plus the reserve and the
// listeners. Linux refuses to
// send a descriptor (sendmsg ETOOMANYREFS, "too many references") when
// the descriptors in flight of the sender's user, all of its processes
// together, exceed the sender's RLIMIT_NOFILE, and every login process
// runs as login_user, so a limit sized for one process's own clients
// (67 in high-security mode) is met by bursts of hand-offs from many
// processes (docs/loginsvc.md, Sandbox). If NoFileNeed is more than hard (the hard limit
// the process inherits, which it cannot raise without
// CAP_SYS_RESOURCE; 0 means unknown), it returns hard and clamped =
// true; the in-flight floor alone is cut to hard silently (and left out
// when hard is unknown).
func NoFile(svc *config.Service, ssl string, listeners int, hard uint64) (limit uint64, clamped bool) {
	need := NoFileNeed(svc, ssl, listeners)
	if hard > 0 && need > hard {
		return hard, true
	}
	if hard == 0 {
		return need, false
	}
	inFlight := max(uint64(svc.ProcessLimit)*uint64(svc.ClientLimit), NoFileInFlightMin)
	return min(max(need, inFlight+NoFileReserve+uint64(listeners)), hard), false
}

// NoFileInFlightMin is the least number of descriptors in flight that
// NoFile allows for, whatever process_limit is: a descriptor sent to an
// access-check or post-login socket stays in flight, counted against
// the login user, until the receiver reads it, also after its sender
// has exited, so a receiver that lags behind a burst of short-lived
// high-security processes (a connection churner, say) holds more than
// process_limit × client_limit of them.
const NoFileInFlightMin = 1024

// NoFilePerClient is how many descriptors a client can hold at once in
// its login process: its socket and one connection (to a
// login_access_sockets entry while it is checked, the entries asked one
// after the other; to the post-login service during its hand-off), and
// with TLS possible (ssl not "no") the two ends of the socketpair of a
// TLS hand-off (one of them relayed for the whole session): 4, else 2.
// The PROXY header needs no descriptor more.
func NoFilePerClient(ssl string) uint64 {
	if ssl != "" && ssl != "no" {
		return 4
	}
	return 2
}

// HardNoFile is the calling process's hard RLIMIT_NOFILE, which its
// children inherit; 0 if it cannot be read.
func HardNoFile() uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0
	}
	return lim.Max
}

// exitDrain bounds how long the stderr relay and the report reader of a
// process that has exited may take to reach the end of its stderr and
// control socket; then they are closed.
const exitDrain = 2 * time.Second

// Start implements Runner.
func (r *ExecRunner) Start(ctx context.Context, spec Spec, events func(Event)) (Worker, error) {
	path, err := r.path()
	if err != nil {
		return nil, err
	}
	in, err := r.Settings(spec)
	if err != nil {
		return nil, err
	}
	initMsg, err := ipc.EncodeSettings(in)
	if err != nil {
		return nil, err
	}
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	parentF := os.NewFile(uintptr(fds[0]), "login-ctl")
	childF := os.NewFile(uintptr(fds[1]), "login-ctl-child")
	fc, err := net.FileConn(parentF)
	parentF.Close()
	if err != nil {
		childF.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	uc := fc.(*net.UnixConn)
	// The settings go first; the kernel keeps them (and any client
	// socket sent next) until the process reads them - which is why the
	// process can be forked later, off the caller's path. With TLS the
	// key travels along in a sealed memfd (tls.go), in flight in the
	// socket until the process takes it: it is never in the process's
	// fd table at exec, and never in a file system.
	keyFd := -1
	if in.SSL != "no" {
		if keyFd, err = ipc.NewKeyMemfd(spec.Config.SSLCert, spec.Config.SSLKey); err != nil {
			childF.Close()
			uc.Close()
			return nil, err
		}
	}
	uc.SetWriteDeadline(time.Now().Add(2 * time.Second))
	err = ipc.SendPacket(uc, initMsg, keyFd)
	if keyFd >= 0 {
		syscall.Close(keyFd)
	}
	if err != nil {
		childF.Close()
		uc.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}

	// The fork happens later on another goroutine, by when the supervisor
	// may have closed a listener (reload, shutdown): hand the child
	// duplicates owned by this start, closed once it has forked.
	lns := make([]*os.File, 0, len(spec.Listeners))
	closeListeners := func() {
		for _, f := range lns {
			f.Close()
		}
	}
	for _, l := range spec.Listeners {
		fd, err := unix.FcntlInt(l.Fd(), unix.F_DUPFD_CLOEXEC, 3)
		if err != nil {
			closeListeners()
			childF.Close()
			uc.Close()
			return nil, fmt.Errorf("dup listener: %w", err)
		}
		lns = append(lns, os.NewFile(uintptr(fd), l.Name()))
	}

	cmd := exec.Command(path, r.Args...)
	cmd.Args = append([]string{spec.Service.Name}, r.Args...)
	cmd.Env = loginEnv(spec.Service, r.Env)
	cmd.ExtraFiles = append([]*os.File{childF}, lns...)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// Our own pipe, not cmd.StderrPipe: Wait closes that one as soon as
	// the process exits, and its last lines (a refusal logged just before
	// a high-security process exits) would be lost.
	stderr, stderrW, err := os.Pipe()
	if err != nil {
		closeListeners()
		childF.Close()
		uc.Close()
		return nil, err
	}
	cmd.Stderr = stderrW
	w := &execWorker{cmd: cmd, c: uc, started: make(chan struct{}), exited: make(chan struct{}), logs: newLogLimiter(spec.Service.ClientLimit)}
	log := r.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	vsz := spec.Service.VszLimit
	dlog := dovecotLog(spec.Config) // login_log_path (dovecotlog.go)
	// fork+exec takes a few hundred microseconds; the caller (the pool,
	// under its lock) does not wait for it: the worker takes clients at
	// once (they queue on the socket pair) and PID and Kill wait for it.
	r.startAsync(cmd, func(err error) {
		stderrW.Close()
		childF.Close()
		closeListeners()
		if err != nil {
			close(w.started)
			stderr.Close()
			uc.Close()
			go events(Event{Kind: EventExit, ExitCode: ipc.ExitExecFailed, Err: fmt.Errorf("start %s: %w", path, err)})
			return
		}
		w.pid = cmd.Process.Pid
		close(w.started)
		log := log.With("service", spec.Service.Name, "pid", w.pid)
		if dlog != nil {
			log = slog.New(dovecotHandler{dlog, spec.Service.Name})
		}
		var wg sync.WaitGroup
		wg.Add(2)
		batch := r.LogBatch
		if dlog != nil {
			batch = nil // one syslog datagram per line
		}
		go func() { defer wg.Done(); defer stderr.Close(); relayLog(stderr, log, vsz, w.logs, batch) }()
		go func() { defer wg.Done(); w.readLoop(events, w.exited) }()
		go func() {
			err := cmd.Wait()
			close(w.exited)
			// stderr at EOF and every event delivered before the exit;
			// unless something the process left behind holds them open.
			t := time.AfterFunc(exitDrain, func() { stderr.Close(); uc.Close() })
			wg.Wait()
			t.Stop()
			ev := Event{Kind: EventExit, Err: err}
			if ps := cmd.ProcessState; ps != nil {
				ev.ExitCode = ps.ExitCode()
				if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
					ev.Signal = ws.Signal().String()
				}
			}
			events(ev)
		}()
	})
	return w, nil
}

// Limits of the relay of a login process's stderr lines (per process;
// see relayLog).
const (
	// MaxLogLine is the longest line relayed, in bytes; a longer one is
	// cut there and marked with LogLineCut, and the rest of it dropped.
	MaxLogLine = 4096
	// LogRate and LogBurst are the token bucket of a process's lines:
	// LogBurst at once, refilled at LogRate lines a second.
	LogRate  = 50
	LogBurst = 500
	// LogPerClient lines are added to the bucket (up to LogPerClient x
	// (client_limit + 1) in reserve) for each client the process gets,
	// so that a busy high-performance process logs a line or two for
	// each of thousands of clients a second.
	LogPerClient = 16
	// LogLineCut ends a line that was cut at MaxLogLine.
	LogLineCut = " [line cut at 4096 bytes]"
)

// logLimiter is the token bucket of one process's log lines. allow is
// called by the relay goroutine only; grant from any goroutine.
type logLimiter struct {
	tokens     float64
	last       time.Time
	credit     atomic.Int64 // lines granted for clients (grant), down to -maxCredit (allow)
	maxCredit  int64
	suppressed int // lines dropped since the last notice
	noticed    time.Time
}

func newLogLimiter(clientLimit int) *logLimiter {
	return &logLimiter{tokens: LogBurst, last: time.Now(), maxCredit: int64(LogPerClient * (clientLimit + 1))}
}

// grant adds LogPerClient lines for a new client, up to maxCredit.
func (l *logLimiter) grant() {
	for {
		c := l.credit.Load()
		if c >= l.maxCredit || l.credit.CompareAndSwap(c, min(c+LogPerClient, l.maxCredit)) {
			return
		}
	}
}

// allow takes one line from the bucket, or counts it as suppressed.
func (l *logLimiter) allow(now time.Time) bool {
	l.tokens = min(LogBurst, l.tokens+now.Sub(l.last).Seconds()*LogRate)
	l.last = now
	if l.tokens >= 1 {
		l.tokens--
		return true
	}
	// A client's line can come before its grant: a high-performance
	// process reports the clients it accepts itself in batches (up to
	// 20 ms), and the control socket is read apart from stderr. So the
	// credit may run up to maxCredit lines ahead of the grants on their
	// way (below zero), and the grants pay that back: per-client lines
	// are not lost to that lag, and the bound is still maxCredit lines.
	for {
		c := l.credit.Load()
		if c <= -l.maxCredit {
			l.suppressed++
			return false
		}
		if l.credit.CompareAndSwap(c, c-1) {
			return true
		}
	}
}

// notice logs how many lines were suppressed, at most once a second
// (always when final).
func (l *logLimiter) notice(log *slog.Logger, now time.Time, final bool) {
	if l.suppressed == 0 || (!final && now.Sub(l.noticed) < time.Second) {
		return
	}
	log.Warn("login process logs too fast: lines suppressed", "suppressed", l.suppressed, "rate", LogRate, "burst", LogBurst)
	l.suppressed, l.noticed = 0, now
}

// relayLog forwards a login process's stderr lines, which a login
// process writes as it likes (it is not trusted): a line "LEVEL text"
// (DEBUG, INFO, WARN, ERROR) is logged at that level, others as errors
// (a Go panic, say). Memory is bounded (one MaxLogLine buffer): a
// longer line is cut (LogLineCut) and the rest of it dropped; lines
// beyond the process's budget (lim) are dropped and counted, and how
// many is logged (at most once a second, and when stderr ends). The Go
// runtime's scheduler trace lines (schedTraceLine) are dropped. With
// batch, the lines of one read are logged in one write of batch.
func relayLog(r io.Reader, log *slog.Logger, vsz uint64, lim *logLimiter, batch *LogBatch) {
	br := bufio.NewReaderSize(r, MaxLogLine)
	cutting := false // dropping the rest of a cut line
	var crash crashTrim
	held := false // batch is held: the lines read are being logged
	defer func() {
		if n := crash.dropped(); n > 0 {
			log.Error("crash output of the login process cut short", "lines_not_logged", n)
		}
		if held {
			batch.release()
		}
	}()
	for {
		if held && !lineBuffered(br) { // the next ReadSlice may wait
			batch.release()
			held = false
		}
		line, err := br.ReadSlice('\n')
		if !held && batch != nil && lineBuffered(br) {
			batch.hold()
			held = true
		}
		if len(line) > 0 {
			long := err == bufio.ErrBufferFull
			rest := cutting
			cutting = long
			if !rest && !schedTraceLine(line) && crash.keep(line) {
				relayLine(log, line, long, vsz, lim)
			}
		}
		if err != nil && err != bufio.ErrBufferFull {
			break
		}
	}
	lim.notice(log, time.Now(), true)
}

// lineBuffered reports whether br holds a whole line more (ReadSlice
// returns it without reading).
func lineBuffered(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered())
	return bytes.IndexByte(b, '\n') >= 0
}

// LogBatch is the supervisor's log output (stderr) as the relays of the
// login processes' lines write it: a login process writes its lines in
// batches (ipc.LineLog), and the lines a relay takes from one read of
// them go out in one write, not one write(2) each, which would be one
// per client that leaves in high-performance mode. Lines written while
// a relay holds the batch (by other relays, by the supervisor itself)
// join it, in order; a batch goes out at maxLogBatchOut bytes at the
// latest. Write never waits for a relay. Safe for concurrent use.
type LogBatch struct {
	// W is the output (the supervisor's stderr). Write returns its
	// error when it writes at once; a batch's write error is dropped.
	W     io.Writer
	mu    sync.Mutex
	buf   []byte
	holds int
}

// maxLogBatchOut is the most a LogBatch holds before it writes.
const maxLogBatchOut = 64 << 10

// Write writes p, or adds it to the batch while a relay holds it.
func (b *LogBatch) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.holds == 0 {
		return b.W.Write(p)
	}
	b.buf = append(b.buf, p...)
	if len(b.buf) >= maxLogBatchOut {
		b.flushLocked()
	}
	return len(p), nil
}

func (b *LogBatch) hold() {
	b.mu.Lock()
	b.holds++
	b.mu.Unlock()
}

// release ends a hold; the batch is written when no relay holds it.
func (b *LogBatch) release() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.holds--; b.holds == 0 {
		b.flushLocked()
	}
}

func (b *LogBatch) flushLocked() {
	if len(b.buf) > 0 {
		b.W.Write(b.buf)
		b.buf = b.buf[:0]
	}
}

// schedTraceLine reports whether line is the Go runtime's scheduler
// trace ("SCHED 0ms: gomaxprocs=..."), which SysmonNoDeepSleep makes a
// login process print once every 24.8 days: not worth a log line.
func schedTraceLine(line []byte) bool {
	rest, ok := bytes.CutPrefix(line, []byte("SCHED "))
	if !ok {
		return false
	}
	i := 0
	for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
		i++
	}
	return i > 0 && bytes.HasPrefix(rest[i:], []byte("ms: gomaxprocs="))
}

// relayLine logs one line (cut: the start of a longer one), if lim
// allows it.
func relayLine(log *slog.Logger, line []byte, cut bool, vsz uint64, lim *logLimiter) {
	now := time.Now()
	oom := bytes.HasPrefix(line, []byte("fatal error:")) && (bytes.Contains(line, []byte("out of memory")) || bytes.Contains(line, []byte("cannot allocate memory")))
	if !lim.allow(now) {
		if oom { // the reason a process died is worth a line
			log.Error(fmt.Sprintf("Out of memory (vsz_limit=%d MB), you may need to increase it", vsz>>20))
		}
		return
	}
	lim.notice(log, now, false)
	text := string(bytes.TrimRight(line, "\r\n"))
	if cut {
		text += LogLineCut
	}
	l, msg, _ := ipc.ParseLine(text)
	// As log.Log, without the caller's PC, which a relayed line has no
	// use for (runtime.Callers per line).
	if h := log.Handler(); h.Enabled(context.Background(), l) {
		h.Handle(context.Background(), slog.NewRecord(now, l, msg, 0))
	}
	if oom {
		log.Error(fmt.Sprintf("Out of memory (vsz_limit=%d MB), you may need to increase it", vsz>>20))
	}
}

type execWorker struct {
	cmd     *exec.Cmd
	c       *net.UnixConn
	started chan struct{} // closed once forked (pid set) or failed (pid 0)
	exited  chan struct{} // closed once reaped
	pid     int
	logs    *logLimiter
	mu      sync.Mutex
	buf     []byte
}

// PID waits until the process is forked; 0 if it could not be.
func (w *execWorker) PID() int { <-w.started; return w.pid }

func (w *execWorker) send(typ byte, id uint64, arg int, remote netip.AddrPort, fd int) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	b := append(w.buf[:0], typ)
	switch typ {
	case ipc.MsgConn:
		b = ipc.AppendAddr(ipc.PutU64(b, id), remote)
	case ipc.MsgEvict:
		b = append(ipc.PutU64(b, id), byte(arg))
	case ipc.MsgStop:
		b = append(b, byte(arg))
	}
	w.buf = b
	w.c.SetWriteDeadline(time.Now().Add(2 * time.Second))
	return ipc.SendPacket(w.c, b, fd)
}

func (w *execWorker) Give(id uint64, fd int, remote netip.AddrPort) error {
	w.logs.grant()
	return w.send(ipc.MsgConn, id, 0, remote, fd)
}
func (w *execWorker) Evict(id uint64, reserve bool) error {
	arg := 0
	if reserve {
		arg = 1
	}
	return w.send(ipc.MsgEvict, id, arg, netip.AddrPort{}, -1)
}
func (w *execWorker) Stop(m ipc.StopMode) error {
	return w.send(ipc.MsgStop, 0, int(m), netip.AddrPort{}, -1)
}

// Kill sends SIGKILL to the process and to its process group (anything
// it forked, before it sandboxed itself or despite RLIMIT_NPROC, which
// would otherwise keep its stderr and control socket open).
func (w *execWorker) Kill() error {
	if w.PID() == 0 {
		return nil
	}
	select {
	case <-w.exited:
		return nil
	default:
	}
	err := w.cmd.Process.Kill()
	syscall.Kill(-w.pid, syscall.SIGKILL)
	return err
}

// maxReportPacket is the largest packet a login process may send: a
// batch holds at most maxBatch bytes and one record more (login.go). A
// larger packet is cut by the kernel (MSG_TRUNC) and is a violation.
const maxReportPacket = 8192

// eofGrace is how long a process may live on after closing its control
// socket (it closes it by exiting) before it is reported invalid.
const eofGrace = 5 * time.Second

// readLoop reads the process's reports and delivers them as events,
// checking the packets themselves (a login process is not trusted):
// their size, type and form, and that they carry no descriptor. The
// first violation is delivered as EventInvalid and ends the loop, as
// does the end of the socket (also if the process then does not exit
// within eofGrace, which is a violation too: it would go on running
// unheard). What the reports say is checked by the pool (pool.check).
func (w *execWorker) readLoop(events func(Event), exited <-chan struct{}) {
	defer w.c.Close()
	buf := make([]byte, maxReportPacket)
	oob := make([]byte, syscall.CmsgSpace(4*4))
	invalid := func(format string, args ...any) {
		events(Event{Kind: EventInvalid, Err: fmt.Errorf(format, args...)})
	}
	resets := 0
	for {
		n, oobn, flags, _, err := w.c.ReadMsgUnix(buf, oob)
		if oobn > 0 || flags&syscall.MSG_CTRUNC != 0 {
			closeRights(oob[:oobn])
			if err == nil {
				invalid("sent a descriptor")
				return
			}
		}
		// A process that exits with packets of ours unread (an eviction
		// or stop notice that crossed its last report) resets the socket
		// pair, and recvmsg reports ECONNRESET before the reports still
		// queued here (the kernel returns a pending socket error first):
		// read on, or the last clients' closes would be lost. The error
		// is reported once; the next read returns data or EOF.
		if isConnReset(err) && resets < 2 {
			resets++
			continue
		}
		resets = 0
		switch {
		case err != nil && (errors.Is(err, net.ErrClosed) || isConnReset(err)):
			return
		case n == 0 || errors.Is(err, io.EOF): // the end (or an empty packet, which looks the same)
			select {
			case <-exited:
			case <-time.After(eofGrace):
				invalid("closed its control socket but did not exit")
			}
			return
		case err != nil:
			invalid("control socket: %v", err)
			return
		case flags&syscall.MSG_TRUNC != 0:
			invalid("sent a packet larger than %d bytes", len(buf))
			return
		}
		if what := w.deliver(buf[:n], events); what != "" {
			invalid("%s", what)
			return
		}
	}
}

// deliver delivers the reports in packet b; it returns what is wrong
// with b, or "" (reports before the fault are delivered).
func (w *execWorker) deliver(b []byte, events func(Event)) string {
	switch typ := b[0]; typ {
	case ipc.MsgReady:
		if len(b) != 1 {
			return fmt.Sprintf("sent a malformed ready message (%d bytes)", len(b))
		}
		events(Event{Kind: EventReady})
	case ipc.MsgBatch:
		recs := b[1:]
		if len(recs) == 0 {
			return "sent an empty batch"
		}
		for len(recs) > 0 {
			n := ipc.ReportLen(recs[0])
			if len(recs) < n {
				return fmt.Sprintf("sent a malformed batch (a %q record of %d bytes)", recs[0], len(recs))
			}
			if !w.report(recs[:n], events) {
				return fmt.Sprintf("sent a batch with a record of unknown type %q", recs[0])
			}
			recs = recs[n:]
		}
	case ipc.MsgLogin:
		l, err := ipc.ParseLogin(b)
		if err != nil {
			return "sent " + err.Error()
		}
		events(Event{Kind: EventLogin, Conn: l.ID, Login: l})
	case ipc.MsgAccepted, ipc.MsgState, ipc.MsgClosed, ipc.MsgUnlistened, ipc.MsgDetached, ipc.MsgAuthFailed:
		if len(b) != ipc.ReportLen(typ) {
			return fmt.Sprintf("sent a malformed %q report (%d bytes)", typ, len(b))
		}
		w.report(b, events)
	default:
		return fmt.Sprintf("sent a message of unknown type %q (%d bytes)", typ, len(b))
	}
	return ""
}

// report delivers one report (ipc.ReportLen bytes); false if its type is not
// one a report can have.
func (w *execWorker) report(r []byte, events func(Event)) bool {
	if r[0] == ipc.MsgReady {
		return false
	}
	ev, ok := reportEvent(r[0], binary.LittleEndian.Uint64(r[1:9]), r[9])
	if !ok {
		return false
	}
	if ev.Kind == EventAccepted {
		ev.Accept = ipc.ReportAccept(r)
		w.logs.grant() // a client it accepted itself: log budget for it
	}
	events(ev)
	return true
}

// closeRights closes the descriptors in the control messages oob.
func closeRights(oob []byte) {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return
	}
	for _, m := range msgs {
		if fds, err := syscall.ParseUnixRights(&m); err == nil {
			for _, fd := range fds {
				syscall.Close(fd)
			}
		}
	}
}

// reportEvent is the Event for one report of a login process
// (alone or inside a ipc.MsgBatch); ok is false for an unknown type.
func reportEvent(typ byte, id uint64, arg uint8) (Event, bool) {
	switch typ {
	case ipc.MsgReady:
		return Event{Kind: EventReady}, true
	case ipc.MsgUnlistened:
		return Event{Kind: EventUnlistened}, true
	case ipc.MsgDetached:
		return Event{Kind: EventDetached}, true
	case ipc.MsgState:
		return Event{Kind: EventState, Conn: id, State: ipc.ConnState(arg)}, true
	case ipc.MsgAccepted:
		return Event{Kind: EventAccepted, Conn: id, State: ipc.ConnState(arg)}, true
	case ipc.MsgClosed:
		return Event{Kind: EventClosed, Conn: id, Reason: ipc.CloseReason(arg)}, true
	case ipc.MsgAuthFailed:
		return Event{Kind: EventAuthFailed, Conn: id, Attempt: arg}, true
	}
	return Event{}, false
}

func isConnReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
