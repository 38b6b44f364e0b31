// Package submission is loginsvc's pre-login submission (Dovecot 2.3's
// submission-login, an SMTP server of lib-smtp): SMTP line commands as
// lib-smtp parses them, the bad command after the tenth ends the
// session, STARTTLS, and authentication (auth.go:
// EHLO's AUTH line, AUTH with an initial response and 334
// continuations, Dovecot's reply codes). A logged-in client is handed
// to Dovecot's submission service with the EHLO domain as prefix;
// submission answers "235 2.7.0 Logged in." and runs the commands
// pipelined after AUTH (docs/loginsvc.md).
package submission

import (
	"bytes"
	"strings"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/ipc"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login/input"
)

// Protocol is submission as a login.Protocol.
type Protocol struct {
	// Auth, if set, is what sessions authenticate through instead of
	// their Client (transcript tests: logintest.FakeAuth).
	Auth login.AuthVia
}

// Name is "submission", what the access sockets receive.
func (Protocol) Name() string { return "submission" }

// NewSession starts a client's submission state.
func (p Protocol) NewSession(c *login.Client) login.Session {
	return &session{c: c, a: p.Auth.For(c)}
}

// session is one client's submission state.
type session struct {
	c   *login.Client
	a   login.Authenticator // c, or a test's fake
	bad int                 // bad commands, cumulative
	// helo is the domain of the last EHLO or HELO if it was valid (the
	// hand-off's prefix), "" if none.
	helo string
}

func (s *session) Greeting() string {
	return "220 " + s.c.Hostname() + " " + s.c.LoginGreeting() + "\r\n"
}

// Next reads a command line; AUTH's may be longer (its initial response
// up to 8192 bytes).
func (s *session) Next(in *input.Buffer) (string, login.Ending, error) {
	isAuth, err := peekAuth(in)
	if err != nil {
		return "", login.Ending{}, err
	}
	if isAuth {
		line, err := in.AuthLine()
		if err != nil {
			return "", login.Ending{}, err
		}
		reply, end := s.command(line)
		return reply, end, nil
	}
	return login.LineCommand(in, s.command)
}

// peekAuth reports whether the next command is AUTH (its name followed
// by a space or the line's end), without consuming it.
func peekAuth(in *input.Buffer) (bool, error) {
	for {
		d := in.Data()
		if len(d) > len("AUTH") || bytes.IndexByte(d, '\n') >= 0 {
			return len(d) > len("AUTH") && bytes.EqualFold(d[:4], []byte("AUTH")) &&
				(d[4] == ' ' || d[4] == '\r' || d[4] == '\n'), nil
		}
		if err := in.Fill(); err != nil {
			return false, err
		}
	}
}

// tlsRequired refuses a command before STARTTLS under ssl = required.
const tlsRequired = "530 5.7.0 TLS required.\r\n"

