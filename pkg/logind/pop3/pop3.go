// Package pop3 is loginsvc's pre-login POP3 (Dovecot 2.3's pop3-login):
// command names as pop3-login reads them (at most 8 characters), 3
// consecutive bad commands end the session, and authentication (auth.go:
// CAPA's USER and SASL lines, USER/PASS, AUTH with an initial response
// and "+ " continuations, the bare AUTH listing, Dovecot's -ERR [AUTH]
// and [SYS/TEMP] replies). A logged-in client is handed to Dovecot's
// pop3 service with no prefix; pop3 answers "+OK Logged in."
// (docs/loginsvc.md). XCLIENT from login_trusted_networks: xclient.go.
package pop3

import (
	"bytes"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/ipc"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login/input"
)

// Protocol is POP3 as a login.Protocol.
type Protocol struct {
	// Auth, if set, is what sessions authenticate through instead of
	// their Client (transcript tests: logintest.FakeAuth).
	Auth login.AuthVia
}

// Name is "pop3", what the access sockets receive.
func (Protocol) Name() string { return "pop3" }

// NewSession starts a client's POP3 state.
func (p Protocol) NewSession(c *login.Client) login.Session {
	return &session{c: c, a: p.Auth.For(c)}
}

// maxCmdLen is pop3-login's CLIENT_MAX_CMD_LEN: a longer command name is
// cut there, the rest of it taken as its arguments.
const maxCmdLen = 8

// session is one client's POP3 state.
type session struct {
	c       *login.Client
	a       login.Authenticator // c, or a test's fake
	bad     int                 // consecutive bad commands
	user    string              // USER's argument, for PASS
	hasUser bool
}

func (s *session) Greeting() string {
	return "+OK " + xclientGreeting(s.c) + s.c.LoginGreeting() + "\r\n"
}

// Next reads a command as pop3-login does: its name first (upper-cased,
// ended by a space, LF or NUL, or cut at 8 characters; CRs skipped), one
// space after it consumed; AUTH then reads its arguments itself (an
// initial response may be up to 8192 bytes), the others get the rest of
// the line.
func (s *session) Next(in *input.Buffer) (string, login.Ending, error) {
	name, err := readName(in)
	if err != nil {
		return "", login.Ending{}, err
	}
	if name == "AUTH" {
		return s.auth(in)
	}
	line, err := in.Line()
	if err != nil {
		return "", login.Ending{}, err
	}
	args := string(bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r")))
	reply, end, ok := s.command(name, args)
	if ok {
		s.bad = 0
		return reply, end, nil
	}
	s.bad++
	if s.bad >= 3 {
		// Dovecot 2.3.19.1 logs "Disconnected: Disconnected: Too many
		// bad commands", the reason with its own prefix.
		return reply + "-ERR Too many invalid bad commands.\r\n", login.Ending{Why: "Disconnected: Too many bad commands", Reason: ipc.CloseError}, nil
	}
	return reply, end, nil
}

// readName consumes a command's name and the space after it.
func readName(in *input.Buffer) (string, error) {
	for {
		d := in.Data()
		var name []byte
		for i, ch := range d {
			if ch == '\r' {
				continue
			}
			if ch == ' ' || ch == '\n' || ch == 0 || i >= maxCmdLen {
				if ch == ' ' {
					i++
				}
				in.Skip(i)
				return string(bytes.ToUpper(name)), nil
			}
			name = append(name, ch)
		}
		if err := in.Fill(); err != nil {
			return "", err
		}
	}
}

// command runs a command other than AUTH; ok is false for an unknown
// one (a bad command).
func (s *session) command(name, args string) (string, login.Ending, bool) {
	switch name {
	case "CAPA":
		return s.capa(), login.Ending{}, true
	case "USER":
		reply, end := s.cmdUser(args)
		return reply, end, true
	case "PASS":
		reply, end := s.cmdPass(args)
		return reply, end, true
	case "XCLIENT", "XOIP": // xclient.go
		return xclient(s.c, name, args), login.Ending{}, true
	case "APOP":
		// The APOP challenge is only in the greeting of a Dovecot whose
		// auth has the APOP mechanism; without it pop3-login answers so.
		return "-ERR APOP not enabled.\r\n", login.Ending{}, true
	case "QUIT":
		return "+OK Logging out\r\n", login.EndLogout, true
	case "STLS":
		switch {
		case s.c.TLSActive():
			return "-ERR TLS is already active.\r\n", login.Ending{}, true
		case !s.c.TLSOffered():
			return "-ERR TLS support isn't enabled.\r\n", login.Ending{}, true
		}
		s.c.StartTLS()
		return "+OK Begin TLS negotiation now.\r\n", login.Ending{}, true
	}
	return "-ERR Unknown command.\r\n", login.Ending{}, false
}

func (s *session) Notice(n login.Notice) string {
	switch n {
	case login.NoticeEvicted:
		return "-ERR Connection queue full\r\n"
	case login.NoticeTimeout:
		return "-ERR Disconnected for inactivity.\r\n"
	case login.NoticeShutdown:
		return "-ERR Shutting down\r\n"
	case login.NoticeInputFull:
		return "-ERR Input buffer full, aborting\r\n"
	case login.NoticeInternalError: // pop3_client_notify_disconnect: a temporary failure
		return "-ERR [SYS/TEMP] " + login.InternalFailureText + "\r\n"
	}
	// NoticeAuthWaiting: pop3-login has no status notification.
	return ""
}
