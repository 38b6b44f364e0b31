package dovecotsock

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// MaxRequest is the size of the request buffer in bytes, as in Dovecot's
// tcpwrap (src/util/tcpwrap.c). A valid request is shorter than MaxRequest:
// a message that fills the buffer is rejected.
const MaxRequest = 1024

// Errors returned by DecodeRequest, wrapped with the request length. They
// are the three ways a message fails Dovecot's test
// "1 < length < 1024 and the last byte is a newline".
var (
	// ErrRequestTooShort: the message is empty or a lone "\n" (length <= 1).
	ErrRequestTooShort = errors.New("request too short")
	// ErrRequestTooLong: the message filled the 1024-byte buffer.
	ErrRequestTooLong = errors.New("request too long")
	// ErrNoNewline: the last byte is not "\n" (no newline at all, a split
	// write such as "im" then "ap\n", or trailing data as in "imap\nextra").
	ErrNoNewline = errors.New("request does not end in a newline")
)

// DecodeRequest validates one request message as Dovecot's tcpwrap does and
// returns the daemon name: every byte before the final "\n" (so "imap\r\n"
// gives "imap\r"), cut at the first NUL byte because libwrap keeps the name
// as a C string. The message is valid iff 1 < len(msg) < MaxRequest and its
// last byte is '\n'; otherwise the error wraps ErrRequestTooShort,
// ErrRequestTooLong or ErrNoNewline. It is safe for concurrent use.
func DecodeRequest(msg []byte) (string, error) {
	switch n := len(msg); {
	case n <= 1:
		return "", fmt.Errorf("%d bytes: %w", n, ErrRequestTooShort)
	case n >= MaxRequest:
		return "", fmt.Errorf("%d bytes: %w", n, ErrRequestTooLong)
	case msg[n-1] != '\n':
		return "", fmt.Errorf("%d bytes: %w", n, ErrNoNewline)
	}
	name := msg[:len(msg)-1]
	if i := bytes.IndexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	return string(name), nil
}

// message is what one recvmsg returned: the data and every file descriptor
// that came with it (all of them owned by the receiver, close-on-exec).
type message struct {
	buf       *[]byte // from bufPool; data points into it
	data      []byte
	fds       []int
	truncated bool // MSG_CTRUNC: the kernel dropped ancillary data
}

// bufPool recycles request buffers (data and control space), so that a
// check allocates no kilobyte buffer for the garbage collector to chase.
var bufPool = sync.Pool{New: func() any {
	b := make([]byte, MaxRequest+oobSpace)
	return &b
}}

// release returns the message's buffer to the pool; m.data is invalid
// afterwards.
func (m *message) release() {
	if m.buf != nil {
		bufPool.Put(m.buf)
		m.buf, m.data = nil, nil
	}
}

// closeFDs closes every received descriptor that is still open.
func (m *message) closeFDs() {
	for i, fd := range m.fds {
		if fd >= 0 {
			unix.Close(fd)
			m.fds[i] = -1
		}
	}
}

// oobSpace is the control buffer size: room for one descriptor, as
// Dovecot's fd_read (src/lib/fdpass.c). On 64-bit Linux the alignment
// leaves room for a second one, which is then received and closed.
var oobSpace = unix.CmsgSpace(4)

// readMessage performs one recvmsg on c, honouring c's read deadline, with
// MSG_CMSG_CLOEXEC so no received descriptor leaks into a child. End of file
// is an empty message with a nil error. On error, no descriptor is kept.
func readMessage(c *net.UnixConn) (message, error) {
	var m message
	// One buffer for data and control; the net package's ReadMsgUnix
	// passes MSG_CMSG_CLOEXEC on Linux and waits in the poller.
	bp := bufPool.Get().(*[]byte)
	buf := *bp
	m.buf = bp
	n, oobn, flags, _, err := c.ReadMsgUnix(buf[:MaxRequest], buf[MaxRequest:])
	if oobn > 0 {
		// Collect descriptors even on error so that none leaks.
		if cmsgs, perr := unix.ParseSocketControlMessage(buf[MaxRequest : MaxRequest+oobn]); perr == nil {
			for i := range cmsgs {
				if fds, ferr := unix.ParseUnixRights(&cmsgs[i]); ferr == nil {
					m.fds = append(m.fds, fds...)
				}
			}
		}
	}
	m.truncated = flags&unix.MSG_CTRUNC != 0
	if err != nil {
		m.closeFDs()
		m.release()
		if errors.Is(err, io.EOF) {
			return message{}, nil
		}
		return message{}, err
	}
	m.data = buf[:n]
	return m, nil
}

// isGone reports whether err means the client went away: EPIPE,
// ECONNRESET or a closed connection. Such errors are harmless.
func isGone(err error) bool {
	return errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, net.ErrClosed)
}