// command runs a command line as lib-smtp parses it: the name is
// letters (anything else after them is "Invalid command syntax", a bad
// command), one space, the parameters (trailing blanks dropped).
func (s *session) command(line string) (string, login.Ending) {
	h := s.c.Hostname()
	i := 0
	for i < len(line) && (line[i] >= 'a' && line[i] <= 'z' || line[i] >= 'A' && line[i] <= 'Z') {
		i++
	}
	cmd, params := strings.ToUpper(line[:i]), strings.TrimRight(line[i:], " \t")
	if params != "" && (params[0] != ' ' || len(params) > 1 && params[1] == ' ') {
		return s.badCommand("500 5.5.2 Invalid command syntax\r\n")
	}
	params = strings.TrimPrefix(params, " ")
	switch cmd {
	case "EHLO", "STARTTLS", "NOOP", "QUIT": // allowed before TLS
	case "HELO", "AUTH", "RSET", "MAIL", "RCPT", "DATA", "BDAT", "VRFY":
		if s.c.TLSRequired() {
			return tlsRequired, login.Ending{}
		}
	}
	switch cmd {
	case "EHLO":
		if params == "" {
			return "501 Missing hostname\r\n", login.Ending{}
		}
		s.helo = heloDomain(params, true)
		return s.ehlo(), login.Ending{}
	case "HELO":
		if params == "" {
			return "501 Missing hostname\r\n", login.Ending{}
		}
		s.helo = heloDomain(params, false)
		return "250 " + h + "\r\n", login.Ending{}
	case "STARTTLS":
		switch {
		case s.c.TLSActive():
			return "502 5.5.1 TLS is already active.\r\n", login.Ending{}
		case !s.c.TLSOffered():
			return "502 5.5.1 TLS support is not enabled.\r\n", login.Ending{}
		case params != "":
			return "501 5.5.4 Invalid parameters\r\n", login.Ending{}
		}
		// The client says EHLO again over TLS.
		s.helo = ""
		s.c.StartTLS()
		return "220 2.0.0 Begin TLS negotiation now.\r\n", login.Ending{}
	case "AUTH":
		return s.auth(params)
	case "NOOP":
		return "250 2.0.0 OK\r\n", login.Ending{}
	case "RSET", "QUIT":
		if params != "" {
			return "501 5.5.4 Invalid parameters\r\n", login.Ending{}
		}
		if cmd == "QUIT" {
			return "221 2.0.0 Bye\r\n", login.EndLogout
		}
		return "250 2.0.0 OK\r\n", login.Ending{}
	case "MAIL", "RCPT", "DATA", "BDAT", "VRFY":
		return "530 5.7.0 Authentication required.\r\n", login.Ending{}
	}
	return s.badCommand("500 5.5.1 Unknown command\r\n")
}

// maxBadCommands is submission-login's CLIENT_MAX_BAD_COMMANDS: the
// bad command after the tenth ends the session.
const maxBadCommands = 10

// badCommand counts a bad command (unknown, or bad syntax) answered
// reply.
func (s *session) badCommand(reply string) (string, login.Ending) {
	s.bad++
	if s.bad > maxBadCommands {
		return "421 4.7.0 " + s.c.Hostname() + " Too many invalid commands.\r\n", login.Ending{Why: "Too many invalid commands", Reason: ipc.CloseError}
	}
	return reply, login.Ending{}
}

// ehlo is EHLO's answer, in submission-login's order with its default
// backend capabilities (8BITMIME): AUTH with the mechanisms that may be
// used now, unless TLS must come first; STARTTLS while TLS can be
// started.
func (s *session) ehlo() string {
	var b strings.Builder
	b.WriteString("250-" + s.c.Hostname() + "\r\n250-8BITMIME\r\n")
	if !s.c.TLSRequired() {
		// "AUTH " with nothing after it when no mechanism may be used,
		// as lib-smtp writes it.
		b.WriteString("250-AUTH " + strings.Join(s.a.Mechanisms(), " ") + "\r\n")
	}
	b.WriteString("250-BURL imap\r\n250-CHUNKING\r\n250-ENHANCEDSTATUSCODES\r\n250-SIZE\r\n")
	if s.c.TLSOffered() && !s.c.TLSActive() {
		b.WriteString("250-STARTTLS\r\n")
	}
	b.WriteString("250 PIPELINING\r\n")
	return b.String()
}

func (s *session) Notice(n login.Notice) string {
	h := s.c.Hostname()
	switch n {
	case login.NoticeEvicted:
		return "421 4.3.2 " + h + " Connection queue full\r\n"
	case login.NoticeTimeout:
		return "421 4.4.2 " + h + " Disconnected for inactivity\r\n"
	case login.NoticeShutdown:
		return "421 4.3.2 " + h + " Shutting down\r\n"
	case login.NoticeInputFull:
		return "500 5.5.2 Line too long\r\n"
	case login.NoticeInternalError: // submission_client_notify_disconnect: 4.0.0
		return "421 4.0.0 " + h + " " + login.InternalFailureText + "\r\n"
	}
	// NoticeAuthWaiting: submission-login has no status notification.
	return ""
}
