package dovecotsock

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpwrapd/tcpwrapd/internal/ctlsock"
	"github.com/tcpwrapd/tcpwrapd/internal/defaults"
	"github.com/tcpwrapd/tcpwrapd/internal/sockfd"
	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
	"github.com/tcpwrapd/tcpwrapd/pkg/wrapopts"
)

// Defaults for the zero values of Server's fields.
const (
	// DefaultReadTimeout is how long a connection may take to send its
	// request: 10 s, as Dovecot's tcpwrap.
	DefaultReadTimeout = 10 * time.Second
	// DefaultMaxConns is the default number of connections served at once.
	DefaultMaxConns = 1024
	// DefaultDrainTimeout is how long Serve waits for in-flight checks on
	// shutdown before it closes them.
	DefaultDrainTimeout = 5 * time.Second
)

// Error kinds, counted with Checker.Error (tcpwrapd's admin socket shows
// them by these names).
const (
	ErrKindInvalidRequest = "invalid_request" // the request was not "NAME\n"
	ErrKindReadTimeout    = "read_timeout"    // no request within ReadTimeout
	ErrKindEvictedIdle    = "evicted_idle"    // closed without a request to make room (MaxConns, EMFILE, ENFILE)
	ErrKindClientGone     = "client_gone"     // the client left before its request (EPIPE, ECONNRESET)
	ErrKindReadFailed     = "read_failed"     // reading the request failed otherwise
	ErrKindReplyGone      = "reply_gone"      // the client left before the reply (EPIPE)
	ErrKindWriteFailed    = "write_failed"    // writing the reply failed otherwise
	ErrKindNotUnix        = "not_unix"        // a connection that is not a unix socket
	// Requests refused ("0\n") because they do not carry exactly one
	// connected TCP socket, or a usable daemon name.
	ErrKindFDTruncated  = "fd_truncated"     // MSG_CTRUNC: the kernel could not pass the descriptor (our table full?)
	ErrKindNoFD         = "no_fd"            // no descriptor
	ErrKindManyFDs      = "many_fds"         // more than one descriptor
	ErrKindNotSocket    = "fd_not_socket"    // the descriptor is not a socket (a pipe, a file)
	ErrKindNotTCP       = "fd_not_tcp"       // a socket, but not TCP over IPv4 or IPv6 (UDP, AF_UNIX)
	ErrKindNotConnected = "fd_not_connected" // a TCP socket without a peer (a listener, never connected)
	ErrKindDaemonName   = "bad_daemon_name"  // the daemon name is not a plain name (wrapopts.CheckPlainName)
)

// Replies, as Dovecot's tcpwrap writes them (src/util/tcpwrap.c).
var (
	replyGranted = []byte("1\n")
	replyDenied  = []byte("0\n")
)

// Checker decides the requests a Server receives. *accessd.Checker,
// tcpwrapd's rules, is the one the daemon uses.
type Checker interface {
	// Check decides req; clientFD is the client's socket, on which rule
	// options may act, open until Check returns. Check logs the
	// decision.
	Check(ctx context.Context, req *hostsrules.Request, clientFD int) hostsrules.Decision
	// Error counts one problem of the given kind (an ErrKind constant).
	Error(kind string)
}

