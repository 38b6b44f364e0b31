package masterauth

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Timeouts (master-auth.c).
const (
	// DefaultTimeout bounds the wait for the reply
	// (MASTER_AUTH_REQUEST_TIMEOUT_MSECS: half the 180 s login timeout).
	DefaultTimeout = 90 * time.Second
	// ConnectRetry is how long a connect that would block (the
	// service's listen backlog is full) is retried
	// (SOCKET_CONNECT_RETRY_MSECS).
	ConnectRetry = 500 * time.Millisecond
)

// Sentinel errors of [Send], matched with errors.Is.
var (
	// ErrRemoteClosed: the service closed the connection without a
	// reply. Dovecot reports it as "Remote closed connection
	// (destination service { process_limit } reached?)".
	ErrRemoteClosed = errors.New("remote closed connection (destination service { process_limit } reached?)")
	// ErrInternal: the service replied INTERNAL_ERROR (for example auth
	// did not know the request, or the user lookup failed).
	ErrInternal = errors.New("post-login service replied internal error")
	// ErrTimeout: no reply within the timeout.
	ErrTimeout = errors.New("hand-off request timed out")
	// ErrTagMismatch: the reply carries another request's tag.
	ErrTagMismatch = errors.New("reply with unknown tag")
)

// Error is a failed hand-off: Op is "connect", "send", "read" or
// "reply", Path the service socket.
type Error struct {
	Op   string
	Path string
	// Reply is the reply, for Op "reply".
	Reply Reply
	Err   error
}

func (e *Error) Error() string {
	return fmt.Sprintf("hand-off to %s: %s: %v", e.Path, e.Op, e.Err)
}

// Unwrap returns Err.
func (e *Error) Unwrap() error { return e.Err }

var tagCounter atomic.Uint32

// nextTag returns a non-zero tag unique within the process.
func nextTag() uint32 {
	for {
		if t := tagCounter.Add(1); t != 0 {
			return t
		}
	}
}

// Options are the optional parameters of [Send].
type Options struct {
	// Timeout bounds the wait for the reply; zero means DefaultTimeout.
	Timeout time.Duration
}

// Send hands the client over to the post-login service listening on the
// unix socket path: it connects (retrying for up to ConnectRetry while
// the service's backlog is full), sets req.Tag and req.Ino (the inode of
// client's fd), writes the request in layout l with client's fd attached
// (SCM_RIGHTS) in one sendmsg, and reads the reply within opt.Timeout or
// until ctx ends.
//
// It makes the system calls Dovecot's login processes make and little
// more, as raw system calls (raw.go): socket and connect
// (non-blocking: a unix socket's connect never waits), fstat of the
// client's fd, one sendmsg, the reply's read, close. The reply is waited
// for in Go's netpoller (os.NewFile: one fcntl, epoll_ctl add and
// delete), and the request goes out from that wait's first callback, so
// no read is tried before the reply can be there. There is no
// getsockname or getpeername as a net.Dialer makes, one timer (the
// read deadline), and a context.AfterFunc, when ctx can end, that cuts
// the wait short (bench/README.md, "Hand-off").
//
// client is the client's socket (plaintext) or the service's end of a
// socketpair (TLS); Send does not close it. On success the caller closes
// its copy and logs the Login line with Reply.MailPID. Every failure is
// an *Error wrapping ErrRemoteClosed, ErrInternal, ErrTimeout,
// ErrTagMismatch, ErrDataTooLarge, ctx.Err() or a system error; the
// caller then cancels the auth request and tells the client
// InternalFailureText. No descriptor of Send's stays open after it
// returns. Send is safe for concurrent use.
func Send(ctx context.Context, path string, l Layout, req *Request, client syscall.Conn, opt Options) (Reply, error) {
	if len(req.Data) > MaxDataSize {
		return Reply{}, &Error{Op: "send", Path: path, Err: ErrDataTooLarge}
	}
	if l.Size() == 0 {
		return Reply{}, &Error{Op: "send", Path: path, Err: fmt.Errorf("unknown layout %v", l)}
	}
	rc, err := client.SyscallConn()
	if err != nil {
		return Reply{}, &Error{Op: "send", Path: path, Err: err}
	}
	fd, err := connectRetry(ctx, path)
	if err != nil {
		return Reply{}, &Error{Op: "connect", Path: path, Err: err}
	}
	// A non-blocking descriptor: os.NewFile puts it into the netpoller.
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	src, err := f.SyscallConn()
	if err != nil {
		return Reply{}, &Error{Op: "send", Path: path, Err: err}
	}
	timeout := opt.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	_ = f.SetReadDeadline(time.Now().Add(timeout))
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, func() { f.SetDeadline(time.Unix(1, 0)) })
		defer stop()
	}

	req.Tag = nextTag()
	x := exchange{req: req, l: l, client: rc}
	// The request goes out from the reply's read callback, at its
	// first call: the wait for the reply is then already armed (a
	// RawConn's Read forgets readiness seen before it), and the read
	// that would find nothing is not made.
	err = src.Read(x.step)
	if x.sendErr == nil && x.full {
		// The socket's buffer was full (it never is for one request on
		// a new connection): wait until it is not, then the reply.
		if err = src.Write(x.resend); err == nil && x.sendErr == nil {
			err = src.Read(x.step)
		}
	}
	switch {
	case x.sendErr != nil:
		return Reply{}, &Error{Op: "send", Path: path, Err: x.sendErr}
	case !x.sent:
		// Cut short before the request went out (ctx ended).
		return Reply{}, &Error{Op: "send", Path: path, Err: readErr(ctx, err)}
	case err == nil && x.readErr != nil:
		err = x.readErr
	}
	if err != nil || x.n < ReplySize {
		return Reply{}, &Error{Op: "read", Path: path, Err: readErr(ctx, err)}
	}
	rep, err := ParseReply(x.buf[:])
	if err != nil {
		return Reply{}, &Error{Op: "reply", Path: path, Err: err}
	}
	if rep.Tag != req.Tag {
		return Reply{}, &Error{Op: "reply", Path: path, Reply: rep, Err: fmt.Errorf("%w %d (sent %d)", ErrTagMismatch, rep.Tag, req.Tag)}
	}
	if rep.Status != StatusOK {
		return Reply{}, &Error{Op: "reply", Path: path, Reply: rep, Err: ErrInternal}
	}
	return rep, nil
}

