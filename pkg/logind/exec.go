package logind

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
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
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// LoginProcessEnv is set (to "1") in the environment of every login
// process; a binary that finds it must call LoginProcessMain instead of
// its usual main (cmd/loginsvc and the package tests do).
const LoginProcessEnv = "LOGINSVC_LOGIN_PROCESS"

// ExecRunner starts real login processes by re-executing a binary (by
// default the running one) with LoginProcessEnv=1, the control socket as
// fd 3 and stderr piped into Logger line by line. Processes start as root
// (they need it to chroot) in their own process group with
// Pdeathsig = SIGKILL, and sandbox themselves before serving (see
// LoginProcessMain). It is safe for concurrent use.
type ExecRunner struct {
	// Path is the executable; "" means os.Executable().
	Path string
	// Args are extra arguments after argv[0] (argv[0] is the service
	// name, e.g. "imap-login", which is what ps shows).
	Args []string
	// Env is extra environment (KEY=VALUE) for the processes, after
	// LOGINSVC_LOGIN_PROCESS=1, GOTRACEBACK=none and, for a service with
	// service_count != 0, GOMAXPROCS=1; an entry here overrides those.
	Env []string
	// Logger receives the processes' stderr lines; nil discards them.
	Logger *slog.Logger
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
				req.done(req.cmd.Start())
			}
		}()
	})
	r.spawnReqs <- spawnReq{cmd, done}
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

// initFor builds a login process's settings from its spec.
func (r *ExecRunner) initFor(spec WorkerSpec) (*workerInit, error) {
	s := spec.Service
	in := &workerInit{
		Service: s.Name, Protocol: s.Protocol, ClientLimit: s.ClientLimit, ServiceCount: s.ServiceCount,
		AccessSockets: s.AccessSockets, Greeting: s.Greeting, PreloginTimeout: spec.Config.PreloginTimeout,
		Chroot: s.Chroot, ChdirTo: filepath.Join(spec.Config.BaseDir, "login"), UID: -1, GID: -1,
		VszLimit: s.VszLimit, Generation: spec.Generation,
		Seq: spec.Seq, Listeners: len(spec.Listeners),
		SSL: spec.Config.SSL, SSLMinProtocol: spec.Config.SSLMinProtocol,
	}
	in.NoFile, _ = loginNoFile(s, len(spec.Listeners), hardNoFile())
	if in.SSL == "" {
		in.SSL = "no"
	}
	if in.SSL != "no" {
		in.TLSCertLen = len(spec.Config.SSLCert)
		in.SSLListen = sslListenAddrs(s)
	}
	for _, n := range s.TrustedNetworks {
		in.TrustedNetworks = append(in.TrustedNetworks, n.String())
	}
	if in.HAProxyListen = haproxyListenAddrs(s); len(in.HAProxyListen) > 0 {
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

// noFileReserve is what a login process needs in descriptors besides its
// clients: stdin, stdout, stderr, the control socket, the Go runtime's
// epoll set and its wake-up descriptor, the accept loop's epoll set and
// eventfd, and room for a client more than client_limit for a moment
// after an eviction (see loginProc.canAccept).
const noFileReserve = 64

// loginNoFile is the RLIMIT_NOFILE for a login process of svc that gets
// listeners listening sockets: enough to hold client_limit clients at
// once, each with its socket and, while it is being checked, its
// connection to a login_access_sockets entry (the entries are asked one
// after the other, so one at a time; TLS and the PROXY header need no
// descriptor more), plus noFileReserve and the listeners. If that is
// more than hard (the hard limit the process inherits, which it cannot
// raise without CAP_SYS_RESOURCE; 0 means unknown), it returns hard and
// clamped = true.
func loginNoFile(svc *Service, listeners int, hard uint64) (limit uint64, clamped bool) {
	limit = uint64(svc.ClientLimit)*noFilePerClient(svc) + noFileReserve + uint64(listeners)
	if hard > 0 && limit > hard {
		return hard, true
	}
	return limit, false
}

// noFilePerClient is how many descriptors a client of svc can hold at
// once in its login process: 2 with login_access_sockets, else 1.
func noFilePerClient(svc *Service) uint64 {
	if len(svc.AccessSockets) > 0 {
		return 2
	}
	return 1
}

// hardNoFile is the calling process's hard RLIMIT_NOFILE, which its
// children inherit; 0 if it cannot be read.
func hardNoFile() uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0
	}
	return lim.Max
}

