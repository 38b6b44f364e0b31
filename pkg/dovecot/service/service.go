package service

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpwrapd/tcpwrapd/internal/privdrop"
)

// Descriptors the Dovecot master gives every service process
// (docs/dovecot-managed.md, "What the master passes").
const (
	// StatusFD is the write end of the status pipe to the master.
	StatusFD = 5
	// MasterDeadFD is the write end of a pipe whose read end the
	// master holds: POLLERR/POLLHUP on it means the master is gone.
	MasterDeadFD = 6
	// FirstListenerFD is the first of SOCKET_COUNT listeners.
	FirstListenerFD = 7
)

// Exit statuses of a Dovecot service process (src/lib/failures.h;
// docs/dovecot-managed.md, "What the master passes").
const (
	// FatalDefault is FATAL_DEFAULT: a fatal error, logged before exit.
	FatalDefault = 89
	// FatalOutOfMem is FATAL_OUTOFMEM: the process ran out of memory.
	FatalOutOfMem = 84
)

// ErrNotDovecot is returned by EnvFrom and Take when the
// process was not started by a Dovecot master (GENERATION is missing).
var ErrNotDovecot = errors.New("--dovecot: not started by a Dovecot master (GENERATION is not set); use it only as `executable` of a Dovecot service")

// Env is what the Dovecot master passes a service process in the
// environment (docs/dovecot-managed.md, "What the master passes").
type Env struct {
	// Generation is GENERATION, echoed as the uid field of every status
	// message.
	Generation uint32
	// ClientLimit is CLIENT_LIMIT: the most connections one process may
	// serve at once, and the available_count sent at start.
	ClientLimit int
	// SocketCount is SOCKET_COUNT: the listeners on fd 7 onwards.
	SocketCount int
	// ServiceName is SERVICE_NAME ("tcpwrap"), for logs.
	ServiceName string
	// SetUID and SetGID are RESTRICT_SETUID and RESTRICT_SETGID, -1 when
	// unset (the process then stays root).
	SetUID, SetGID int
	// ExtraGroups are the gids of RESTRICT_SETEXTRAGROUPS (comma
	// separated), kept as supplementary groups with SetGID.
	ExtraGroups []int
	// Chroot is RESTRICT_CHROOT, which DropPrivileges refuses.
	Chroot string
	// LogService is LOG_SERVICE=1: fd 2 is the master's log pipe, which
	// expects LogHandler's format.
	LogService bool
}

// EnvFrom parses the Dovecot service environment through getenv
// (os.Getenv in production). It returns ErrNotDovecot without GENERATION,
// and an error naming the variable when one is malformed. CLIENT_LIMIT
// and SOCKET_COUNT must be at least 1.
func EnvFrom(getenv func(string) string) (Env, error) {
	e := Env{SetUID: -1, SetGID: -1, ServiceName: getenv("SERVICE_NAME"), Chroot: getenv("RESTRICT_CHROOT")}
	gen := getenv("GENERATION")
	if gen == "" {
		return e, ErrNotDovecot
	}
	g, err := strconv.ParseUint(gen, 10, 32)
	if err != nil {
		return e, fmt.Errorf("GENERATION: invalid value %q", gen)
	}
	e.Generation = uint32(g)
	num := func(name string, min int, dst *int) error {
		v := getenv(name)
		if v == "" {
			return fmt.Errorf("%s missing", name)
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < min {
			return fmt.Errorf("%s: invalid value %q", name, v)
		}
		*dst = n
		return nil
	}
	if err := num("CLIENT_LIMIT", 1, &e.ClientLimit); err != nil {
		return e, err
	}
	if err := num("SOCKET_COUNT", 1, &e.SocketCount); err != nil {
		return e, err
	}
	for _, v := range []struct {
		name string
		dst  *int
	}{{"RESTRICT_SETUID", &e.SetUID}, {"RESTRICT_SETGID", &e.SetGID}} {
		if getenv(v.name) != "" {
			if err := num(v.name, 0, v.dst); err != nil {
				return e, err
			}
		}
	}
	if v := getenv("RESTRICT_SETEXTRAGROUPS"); v != "" {
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 0 {
				return e, fmt.Errorf("RESTRICT_SETEXTRAGROUPS: invalid value %q", v)
			}
			e.ExtraGroups = append(e.ExtraGroups, n)
		}
	}
	e.LogService = getenv("LOG_SERVICE") == "1"
	return e, nil
}