// readErr is the error of a reply's read that ended with err (nil: end
// of stream before the whole reply), in Send's terms.
func readErr(ctx context.Context, err error) error {
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case err == nil, errors.Is(err, syscall.ECONNRESET):
		return ErrRemoteClosed
	case errors.Is(err, os.ErrDeadlineExceeded):
		return ErrTimeout
	}
	return err
}

// exchange is one request and its reply on the service's socket, driven
// by the RawConn callbacks step and resend.
type exchange struct {
	req    *Request
	l      Layout
	client syscall.RawConn

	sent, full bool  // the request went out; sendmsg found the buffer full
	sendErr    error // the request could not be sent
	buf        [ReplySize]byte
	n          int   // reply bytes read
	readErr    error // the read failed (nil at end of stream: n < ReplySize)
}

// step is the reply's read callback: at its first call it sends the
// request and waits; then it reads until the reply is whole, the
// service has closed, or the read fails.
func (x *exchange) step(fd uintptr) bool {
	if !x.sent {
		x.resend(fd)
		// Done if it failed or must wait for room; else the reply
		// cannot be there yet: wait.
		return x.sendErr != nil || x.full
	}
	for x.n < ReplySize {
		n, e := readNow(int(fd), x.buf[x.n:])
		switch {
		case e == unix.EINTR:
		case e == unix.EAGAIN:
			return false
		case e != 0:
			x.readErr = os.NewSyscallError("read", e)
			return true
		case n == 0:
			return true // end of stream
		default:
			x.n += n
		}
	}
	return true
}

// resend sends the request, with the client's descriptor, on the
// service's socket fd: fstat of the client's fd (the request's Ino),
// then one sendmsg, inside the client's RawConn Control so that its
// descriptor stays open meanwhile. As a RawConn Write callback it
// reports false (wait) while the socket's buffer is full.
func (x *exchange) resend(fd uintptr) bool {
	x.full = false
	cerr := x.client.Control(func(cfd uintptr) {
		var st unix.Stat_t
		if err := unix.Fstat(int(cfd), &st); err != nil {
			x.sendErr = fmt.Errorf("fstat client fd: %w", err)
			return
		}
		x.req.Ino = st.Ino
		b, err := x.req.MarshalBinary(x.l)
		if err != nil {
			x.sendErr = err
			return
		}
		n, e := sendFD(int(fd), b, int(cfd))
		switch {
		case e == unix.EAGAIN:
			x.full = true
		case e != 0:
			x.sendErr = os.NewSyscallError("sendmsg", e)
		case n != len(b):
			x.sendErr = fmt.Errorf("sendmsg sent only %d of %d bytes", n, len(b))
		default:
			x.sent = true
		}
	})
	if cerr != nil && x.sendErr == nil {
		x.sendErr = cerr
	}
	return !x.full
}

// connectRetry connects to the unix socket path (connectUnix),
// retrying EAGAIN (full backlog) every 10 ms for up to ConnectRetry, as
// Dovecot's net_connect_unix_with_retries.
func connectRetry(ctx context.Context, path string) (int, error) {
	if err := ctx.Err(); err != nil {
		return -1, err
	}
	var deadline time.Time
	for {
		fd, e := connectUnix(path)
		if e == 0 {
			return fd, nil
		}
		err := os.NewSyscallError("connect", e)
		if e != unix.EAGAIN {
			return -1, err
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(ConnectRetry)
		} else if time.Now().After(deadline) {
			return -1, err
		}
		if connectRetried != nil {
			connectRetried()
		}
		t := time.NewTimer(10 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return -1, ctx.Err()
		case <-t.C:
		}
	}
}

// connectRetried, when set (by a test), is called each time a connect
// found the service's backlog full and is about to be retried.
var connectRetried func()
