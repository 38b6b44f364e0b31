package masterauth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
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
// client is the client's socket (plaintext) or the service's end of a
// socketpair (TLS); Send does not close it. On success the caller closes
// its copy and logs the Login line with Reply.MailPID. Every failure is
// an *Error wrapping ErrRemoteClosed, ErrInternal, ErrTimeout,
// ErrTagMismatch, ErrDataTooLarge, ctx.Err() or a system error; the
// caller then cancels the auth request and tells the client
// InternalFailureText. Send is safe for concurrent use.
func Send(ctx context.Context, path string, l Layout, req *Request, client syscall.Conn, opt Options) (Reply, error) {
	fail := func(op string, err error) (Reply, error) {
		return Reply{}, &Error{Op: op, Path: path, Err: err}
	}
	if len(req.Data) > MaxDataSize {
		return fail("send", ErrDataTooLarge)
	}
	if l.Size() == 0 {
		return fail("send", fmt.Errorf("unknown layout %v", l))
	}
	rc, err := client.SyscallConn()
	if err != nil {
		return fail("send", err)
	}
	uc, err := dialRetry(ctx, path)
	if err != nil {
		return fail("connect", err)
	}
	defer uc.Close()
	stop := context.AfterFunc(ctx, func() { uc.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	req.Tag = nextTag()
	var sendErr error
	cerr := rc.Control(func(fd uintptr) {
		var st unix.Stat_t
		if err := unix.Fstat(int(fd), &st); err != nil {
			sendErr = fmt.Errorf("fstat client fd: %w", err)
			return
		}
		req.Ino = st.Ino
		b, err := req.MarshalBinary(l)
		if err != nil {
			sendErr = err
			return
		}
		n, _, err := uc.WriteMsgUnix(b, unix.UnixRights(int(fd)), nil)
		if err == nil && n != len(b) {
			err = fmt.Errorf("sendmsg sent only %d of %d bytes", n, len(b))
		}
		sendErr = err
	})
	if err := errors.Join(cerr, sendErr); err != nil {
		return fail("send", err)
	}

	timeout := opt.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	_ = uc.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, ReplySize)
	if _, err := io.ReadFull(uc, buf); err != nil {
		switch {
		case ctx.Err() != nil:
			err = ctx.Err()
		case errors.Is(err, os.ErrDeadlineExceeded):
			err = ErrTimeout
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
			err = ErrRemoteClosed
		}
		return fail("read", err)
	}
	rep, err := ParseReply(buf)
	if err != nil {
		return fail("reply", err)
	}
	if rep.Tag != req.Tag {
		return Reply{}, &Error{Op: "reply", Path: path, Reply: rep, Err: fmt.Errorf("%w %d (sent %d)", ErrTagMismatch, rep.Tag, req.Tag)}
	}
	if rep.Status != StatusOK {
		return Reply{}, &Error{Op: "reply", Path: path, Reply: rep, Err: ErrInternal}
	}
	return rep, nil
}

// dialRetry connects to the unix socket path, retrying EAGAIN (full
// backlog) for up to ConnectRetry.
func dialRetry(ctx context.Context, path string) (*net.UnixConn, error) {
	deadline := time.Now().Add(ConnectRetry)
	addr := &net.UnixAddr{Name: path, Net: "unix"}
	for {
		var d net.Dialer
		c, err := d.DialContext(ctx, "unix", addr.String())
		if err == nil {
			return c.(*net.UnixConn), nil
		}
		if !errors.Is(err, syscall.EAGAIN) || time.Now().After(deadline) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}