// Service is a process running as a Dovecot service
// (`service NAME { executable = ... }`, docs/dovecot-managed.md): it
// takes the listeners the master passed on fd 7 onwards, reports its free
// client slots on the status pipe (fd 5), drops to the service's user,
// and ends when the master goes away (fd 6), when it is idle after the
// master's SIGINT, or on SIGTERM (Run). Create it with Take.
type Service struct {
	// Env is the parsed environment.
	Env Env
	// Listeners are the master's listeners, in configuration order.
	Listeners []net.Listener

	statusFD, deadFD int
	pid              int32
}

// Take takes over what the Dovecot master passed: it parses the
// environment (EnvFrom(os.Getenv)), wraps fds 7 .. 7+SOCKET_COUNT-1
// as listeners, and marks every inherited descriptor from 3 up to the last
// listener close-on-exec, so that commands started by rule options
// inherit none of them. It returns ErrNotDovecot when GENERATION is unset,
// and an error when a listener fd is not a listening unix or inet
// socket. Call it once, early in main.
func Take() (*Service, error) {
	env, err := EnvFrom(os.Getenv)
	if err != nil {
		return nil, err
	}
	return New(env, StatusFD, MasterDeadFD, FirstListenerFD)
}

// New builds a Service from env and explicit descriptors: Take passes
// StatusFD, MasterDeadFD and FirstListenerFD; tests pass pipes and their
// own listener. A negative statusFD or deadFD disables that pipe. New
// takes over the listener descriptors: it closes them after duplicating
// them into Listeners.
func New(env Env, statusFD, deadFD, firstListener int) (*Service, error) {
	s := &Service{Env: env, statusFD: statusFD, deadFD: deadFD, pid: int32(os.Getpid())}
	for fd := 3; fd < firstListener+env.SocketCount; fd++ {
		unix.CloseOnExec(fd) // EBADF for closed ones is fine
	}
	for i := range env.SocketCount {
		fd := firstListener + i
		f := os.NewFile(uintptr(fd), fmt.Sprintf("dovecot-listener-%d", i))
		ln, err := net.FileListener(f) // dups fd
		f.Close()
		if err != nil {
			for _, l := range s.Listeners {
				l.Close()
			}
			return nil, fmt.Errorf("dovecot listener fd %d (SOCKET_COUNT=%d): %w", fd, env.SocketCount, err)
		}
		s.Listeners = append(s.Listeners, ln)
	}
	return s, nil
}

// DropPrivileges switches to RESTRICT_SETGID/RESTRICT_SETUID as Dovecot's
// own services do (restrict_access): supplementary groups [gid] plus
// RESTRICT_SETEXTRAGROUPS, then the gid, then the uid, then a check that
// root cannot be regained (privdrop.Drop). Without RESTRICT_SETUID it
// changes nothing and returns asRoot = true, unless the process is
// already unprivileged. It refuses RESTRICT_CHROOT (the rule files,
// /etc/hosts and the resolver need the real root). Errors are fatal for
// the caller: a half-dropped process must not serve.
func (s *Service) DropPrivileges() (asRoot bool, err error) {
	if s.Env.Chroot != "" {
		return false, fmt.Errorf("chroot %q is not supported: remove `chroot` from the service block", s.Env.Chroot)
	}
	return privdrop.Drop(privdrop.Creds{UID: s.Env.SetUID, GID: s.Env.SetGID, Groups: s.Env.ExtraGroups})
}

// Serve is what a Service runs: it serves ls (the master's listeners)
// until ctx is cancelled, then finishes its connections and returns;
// at most maxConns at once. It calls connHook with +1 for each connection
// it accepts and -1 once that connection is closed (see Run).
type Serve func(ctx context.Context, ls []net.Listener, maxConns int, connHook func(delta int)) error

// Run runs serve on the master's listeners with CLIENT_LIMIT as maxConns
// and the status reporter as connHook, until:
//
//   - idle is closed (the master's SIGINT): stop accepting (serve's
//     context is cancelled), tell the master available_count = 0, wait
//     for serve to return and return its error;
//   - ctx is cancelled (SIGTERM): as for idle, but wait at most drain
//     for serve, then return nil; the caller exits, which closes whatever
//     is still open;
//   - the master dies (fd 6 reports POLLERR or POLLHUP): as for ctx.
//
// At start it sends available_count = CLIENT_LIMIT, then one status
// message each time the number of free slots changes (coalesced while the
// master's pipe is full: EAGAIN only delays the update). An error serve
// returns on its own is returned. log (nil discards) gets one Info line
// for each way of stopping.
func (s *Service) Run(ctx context.Context, idle <-chan struct{}, drain time.Duration, log *slog.Logger, serve Serve) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	limit := s.Env.ClientLimit
	st := newStatusWriter(s.statusFD, s.pid, s.Env.Generation, limit, log)
	defer st.close()

	runCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- serve(runCtx, s.Listeners, limit, st.add) }()

	masterGone := make(chan struct{})
	if s.deadFD >= 0 {
		go watchMasterDead(s.deadFD, masterGone)
	}
	var shutdown bool
	select {
	case err := <-done:
		return err
	case <-idle:
		log.Info("idle-kill request (SIGINT): finishing checks in flight, then exiting", "in_flight", st.active())
	case <-ctx.Done():
		log.Info("shutting down (SIGTERM)", "in_flight", st.active())
		shutdown = true
	case <-masterGone:
		log.Info("master process is gone, exiting", "in_flight", st.active())
		shutdown = true
	}
	st.stop()
	cancel()
	if !shutdown {
		return <-done
	}
	t := time.NewTimer(drain)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		log.Warn("drain timeout, exiting with checks in flight", "in_flight", st.active(), "timeout", drain)
		return nil
	}
}