// Start implements Runner.
func (r *ExecRunner) Start(ctx context.Context, spec WorkerSpec, events func(WorkerEvent)) (Worker, error) {
	path, err := r.path()
	if err != nil {
		return nil, err
	}
	in, err := r.initFor(spec)
	if err != nil {
		return nil, err
	}
	initMsg, err := encodeInit(in)
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
		if keyFd, err = newKeyMemfd(spec.Config.SSLCert, spec.Config.SSLKey); err != nil {
			childF.Close()
			uc.Close()
			return nil, err
		}
	}
	uc.SetWriteDeadline(time.Now().Add(2 * time.Second))
	err = sendPacket(uc, initMsg, keyFd)
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
	cmd.Env = []string{LoginProcessEnv + "=1", "GOTRACEBACK=none"}
	if spec.Service.ServiceCount != 0 {
		// A process for service_count clients (one, in high-security
		// mode) has no use for parallel threads: one P saves about 20%
		// CPU per connection and 0.15 MB PSS per process (bench/login.sh).
		cmd.Env = append(cmd.Env, "GOMAXPROCS=1")
	}
	cmd.Env = append(cmd.Env, r.Env...) // the last of a name wins
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
	w := &execWorker{cmd: cmd, c: uc, started: make(chan struct{})}
	log := r.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	vsz := spec.Service.VszLimit
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
			go events(WorkerEvent{Kind: EventExit, ExitCode: 84, Err: fmt.Errorf("start %s: %w", path, err)})
			return
		}
		w.pid = cmd.Process.Pid
		close(w.started)
		log := log.With("service", spec.Service.Name, "pid", w.pid)
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); defer stderr.Close(); copyLog(stderr, log, vsz) }()
		go func() { defer wg.Done(); w.readLoop(events) }()
		go func() {
			err := cmd.Wait()
			wg.Wait() // stderr at EOF and every event delivered before the exit
			ev := WorkerEvent{Kind: EventExit, Err: err}
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

// copyLog forwards a login process's stderr lines. A line "LEVEL text"
// (DEBUG, INFO, WARN, ERROR) is logged at that level; others as errors
// (a Go panic, say). Of a crash, only the first crashLines lines are
// logged, then how many were not (crashTrim).
func copyLog(r interface{ Read([]byte) (int, error) }, log *slog.Logger, vsz uint64) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64<<10)
	var crash crashTrim
	defer func() {
		if n := crash.dropped(); n > 0 {
			log.Error("crash output of the login process cut short", "lines_not_logged", n)
		}
	}()
	for sc.Scan() {
		line := sc.Text()
		if !crash.keep(line) {
			continue
		}
		lvl, msg, ok := strings.Cut(line, " ")
		var l slog.Level
		switch {
		case ok && lvl == "DEBUG":
			l = slog.LevelDebug
		case ok && lvl == "INFO":
			l = slog.LevelInfo
		case ok && lvl == "WARN":
			l = slog.LevelWarn
		case ok && lvl == "ERROR":
			l = slog.LevelError
		default:
			l, msg = slog.LevelError, line
		}
		log.Log(context.Background(), l, msg)
		if strings.HasPrefix(line, "fatal error:") && (strings.Contains(line, "out of memory") || strings.Contains(line, "cannot allocate memory")) {
			log.Error(fmt.Sprintf("Out of memory (vsz_limit=%d MB), you may need to increase it", vsz>>20))
		}
	}
}

type execWorker struct {
	cmd     *exec.Cmd
	c       *net.UnixConn
	started chan struct{} // closed once forked (pid set) or failed (pid 0)
	pid     int
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
	case msgConn:
		b = appendAddr(putU64(b, id), remote)
	case msgEvict:
		b = putU64(b, id)
	case msgStop:
		b = append(b, byte(arg))
	}
	w.buf = b
	w.c.SetWriteDeadline(time.Now().Add(2 * time.Second))
	return sendPacket(w.c, b, fd)
}

func (w *execWorker) Give(id uint64, fd int, remote netip.AddrPort) error {
	return w.send(msgConn, id, 0, remote, fd)
}
func (w *execWorker) Evict(id uint64) error { return w.send(msgEvict, id, 0, netip.AddrPort{}, -1) }
func (w *execWorker) Stop(m StopMode) error { return w.send(msgStop, 0, int(m), netip.AddrPort{}, -1) }
func (w *execWorker) Kill() error {
	if w.PID() == 0 {
		return nil
	}
	return w.cmd.Process.Kill()
}

func (w *execWorker) readLoop(events func(WorkerEvent)) {
	defer w.c.Close()
	buf := make([]byte, 8192) // batches (login.go maxBatch)
	oob := make([]byte, syscall.CmsgSpace(4*4))
	resets := 0
	for {
		pk, err := readPacket(w.c, buf, oob)
		if pk.fd >= 0 {
			syscall.Close(pk.fd) // login processes never send descriptors
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
		if err != nil || pk.closed {
			if err != nil && !errors.Is(err, net.ErrClosed) && !isConnReset(err) {
				events(WorkerEvent{Kind: EventState, Err: err}) // ignored by the pool
			}
			return
		}
		if pk.typ == msgBatch {
			for b := pk.json; len(b) >= 10; b = b[10:] {
				if ev, ok := reportEvent(b[0], binary.LittleEndian.Uint64(b[1:9]), b[9]); ok {
					events(ev)
				}
			}
			continue
		}
		if ev, ok := reportEvent(pk.typ, pk.id, pk.arg); ok {
			events(ev)
		}
	}
}

// reportEvent is the WorkerEvent for one report of a login process
// (alone or inside a msgBatch); ok is false for an unknown type.
func reportEvent(typ byte, id uint64, arg uint8) (WorkerEvent, bool) {
	switch typ {
	case msgReady:
		return WorkerEvent{Kind: EventReady}, true
	case msgUnlistened:
		return WorkerEvent{Kind: EventUnlistened}, true
	case msgState:
		return WorkerEvent{Kind: EventState, Conn: id, State: ConnState(arg)}, true
	case msgAccepted:
		return WorkerEvent{Kind: EventAccepted, Conn: id, State: ConnState(arg)}, true
	case msgClosed:
		return WorkerEvent{Kind: EventClosed, Conn: id, Reason: CloseReason(arg)}, true
	}
	return WorkerEvent{}, false
}

func isConnReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