// Server answers Dovecot login access checks on unix stream sockets, as
// Dovecot's tcpwrap service (src/util/tcpwrap.c) does, but in one
// long-running process that serves many connections at once.
//
// Per connection it makes one recvmsg of at most 1024 bytes plus one
// SCM_RIGHTS descriptor. A valid request (see DecodeRequest) is decided
// by the Checker with Daemon set to the name and Client/Server set from
// getpeername/getsockname of the passed descriptor. The passed
// descriptors are closed as soon as the check is decided, before the
// reply. The reply is "1\n" (granted) or "0\n" (denied, or the decision
// carries an error), written in one write. A decision delegated to a twist
// command gets no reply: the connection is closed, which the login takes
// as a refusal, as with libwrap, where the twist command replaces tcpwrap.
// Invalid requests are logged and closed without a reply; a connection
// that sends nothing within ReadTimeout is closed silently. A client that
// vanished before the reply (EPIPE, ECONNRESET) is harmless.
//
// Unlike Dovecot's tcpwrap, where libwrap takes whatever it gets for an
// "unknown" client, a valid request is refused with "0\n" and logged,
// without a check, unless it carries exactly one connected TCP socket: the
// kernel dropped descriptors (MSG_CTRUNC, typically because our descriptor
// table is full), none, more than one, or one that is not a socket, not
// TCP over IPv4/IPv6, or not connected, each with its own log message and
// error kind (Checker.Error); every descriptor received is closed. It is also refused
// unless the daemon name, as sent, is a plain name
// (wrapopts.CheckPlainName): it would otherwise become a path (banners)
// outside the rules' directories.
//
// At MaxConns, and when descriptors run short, Serve makes room by closing
// the connection that has been silent longest: accepted first among those
// that have sent nothing (not even part of a request) for at least a
// second at MaxConns, 50 ms when descriptors run short. A login sends its
// request as soon as it connects, so such a connection is worth less than
// the next one in the listen backlog, which may carry a check. Descriptors
// run short once accept has failed with EMFILE or ENFILE, or the
// connections come within 64 of the open-file limit: from then on Serve
// makes sure before each accept that two descriptors stay free after it,
// for the client sockets the requests pass (the kernel allocates them in
// recvmsg, whenever a request arrives; without room it drops them,
// MSG_CTRUNC, and the check is refused). When no connection can be
// closed, Serve accepts with room for the connection and its request's
// descriptor, and otherwise waits for a connection to end (backing off up
// to a second) without spinning.
//
// The exported fields must not change once Serve has been called. A
// Server may serve several listeners with concurrent Serve calls;
// MaxConns is shared.
type Server struct {
	// Checker decides each valid request and counts the problems.
	// Required.
	Checker Checker
	// Logger receives refusals before a check (Warn, Error) and invalid
	// requests (Warn). Nil discards.
	Logger *slog.Logger
	// ReadTimeout limits the wait for the request; zero means
	// DefaultReadTimeout.
	ReadTimeout time.Duration
	// MaxConns caps connections served at once; zero means
	// DefaultMaxConns. Beyond it Serve stops accepting and new
	// connections wait in the listen backlog.
	MaxConns int
	// DrainTimeout is how long Serve waits for in-flight connections
	// after its context is cancelled before it closes them; zero means
	// DefaultDrainTimeout.
	DrainTimeout time.Duration
	// ConnHook, if set, is called with +1 right after Serve accepts a
	// connection and with -1 once that connection has been served and
	// closed. Calls come from several goroutines; for one connection the
	// +1 always precedes the -1. Dovecot-managed mode uses it for the
	// master's available_count.
	ConnHook func(delta int)

	once sync.Once
	sem  chan struct{}
	log  *slog.Logger
}

func (s *Server) init() {
	s.once.Do(func() {
		n := s.MaxConns
		if n <= 0 {
			n = DefaultMaxConns
		}
		s.sem = make(chan struct{}, n)
		s.log = s.Logger
		if s.log == nil {
			s.log = slog.New(slog.DiscardHandler)
		}
	})
}

// Serve accepts connections on ln and serves each in its own goroutine
// until ctx is cancelled or Accept fails for good. ln should be a
// *net.UnixListener of type SOCK_STREAM; connections of other kinds are
// closed unanswered. Serve closes ln.
//
// When ctx is cancelled, Serve stops accepting, waits up to DrainTimeout for
// in-flight checks to finish (each with the policy it started with), then
// closes the remaining connections and cancels their checks, waits for
// their goroutines and returns nil. Otherwise it returns the Accept error
// (after the same drain). Temporary Accept errors are retried with a
// short backoff; EMFILE and ENFILE first close a silent connection (see
// Server) and make Serve keep descriptors free from then on.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.init()
	checkCtx, force := context.WithCancel(context.WithoutCancel(ctx))
	defer force()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()

	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = make(map[net.Conn]*connState)
		err   error
		delay time.Duration
		seq   uint64 // accept order, for evictSilent
		// From probeAt connections on, Serve makes room for fdRoom more
		// descriptors before each accept (see Server); 0 after the
		// process ran out of descriptors once.
		probeAt = fdProbeAt()
		// ended is signalled when a connection has ended: its
		// descriptor is free.
		ended = make(chan struct{}, 1)
	)
