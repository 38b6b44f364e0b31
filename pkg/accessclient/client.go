// Package accessclient asks a login access-check socket whether a client
// connection may proceed, exactly as Dovecot 2.3's login processes do
// (src/login-common/access-lookup.c): connect to the unix socket, send
// "<name>\n" with the client's TCP socket as one SCM_RIGHTS fd in a single
// sendmsg, read once, and accept only the exact reply "1\n". It works with
// tcpwrapd and with Dovecot's own tcpwrap service.
package accessclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"
)

// DefaultTimeout is Dovecot's per-socket reply timeout (60 s).
const DefaultTimeout = 60 * time.Second

// Verdict is an access socket's answer.
type Verdict int

const (
	// Refused: the socket answered "0\n", closed without a reply, or
	// answered anything other than exactly "1\n" (fail closed).
	Refused Verdict = iota
	// Allowed: the socket answered exactly "1\n".
	Allowed
)

// String returns "allowed" or "refused".
func (v Verdict) String() string {
	if v == Allowed {
		return "allowed"
	}
	return "refused"
}

// ErrInvalidInput is returned with Refused when the reply was neither
// "1\n", "0\n" nor EOF; Dovecot logs it as "access(SOCKET): Invalid input".
var ErrInvalidInput = errors.New("invalid input")

// ErrTimeout is returned with Refused when no reply came in time; Dovecot
// logs "access(SOCKET): Timed out while waiting for reply".
var ErrTimeout = errors.New("timed out while waiting for reply")

// ErrNotAsked matches (errors.Is) the errors of Ask that mean the socket
// was never asked: connecting to it or sending the request failed
// (Dovecot's "connect(SOCKET) failed" / "fd_send(SOCKET) failed"). The
// Refused that comes with it is no verdict of the socket's.
var ErrNotAsked = errors.New("access socket not asked")

// notAskedError is a connect or send failure: its text is Dovecot's, and
// it matches both ErrNotAsked and the system error.
type notAskedError struct {
	op, path string
	err      error
}

func (e *notAskedError) Error() string   { return fmt.Sprintf("%s(%s) failed: %v", e.op, e.path, e.err) }
func (e *notAskedError) Unwrap() []error { return []error{ErrNotAsked, e.err} }

// Ask asks the access socket at path whether the client connection conn
// may proceed, sending name (the login protocol: "imap", "pop3",
// "submission", "sieve"). conn must be the accepted, server-side TCP
// connection: the service judges its peer and local addresses. conn stays
// usable afterwards. timeout <= 0 means DefaultTimeout; ctx cancels too.
//
// Ask returns Allowed only for the exact reply "1\n". EOF and "0\n" give
// Refused with a nil error; other replies give ErrInvalidInput, a missing
// reply ErrTimeout, and a failed connect or send an error matching
// ErrNotAsked and the system error (Dovecot's "connect(SOCKET) failed" /
// "fd_send(SOCKET) failed"), all with Refused.
func Ask(ctx context.Context, path, name string, conn syscall.Conn, timeout time.Duration) (Verdict, error) {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return Refused, &notAskedError{"connect", path, errors.Unwrap(err)}
	}
	uc := c.(*net.UnixConn)
	defer uc.Close()
	if dl, ok := ctx.Deadline(); ok {
		uc.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { uc.SetDeadline(time.Now()) })
	defer stop()
	raw, err := conn.SyscallConn()
	if err != nil {
		return Refused, &notAskedError{"fd_send", path, err}
	}
	var sendErr error
	if err := raw.Control(func(fd uintptr) {
		_, _, sendErr = uc.WriteMsgUnix([]byte(name+"\n"), syscall.UnixRights(int(fd)), nil)
	}); err != nil {
		return Refused, &notAskedError{"fd_send", path, err}
	}
	if sendErr != nil {
		return Refused, &notAskedError{"fd_send", path, sendErr}
	}
	var buf [3]byte
	n, err := uc.Read(buf[:])
	switch {
	case n == 2 && buf[0] == '1' && buf[1] == '\n':
		return Allowed, nil
	case n == 2 && buf[0] == '0' && buf[1] == '\n':
		return Refused, nil
	case n == 0 && err != nil:
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return Refused, ErrTimeout
		}
		if errors.Is(err, io.EOF) {
			return Refused, nil
		}
		if errors.Is(err, syscall.ECONNRESET) {
			return Refused, fmt.Errorf("read(%s) failed: %w", path, err)
		}
		return Refused, nil
	}
	return Refused, ErrInvalidInput
}
