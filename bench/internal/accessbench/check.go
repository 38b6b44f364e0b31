package accessbench

import (
	"errors"
	"fmt"
	"syscall"
	"time"
)

// Outcome classifies the answer to one check.
type Outcome int

const (
	// Allow: the service replied exactly "1\n".
	Allow Outcome = iota
	// Deny: the service replied exactly "0\n".
	Deny
	// Failed: anything else (connect or send error, EOF, timeout, a reply
	// other than exactly "1\n" or "0\n"). A login treats these as deny.
	Failed
)

// String returns "allow", "deny" or "failed".
func (o Outcome) String() string {
	switch o {
	case Allow:
		return "allow"
	case Deny:
		return "deny"
	default:
		return "failed"
	}
}

// CheckError describes a failed check. Kind is a short stable word used to
// count failures ("socket", "connect", "sendmsg", "read", "timeout", "eof",
// "invalid").
type CheckError struct {
	Kind string
	Err  error  // the system call error, or nil
	Got  []byte // the reply bytes for "invalid"
}

// Error formats the kind with the system error or the reply bytes.
func (e *CheckError) Error() string {
	switch {
	case e.Err != nil:
		return e.Kind + ": " + e.Err.Error()
	case e.Got != nil:
		return fmt.Sprintf("%s reply %q", e.Kind, e.Got)
	default:
		return e.Kind
	}
}

// Unwrap returns the system call error, if any.
func (e *CheckError) Unwrap() error { return e.Err }

// Checker sends access checks to one unix socket. It holds no connection
// between checks: each Check opens, uses and closes its own socket, as a
// login does. A Checker is safe for concurrent use.
type Checker struct {
	addr    syscall.SockaddrUnix
	msg     []byte
	timeout syscall.Timeval
}

// NewChecker returns a Checker for the socket at path that sends name+"\n"
// (e.g. "imap") and gives each reply at most timeout (zero means wait
// forever; Dovecot logins wait 60 s).
func NewChecker(path, name string, timeout time.Duration) *Checker {
	return &Checker{
		addr:    syscall.SockaddrUnix{Name: path},
		msg:     []byte(name + "\n"),
		timeout: syscall.NsecToTimeval(timeout.Nanoseconds()),
	}
}

// Check passes fd (an accepted TCP socket; -1 sends no fd) with one request
// and returns the classified reply. err is a *CheckError when the outcome is
// Failed and nil otherwise. fd stays open and owned by the caller.
func (c *Checker) Check(fd int) (Outcome, error) {
	s, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return Failed, &CheckError{Kind: "socket", Err: err}
	}
	defer syscall.Close(s)
	if c.timeout.Sec != 0 || c.timeout.Usec != 0 {
		if err := syscall.SetsockoptTimeval(s, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &c.timeout); err != nil {
			return Failed, &CheckError{Kind: "socket", Err: err}
		}
	}
	for {
		err = syscall.Connect(s, &c.addr)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		return Failed, &CheckError{Kind: "connect", Err: err}
	}
	var oob []byte
	if fd >= 0 {
		oob = syscall.UnixRights(fd)
	}
	for {
		err = syscall.Sendmsg(s, c.msg, oob, nil, 0)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		return Failed, &CheckError{Kind: "sendmsg", Err: err}
	}
	var buf [3]byte
	var n int
	for {
		n, err = syscall.Read(s, buf[:])
		if err != syscall.EINTR {
			break
		}
	}
	switch {
	case errors.Is(err, syscall.EAGAIN):
		return Failed, &CheckError{Kind: "timeout"}
	case err != nil:
		return Failed, &CheckError{Kind: "read", Err: err}
	case n == 0:
		return Failed, &CheckError{Kind: "eof"}
	case n == 2 && buf[0] == '1' && buf[1] == '\n':
		return Allow, nil
	case n == 2 && buf[0] == '0' && buf[1] == '\n':
		return Deny, nil
	}
	return Failed, &CheckError{Kind: "invalid", Got: append([]byte(nil), buf[:n]...)}
}
