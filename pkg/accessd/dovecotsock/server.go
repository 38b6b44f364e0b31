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
// When accept fails for want of descriptors (EMFILE, ENFILE), Serve closes
// the connection silent longest, as at MaxConns, and accepts again; while
// descriptors are short it also keeps one free for the descriptor the
// accepted request brings. When no connection has been silent for a
// second, it backs off (up to 1 s) instead.
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

func durOr(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
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
// Server).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.init()
	checkCtx, force := context.WithCancel(context.WithoutCancel(ctx))
	defer force()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()

	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		conns  = make(map[net.Conn]*connState)
		err    error
		delay  time.Duration
		lowFDs bool // accept failed with EMFILE or ENFILE since there was last room
	)
loop:
	for {
		select {
		case s.sem <- struct{}{}:
		default:
			// At MaxConns: make room by closing the oldest connection that
			// has been silent for SilentAfter (logins send their request at
			// once), so silent connections cannot starve real checks.
		full:
			for {
				s.evictSilent(&mu, conns, "connection limit reached")
				select {
				case s.sem <- struct{}{}:
					break full
				case <-ctx.Done():
					break loop
				case <-time.After(SilentAfter / 4):
				}
			}
		}
		c, aerr := ln.Accept()
		if aerr != nil {
			<-s.sem
			if ctx.Err() != nil {
				break
			}
			// Out of descriptors: nothing else frees one while the table
			// is full of silent connections, so close the one silent
			// longest and accept again at once, as at MaxConns. Each
			// retry closes a connection, so this cannot spin; when none
			// can be closed, back off below.
			if outOfFDs(aerr) {
				lowFDs = true
				if s.evictSilent(&mu, conns, "descriptor limit reached ("+aerr.Error()+")") {
					continue
				}
			}
			var te interface{ Temporary() bool }
			if errors.As(aerr, &te) && te.Temporary() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Error("accept failed, retrying", "err", aerr, "delay", delay)
				select {
				case <-time.After(delay):
					continue
				case <-ctx.Done():
					break loop
				}
			}
			err = aerr
			break
		}
		delay = 0
		if lowFDs {
			// The request will bring one more descriptor: make room for it
			// too, or the kernel drops it (MSG_CTRUNC) and the check is
			// refused. Until there is room for two again.
			switch freeFDs(c, 2) {
			case 0:
				s.evictSilent(&mu, conns, "descriptor limit reached (no room for the request's descriptor)")
			case 2:
				lowFDs = false
			}
		}
		if s.ConnHook != nil {
			s.ConnHook(+1)
		}
		st := &connState{since: time.Now()}
		mu.Lock()
		conns[c] = st
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer func() {
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
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
	idleTimer := time.AfterFunc(min(durOr(s.DrainTimeout, DefaultDrainTimeout), StopGrace), func() {
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
	t := time.NewTimer(durOr(s.DrainTimeout, DefaultDrainTimeout))
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
}

// SilentAfter is how long a connection must have been silent before it
// may be closed to make room at MaxConns: a login sends its request right
// after connecting, so a connection that has not within a second is not a
// login in progress.
const SilentAfter = time.Second

// evictSilent closes the connection that has waited longest for its
// request, if it has waited at least SilentAfter, and logs why (the
// situation that made room necessary) at warning level. It reports whether
// it closed one; the connection's descriptor is free when it returns.
func (s *Server) evictSilent(mu *sync.Mutex, conns map[net.Conn]*connState, why string) bool {
	mu.Lock()
	defer mu.Unlock()
	var oldest net.Conn
	var st *connState
	for c, cs := range conns {
		if cs.Load() == connWaiting && (st == nil || cs.since.Before(st.since)) {
			oldest, st = c, cs
		}
	}
	if st == nil || time.Since(st.since) < SilentAfter || !st.CompareAndSwap(connWaiting, connClosed) {
		return false
	}
	s.log.Warn(why+": closed the connection that waited longest for its request",
		"waited", time.Since(st.since).Round(time.Millisecond))
	s.Checker.Error(ErrKindEvictedIdle)
	oldest.Close()
	return true
}

// outOfFDs reports whether err is EMFILE (this process's descriptor
// table is full) or ENFILE (the system's).
func outOfFDs(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// freeFDs reports how many of n more descriptors (up to n) the process can
// open now, by duplicating c's descriptor and closing the copies at once.
// It returns n when c has no descriptor to duplicate.
func freeFDs(c net.Conn, n int) int {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return n
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return n
	}
	got := 0
	rc.Control(func(fd uintptr) {
		dups := make([]int, 0, n)
		for range n {
			d, err := unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
			if err != nil {
				break
			}
			dups = append(dups, d)
		}
		got = len(dups)
		for _, d := range dups {
			unix.Close(d)
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
	rt := durOr(s.ReadTimeout, DefaultReadTimeout)
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
