// Package managesieve is loginsvc's pre-login ManageSieve (Pigeonhole's
// managesieve-login for Dovecot 2.3): line commands, 3 bad commands end
// the session, STARTTLS (the capabilities again after the handshake),
// and authentication (auth.go: AUTHENTICATE with a quoted-string or
// literal initial response and continuations, "SASL" with auth's
// mechanisms, Pigeonhole's NO texts and response codes). A logged-in
// client is handed to Dovecot's managesieve service with no prefix;
// managesieve answers OK "Logged in." (docs/loginsvc.md). Its protocol
// name, as the access sockets and the hand-off socket ("sieve") have
// it, is "sieve".
package managesieve

import (
	"bytes"
	"strconv"
	"strings"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/ipc"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login/input"
)

// Protocol is ManageSieve as a login.Protocol.
type Protocol struct {
	// Auth, if set, is what sessions authenticate through instead of
	// their Client (transcript tests: logintest.FakeAuth).
	Auth login.AuthVia
}

// Name is "sieve", what the access sockets receive.
func (Protocol) Name() string { return "sieve" }

// NewSession starts a client's ManageSieve state.
func (p Protocol) NewSession(c *login.Client) login.Session {
	return &session{c: c, a: p.Auth.For(c)}
}

// session is one client's ManageSieve state.
type session struct {
	c   *login.Client
	a   login.Authenticator // c, or a test's fake
	bad int                 // bad commands, cumulative
	// respErr is the text of a malformed continuation, which ends the
	// authentication (auth.go).
	respErr string
}

// caps is the capability list, as managesieve-login sends it in the
// greeting, for CAPABILITY and after STARTTLS: SASL with the mechanisms
// that may be used now, STARTTLS while TLS can be started.
func (s *session) caps() string {
	var b strings.Builder
	b.WriteString("\"IMPLEMENTATION\" \"loginsvc\"\r\n\"SIEVE\" \"\"\r\n")
	b.WriteString("\"SASL\" \"" + strings.Join(s.a.Mechanisms(), " ") + "\"\r\n")
	if s.c.TLSOffered() && !s.c.TLSActive() {
		b.WriteString("\"STARTTLS\"\r\n")
	}
	b.WriteString("\"VERSION\" \"1.0\"\r\n")
	return b.String()
}

// AfterTLS is the capabilities again once STARTTLS's handshake is done,
// as managesieve-login sends them (login.TLSGreeter).
func (s *session) AfterTLS() string {
	return s.caps() + "OK \"TLS negotiation successful.\"\r\n"
}

func (s *session) Greeting() string {
	return s.caps() + "OK " + quote(s.c.LoginGreeting()) + "\r\n"
}

// Next reads a command: AUTHENTICATE with its string arguments (auth.go),
// the others as a line.
func (s *session) Next(in *input.Buffer) (string, login.Ending, error) {
	name, err := peekWord(in)
	if err != nil {
		return "", login.Ending{}, err
	}
	if strings.EqualFold(name, "AUTHENTICATE") {
		in.Skip(len(name))
		return s.authenticate(in)
	}
	return login.LineCommand(in, s.command)
}

// peekWord returns the command name (up to a space or the line's end)
// without consuming it.
func peekWord(in *input.Buffer) (string, error) {
	for {
		d := in.Data()
		if i := bytes.IndexAny(d, " \r\n"); i >= 0 {
			return string(d[:i]), nil
		}
		if in.Full() {
			return string(d), nil
		}
		if err := in.Fill(); err != nil {
			return "", err
		}
	}
}

func (s *session) command(line string) (string, login.Ending) {
	cmd, args, _ := strings.Cut(line, " ")
	switch strings.ToUpper(cmd) {
	case "CAPABILITY":
		if args == "" {
			return s.caps() + "OK \"Capability completed.\"\r\n", login.Ending{}
		}
	case "NOOP":
		return s.noop(args)
	case "LOGOUT":
		if args == "" {
			return "OK \"Logout completed.\"\r\n", login.EndLogout
		}
	case "STARTTLS":
		if args != "" {
			break
		}
		switch {
		case s.c.TLSActive():
			return "NO \"TLS is already active.\"\r\n", login.Ending{}
		case !s.c.TLSOffered():
			return "NO \"TLS support isn't enabled.\"\r\n", login.Ending{}
		}
		s.c.StartTLS()
		return "OK \"Begin TLS negotiation now.\"\r\n", login.Ending{}
	}
	return s.badCommand()
}

// noop answers NOOP, and NOOP "tag" with the tag echoed.
func (s *session) noop(args string) (string, login.Ending) {
	if args == "" {
		return "OK \"NOOP Completed\"\r\n", login.Ending{}
	}
	tag, rest, ok := quoted(args)
	if !ok || strings.TrimLeft(rest, " ") != "" {
		if !ok && !strings.HasPrefix(args, "\"") {
			return "NO \"Invalid echo tag.\"\r\n", login.Ending{}
		}
		return s.badCommand()
	}
	return "OK (TAG " + quote(tag) + ") \"Done\"\r\n", login.Ending{}
}

// badCommand counts a bad command; the third ends the session.
func (s *session) badCommand() (string, login.Ending) {
	s.bad++
	if s.bad >= 3 {
		return "BYE \"Too many invalid MANAGESIEVE commands.\"\r\n", login.Ending{Why: "Too many invalid commands", Reason: ipc.CloseError}
	}
	return "NO \"Error in MANAGESIEVE command received by server.\"\r\n", login.Ending{}
}

func (s *session) Notice(n login.Notice) string {
	switch n {
	case login.NoticeEvicted:
		return "BYE \"Connection queue full\"\r\n"
	case login.NoticeTimeout:
		return "BYE \"Disconnected for inactivity.\"\r\n"
	case login.NoticeShutdown:
		return "BYE (TRYLATER) \"Shutting down\"\r\n"
	case login.NoticeInputFull:
		return "BYE \"Input buffer full, aborting\"\r\n"
	case login.NoticeInternalError:
		return "BYE " + quote(login.InternalFailureText) + "\r\n"
	}
	// NoticeAuthWaiting: managesieve-login sends nothing (ManageSieve
	// has no untagged responses).
	return ""
}

// quote is a ManageSieve string as Pigeonhole's
// managesieve_quote_append_string writes it: quoted with '"' and '\'
// escaped, runs of spaces and tabs made one space and leading ones
// dropped; a literal if it has a line break.
func quote(s string) string {
	if strings.ContainsAny(s, "\r\n") {
		return "{" + strconv.Itoa(len(s)) + "}\r\n" + s
	}
	var b strings.Builder
	b.WriteByte('"')
	lwsp := true
	for i := 0; i < len(s); i++ {
		switch ch := s[i]; ch {
		case ' ', '\t':
			if !lwsp {
				b.WriteByte(' ')
			}
			lwsp = true
		case '"', '\\':
			b.WriteByte('\\')
			b.WriteByte(ch)
			lwsp = false
		default:
			b.WriteByte(ch)
			lwsp = false
		}
	}
	b.WriteByte('"')
	return b.String()
}