// watchMasterDead blocks in poll(2) on fd until it reports POLLERR or
// POLLHUP (the master closed its end), then closes gone. It holds one OS
// thread while it waits.
func watchMasterDead(fd int, gone chan<- struct{}) {
	fds := []unix.PollFd{{Fd: int32(fd)}}
	for {
		n, err := unix.Poll(fds, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil || (n > 0 && fds[0].Revents&(unix.POLLERR|unix.POLLHUP|unix.POLLNVAL) != 0) {
			close(gone)
			return
		}
	}
}

// statusWriter reports available_count to the master over the status
// pipe: 12 bytes {int32 pid, uint32 generation, uint32 available},
// native-endian (src/lib-master/master-interface.h). Writes are raw
// non-blocking write(2)s; one that fails with EAGAIN is retried by a
// goroutine with the newest count.
type statusWriter struct {
	fd       int
	pid      int32
	gen      uint32
	limit    int
	log      *slog.Logger
	mu       sync.Mutex
	inFlight int
	stopped  bool
	sent     int // last available_count written, -1 none
	kick     chan struct{}
	quit     chan struct{}
	wg       sync.WaitGroup
}

func newStatusWriter(fd int, pid int32, gen uint32, limit int, log *slog.Logger) *statusWriter {
	w := &statusWriter{fd: fd, pid: pid, gen: gen, limit: limit, log: log, sent: -1,
		kick: make(chan struct{}, 1), quit: make(chan struct{})}
	if fd < 0 {
		return w
	}
	w.wg.Add(1)
	go w.loop()
	w.flush()
	return w
}

// add is the connHook of Serve.
func (w *statusWriter) add(delta int) {
	w.mu.Lock()
	w.inFlight += delta
	w.mu.Unlock()
	w.flush()
}

func (w *statusWriter) active() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.inFlight
}

// stop reports available_count = 0 from now on: the process takes no new
// connections (Dovecot's master_service_stop_new_connections).
func (w *statusWriter) stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
	w.flush()
}

// available returns the count to report.
func (w *statusWriter) available() int {
	if w.stopped {
		return 0
	}
	return max(w.limit-w.inFlight, 0)
}

// flush writes the current count if it differs from the last one sent;
// on EAGAIN it leaves the retry to loop.
func (w *statusWriter) flush() {
	if w.fd < 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.writeLocked() {
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
}

// writeLocked writes the current count if needed and reports whether
// the master is up to date (false after EAGAIN).
func (w *statusWriter) writeLocked() bool {
	avail := w.available()
	if avail == w.sent {
		return true
	}
	var b [12]byte
	binary.NativeEndian.PutUint32(b[0:], uint32(w.pid))
	binary.NativeEndian.PutUint32(b[4:], w.gen)
	binary.NativeEndian.PutUint32(b[8:], uint32(avail))
	for {
		n, err := unix.Write(w.fd, b[:])
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return false
		case err != nil:
			// EPIPE: the master is gone; fd 6 will tell.
			w.log.Debug("status write failed", "err", err)
			w.sent = avail
			return true
		case n != len(b):
			w.log.Error("status write was short", "wrote", n)
		}
		w.sent = avail
		return true
	}
}

// loop retries updates that hit a full pipe.
func (w *statusWriter) loop() {
	defer w.wg.Done()
	for {
		select {
		case <-w.quit:
			return
		case <-w.kick:
		}
		for {
			w.mu.Lock()
			ok := w.writeLocked()
			w.mu.Unlock()
			if ok {
				break
			}
			select {
			case <-w.quit:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
}

// close stops the retry goroutine. The status fd stays open: the master
// notices the exit by SIGCHLD.
func (w *statusWriter) close() {
	if w.fd < 0 {
		return
	}
	close(w.quit)
	w.wg.Wait()
}