loop:
	for {
		select {
		case s.sem <- struct{}{}:
		default:
			// At MaxConns: make room by closing the connection that has
			// been silent longest, for SilentAfter at least (logins send
			// their request at once), so silent connections cannot
			// starve real checks; else wait for one to end, or to have
			// been silent for SilentAfter.
		full:
			for {
				_, retry := s.evictSilent(&mu, conns, SilentAfter, "connection limit reached")
				switch taken, stopped := s.acquire(ctx, retry); {
				case taken:
					break full
				case stopped:
					break loop
				}
			}
		}
		mu.Lock()
		n := len(conns)
		mu.Unlock()
		if n >= probeAt && !s.makeRoom(ctx, ln, &mu, conns, ended, &delay) {
			<-s.sem
			break
		}
		c, aerr := ln.Accept()
		if aerr != nil {
			<-s.sem
			if ctx.Err() != nil {
				break
			}
			// Out of descriptors: nothing else frees one while the table
			// is full of silent connections, so close the one silent
			// longest and accept again at once, as at MaxConns; from now
			// on, make room before every accept. Each retry closes a
			// connection, so this cannot spin; when none can be closed,
			// wait for a connection to end, or back off.
			var retry time.Duration
			if outOfFDs(aerr) {
				probeAt = 0
				var closed bool
				if closed, retry = s.evictSilent(&mu, conns, fdSilentAfter, "descriptor limit reached ("+aerr.Error()+")"); closed {
					wait(ctx, ended, fdSilentAfter, true)
					continue
				}
			}
			var te interface{ Temporary() bool }
			if errors.As(aerr, &te) && te.Temporary() {
				d := nextDelay(&delay)
				if retry > 0 {
					d = min(d, retry)
				}
				s.log.Error("accept failed, retrying", "err", aerr, "delay", d)
				if !wait(ctx, ended, d, outOfFDs(aerr)) {
					break
				}
				continue
			}
			err = aerr
			break
		}
		delay = 0
		if s.ConnHook != nil {
			s.ConnHook(+1)
		}
		seq++
		st := &connState{since: time.Now(), seq: seq}
		mu.Lock()
		conns[c] = st
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer func() {
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
				select {
				case ended <- struct{}{}:
				default:
				}
				if s.ConnHook != nil {
					s.ConnHook(-1)
				}
				<-s.sem
				wg.Done()
			}()
			s.serveConn(checkCtx, c, st)
		}()
	}
	ln.Close()

	// A login sends its request right after connecting. Connections that
	// still have not sent one after a moment are not checks in flight:
	// close them rather than hold the shutdown for the whole drain time.
	idleTimer := time.AfterFunc(min(defaults.Positive(s.DrainTimeout, DefaultDrainTimeout), StopGrace), func() {
		mu.Lock()
		defer mu.Unlock()
		for c, st := range conns {
			if st.CompareAndSwap(connWaiting, connClosed) {
				c.Close()
			}
		}
	})
	defer idleTimer.Stop()

	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTimer(defaults.Positive(s.DrainTimeout, DefaultDrainTimeout))
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		mu.Lock()
		s.log.Warn("drain timeout, closing connections", "connections", len(conns))
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		force()
		<-done
	}
	return err
}

// StopGrace is how long a stopping server still waits for the request of
// a connection that has not sent one.
const StopGrace = time.Second

// connState tracks a connection for shutdown: waiting for its request
// (closed at once on stop), or busy with a check (drained).
type connState struct {
	atomic.Int32
	since time.Time // accepted at
	seq   uint64    // accept order within Serve
}

// fdRoom is how many descriptors Serve keeps free, once descriptors run
// short, for what accepted connections bring: the client socket passed
// with a request (one each), the sockets of a check (DNS, ident). Two
// requests arriving at once both get theirs.
const fdRoom = 2

// fdProbeSlack: Serve makes room before each accept from this many
// connections below the open-file limit on, as after an EMFILE.
const fdProbeSlack = 64

// fdProbeAt returns the number of connections from which on Serve makes
// room before each accept: the open-file limit less fdProbeSlack, so a
// server whose limit is well above MaxConns never pays for the probes.
func fdProbeAt() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0
	}
	return int(min(max(lim.Cur, fdProbeSlack)-fdProbeSlack, 1<<30))
}

// makeRoom makes room for the next accept: it wants fdRoom+1 descriptors
// free, so that fdRoom stay free after the accept, and closes the
// connection silent longest while they are not. When no connection is
// silent (for fdSilentAfter), two free descriptors will do (the connection
// and the one its request brings); with fewer it waits for a connection to
// end, to have been silent for fdSilentAfter, or a back-off (up to a second:
// descriptors may also be freed by others) and looks again, so that no
// request is accepted only to lose its descriptor (MSG_CTRUNC) and be
// refused. The room is kept free, not held: the kernel
// allocates the descriptor a request brings in recvmsg, in the
// connection's goroutine, whenever the request arrives. It returns false
// once ctx is done.
func (s *Server) makeRoom(ctx context.Context, ln net.Listener, mu *sync.Mutex, conns map[net.Conn]*connState, ended <-chan struct{}, delay *time.Duration) bool {
	for {
		free := freeFDs(ln, fdRoom+1)
		if free > fdRoom {
			return true
		}
		closed, retry := s.evictSilent(mu, conns, fdSilentAfter, "descriptor limit reached (no room for the requests' descriptors)")
		if closed {
			if !wait(ctx, ended, fdSilentAfter, true) {
				return false
			}
			continue
		}
		if free >= 2 {
			return true
		}
		d := retry
		if d <= 0 {
			d = nextDelay(delay)
			s.log.Error("descriptor limit reached and no connection is silent, waiting", "free", free, "delay", d)
		}
		if !wait(ctx, ended, d, true) {
			return false
		}
	}
}

