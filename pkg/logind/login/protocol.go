package login

import (
	"bytes"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/ipc"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login/input"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login/sasl"
)

// Protocol is one pre-login protocol (Dovecot's imap-login, pop3-login,
// ...): pkg/logind/imap, pop3, submission and managesieve implement it,
// and cmd/loginsvc lists them. A login process serves the Protocol whose
// Name its service has.
type Protocol interface {
	// Name is the protocol's name as the login_access_sockets receive
	// it: imap, pop3, submission or sieve.
	Name() string
	// NewSession starts the protocol's state for a new client. The
	// session may keep c, and use what its methods offer; nothing else
	// of the process.
	NewSession(c *Client) Session
}

// Session is one client's pre-login protocol state. Its methods are
// called by the client's serving goroutine only.
type Session interface {
	// Greeting is the greeting, written once the client has passed the
	// access checks (and, on an ssl = yes listener, its TLS handshake).
	Greeting() string
	// Next reads one command from in and runs it. reply is written to
	// the client (also when err is not nil); end, if set, ends the
	// session after the reply; err is an input error (end of stream, a
	// deadline, input.ErrFull, input.ErrAuthTooLarge, ...).
	Next(in *input.Buffer) (reply string, end Ending, err error)
	// Notice is the last line(s) to a client closed by the process for
	// n ("" for none).
	Notice(n Notice) string
}

// TLSGreeter is a Session that says something once the TLS handshake
// after its STARTTLS is done (ManageSieve sends its capabilities again).
type TLSGreeter interface {
	// AfterTLS is written to the client over TLS, before its next
	// command is read.
	AfterTLS() string
}

// Notice says why the process closes a client, for Session.Notice.
type Notice uint8

const (
	NoticeEvicted   Notice = iota + 1 // evicted at the limit ("Connection queue full")
	NoticeTimeout                     // the pre-login deadline passed
	NoticeShutdown                    // the service is shutting down
	NoticeInputFull                   // a command did not fit in the input buffer
	// NoticeInternalError: the hand-off to the post-login service
	// failed; the client is closed with Dovecot's internal-error text,
	// InternalFailureText (client_notify_disconnect with
	// CLIENT_DISCONNECT_INTERNAL_ERROR): IMAP "* BYE [UNAVAILABLE]
	// TEXT", POP3 "-ERR [SYS/TEMP] TEXT", submission "421 4.0.0 HOST
	// TEXT", ManageSieve BYE "TEXT".
	NoticeInternalError
	// NoticeAuthWaiting: auth has not answered for 10 s; a status line,
	// not a goodbye (client_notify_status): IMAP "* OK Waiting for
	// authentication process to respond..", AuthWaitingText; POP3,
	// submission and ManageSieve say nothing ("").
	NoticeAuthWaiting
)

// Dovecot's texts for NoticeInternalError and NoticeAuthWaiting.
const (
	InternalFailureText = sasl.InternalFailureText
	AuthWaitingText     = sasl.AuthWaitingText
)

// noticeFor is the notice for a client closed for r (0: none).
func noticeFor(r ipc.CloseReason) Notice {
	switch r {
	case ipc.CloseEvicted:
		return NoticeEvicted
	case ipc.CloseTimeout:
		return NoticeTimeout
	case ipc.CloseShutdown:
		return NoticeShutdown
	}
	return 0
}

// Ending says why a command ends the session: Why is Dovecot's
// disconnect reason (logged), Reason what the supervisor is told. The
// zero Ending goes on.
type Ending struct {
	Why    string
	Reason ipc.CloseReason
}

// EndLogout ends a session at the client's LOGOUT or QUIT.
var EndLogout = Ending{"Aborted login by logging out", ipc.CloseNormal}

// LineCommand reads one line (the line protocols: POP3, submission,
// ManageSieve) and runs it, CRLF removed, with command.
func LineCommand(in *input.Buffer, command func(line string) (string, Ending)) (string, Ending, error) {
	line, err := in.Line()
	if err != nil {
		return "", Ending{}, err
	}
	reply, end := command(string(bytes.TrimRight(line, "\r\n")))
	return reply, end, nil
}