// nextDelay doubles the back-off *d, from 5 ms up to a second, and
// returns it.
func nextDelay(d *time.Duration) time.Duration {
	*d = min(max(2**d, 5*time.Millisecond), time.Second)
	return *d
}

// acquire waits for a slot under MaxConns and takes it (taken), until ctx
// is done (stopped) or, if retry > 0, for retry (neither).
func (s *Server) acquire(ctx context.Context, retry time.Duration) (taken, stopped bool) {
	var elapsed <-chan time.Time
	if retry > 0 {
		t := time.NewTimer(retry)
		defer t.Stop()
		elapsed = t.C
	}
	select {
	case s.sem <- struct{}{}:
		return true, false
	case <-elapsed:
		return false, false
	case <-ctx.Done():
		return false, true
	}
}

// wait waits for d, or, if onEnd, until a connection has ended (its
// descriptor is free), whichever comes first. It returns false if ctx is
// done first.
func wait(ctx context.Context, ended <-chan struct{}, d time.Duration, onEnd bool) bool {
	if !onEnd {
		ended = nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ended:
	case <-ctx.Done():
		return false
	}
	return true
}

// SilentAfter is how long a connection must have been silent before it
// may be closed to make room at MaxConns: a login sends its request right
// after connecting, so a connection that has not within a second is not a
// login in progress.
const SilentAfter = time.Second

// fdSilentAfter is SilentAfter when descriptors run short. It is short,
// because room is made one descriptor at a time: a check queued behind n
// silent connections waits about n/(descriptors for connections) times
// fdSilentAfter.
const fdSilentAfter = 50 * time.Millisecond

// evictSilent closes the connection that has waited longest for its
// request, if it has waited at least grace and has sent nothing yet,
// and logs why (the situation that made room necessary) at warning level.
// A connection whose request is in its socket buffer, not yet read, is
// left alone: it is about to be checked. It reports whether it closed one
// and, if not, when the oldest silent connection will have waited grace
// (0: none is waiting). The closed connection's descriptor is
// freed only once its goroutine has left the read (the net package defers
// the close(2) until then), so the caller waits for the end of a
// connection before it looks for room again.
//
// A connection that has sent nothing is worth less than a new one, which
// may carry a check: logins send their request as soon as they connect.
func (s *Server) evictSilent(mu *sync.Mutex, conns map[net.Conn]*connState, grace time.Duration, why string) (bool, time.Duration) {
	mu.Lock()
	defer mu.Unlock()
	var after uint64 // connections accepted up to this one have data waiting
	for range 8 {
		var oldest net.Conn
		var st *connState
		for c, cs := range conns {
			if cs.seq > after && cs.Load() == connWaiting && (st == nil || cs.seq < st.seq) {
				oldest, st = c, cs
			}
		}
		if st == nil {
			return false, 0
		}
		if waited := time.Since(st.since); waited < grace {
			return false, grace - waited
		}
		if sockfd.HasInput(oldest) || !st.CompareAndSwap(connWaiting, connClosed) {
			after = st.seq
			continue
		}
		s.log.Warn(why+": closed the connection that waited longest for its request",
			"waited", time.Since(st.since).Round(time.Millisecond))
		s.Checker.Error(ErrKindEvictedIdle)
		oldest.Close()
		return true, 0
	}
	return false, 0
}

// rawConn returns x's descriptor access, or nil if it has no descriptor.
func rawConn(x any) syscall.RawConn {
	if sc, ok := x.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			return rc
		}
	}
	return nil
}

// outOfFDs reports whether err is EMFILE (this process's descriptor
// table is full) or ENFILE (the system's).
func outOfFDs(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// freeFDs reports how many of n more descriptors (up to n) the process can
// open now. It duplicates x's descriptor onto the lowest free slot, closes
// the copy at once and looks again above it, so it never holds more than
// one slot: a request arriving meanwhile still finds the others free. It
// returns n when x has no descriptor to duplicate.
func freeFDs(x any, n int) int {
	rc := rawConn(x)
	if rc == nil {
		return n
	}
	got := n
	rc.Control(func(fd uintptr) {
		got = 0
		for next := 0; got < n; got++ {
			d, err := unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, next)
			if err != nil {
				break // EMFILE: none free from next on; EINVAL: next is the limit
			}
			unix.Close(d)
			next = d + 1
		}
	})
	return got
}

const (
	connWaiting int32 = iota
	connBusy
	connClosed
)

// serveConn handles one connection and closes it.
func (s *Server) serveConn(ctx context.Context, nc net.Conn, st *connState) {
	defer nc.Close()
	c, ok := nc.(*net.UnixConn)
	if !ok {
		s.log.Error("not a unix socket connection, closing", "remote_addr", nc.RemoteAddr().String())
		s.Checker.Error(ErrKindNotUnix)
		return
	}
	rt := defaults.Positive(s.ReadTimeout, DefaultReadTimeout)
	c.SetReadDeadline(time.Now().Add(rt))
	m, err := readMessage(c)
	if err == nil && !st.CompareAndSwap(connWaiting, connBusy) {
		m.closeFDs() // the server is stopping: a request this late is refused
		m.release()
		return
	}
	if err != nil {
		if st.Load() == connClosed {
			return // closed by the stop, not an error
		}
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			s.log.Debug("no request before timeout, closing", "timeout", rt)
			s.Checker.Error(ErrKindReadTimeout)
		case isGone(err):
			s.log.Debug("client gone before request", "err", err)
			s.Checker.Error(ErrKindClientGone)
		default:
			s.log.Warn("reading request failed", "err", err)
			s.Checker.Error(ErrKindReadFailed)
		}
		return
	}
	defer m.closeFDs()
	defer m.release()
	if len(m.data) == 0 && len(m.fds) == 0 && !m.truncated {
		s.log.Debug("client closed without a request")
		return
	}
	name, err := DecodeRequest(m.data)
	if err != nil {
		p := ctlsock.PeerCred(c)
		s.log.Warn("invalid request, closing without reply", "err", err,
			"request", string(m.data[:min(len(m.data), 64)]), "fds", len(m.fds), "truncated", m.truncated,
			"peer_pid", p.PID, "peer_uid", p.UID)
		s.Checker.Error(ErrKindInvalidRequest)
		return
	}
	fd, client, server, ferr := clientSocket(&m)
	if ferr != nil {
		s.refuse(ctx, c, &m, name, ferr.Level, ferr.Kind, ferr.Msg, ferr.Attrs...)
		return
	}
	// The name as sent, NUL and all (name is cut at a NUL): it becomes a
	// file name (banners) and part of commands (%d), so only a plain name
	// is checked at all.
	err = wrapopts.CheckPlainName(name)
	if len(name) != len(m.data)-1 {
		err = wrapopts.CheckPlainName(string(m.data[:len(m.data)-1]))
	}
	if err != nil {
		s.refuse(ctx, c, &m, name, slog.LevelWarn, ErrKindDaemonName, "daemon name is not a plain name, refused", "err", err)
		return
	}

	req := &hostsrules.Request{Daemon: name, Client: client, Server: server}
	d := s.Checker.Check(ctx, req, fd)
	m.closeFDs() // never keep the client's socket (docs/dovecot-managed.md)
	switch {
	case d.Delegated:
		// twist: its command has the client; closing without a reply is
		// the login's refusal.
	case d.Verdict == hostsrules.Granted && d.Err == nil:
		s.reply(c, name, replyGranted)
	default:
		s.reply(c, name, replyDenied)
	}
}

// refuse answers "0\n" to a request that is refused before any check: it
// closes the request's descriptors, logs msg at level with the daemon name,
// the asking process and attrs, and counts kind.
func (s *Server) refuse(ctx context.Context, c *net.UnixConn, m *message, name string, level slog.Level, kind, msg string, attrs ...any) {
	m.closeFDs()
	if s.log.Enabled(ctx, level) {
		p := ctlsock.PeerCred(c)
		s.log.Log(ctx, level, msg, append([]any{"daemon", name, "peer_pid", p.PID, "peer_uid", p.UID}, attrs...)...)
	}
	s.Checker.Error(kind)
	s.reply(c, name, replyDenied)
}

// reply writes the answer to the login. No write deadline: the two bytes
// always fit the fresh connection's socket buffer, so the write never
// blocks.
func (s *Server) reply(c *net.UnixConn, name string, reply []byte) {
	if _, err := c.Write(reply); err != nil {
		if isGone(err) {
			s.log.Debug("client gone before reply", "daemon", name, "err", err)
			s.Checker.Error(ErrKindReplyGone)
		} else {
			s.log.Warn("writing reply failed", "daemon", name, "err", err)
			s.Checker.Error(ErrKindWriteFailed)
		}
	}
}
