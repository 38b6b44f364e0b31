// Package imap is loginsvc's pre-login IMAP (Dovecot 2.3's imap-login):
// the greeting, the commands as imap-login reads them (command.go:
// literals, synchronizing and LITERAL+, a 1026-byte input buffer, 8192
// bytes per command, Dovecot's error texts, tags never echoed when
// invalid), and its answers. LOGIN and AUTHENTICATE (SASL-IR,
// multi-step, "*" to abort) go through Dovecot's auth and hand the client
// to Dovecot's imap (login.Client.Authenticate; auth.go here words the
// replies as imap-login's client-authenticate.c does). The capabilities
// list AUTH=<mechanism> for what auth offers now and LOGINDISABLED when
// plaintext authentication is not allowed (docs/loginsvc.md, "IMAP
// commands").
package imap

import (
	"slices"
	"strings"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/ipc"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login/input"
)

// Protocol is IMAP as a login.Protocol.
type Protocol struct{}

// Name is "imap", what the access sockets receive.
func (Protocol) Name() string { return "imap" }

// NewSession starts a client's IMAP state.
func (Protocol) NewSession(c *login.Client) login.Session { return &session{c: c} }

// Capabilities is the pre-login capability list before STARTTLS,
// LOGINDISABLED and the AUTH= mechanisms (Dovecot's order).
const Capabilities = "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+"

// MaxBadCommands is Dovecot's CLIENT_MAX_BAD_COMMANDS (3), counted
// cumulatively for IMAP.
const MaxBadCommands = 3

// session is one client's IMAP state.
type session struct {
	c   *login.Client
	bad int        // bad commands, cumulative
	r   imapReader // the command reader, set at the first command
	// idDone: an ID command has completed (only the first one's x-*
	// fields count, as in Dovecot; id.go).
	idDone bool
	// capSent: CAPABILITY was asked before any STARTTLS (the hand-off
	// prefix tells imap to answer with an untagged CAPABILITY);
	// starttls: STARTTLS was accepted.
	capSent, starttls bool
}

// caps is the pre-login capability list as imap-login's
// get_capability writes it: STARTTLS while TLS is available (ssl != no)
// and not active, LOGINDISABLED when LOGIN would be refused (plaintext
// not allowed, or secured without a PLAIN mechanism), then AUTH= for
// each mechanism that may be used now.
func (s *session) caps() string {
	c := Capabilities
	if s.c.TLSOffered() && !s.c.TLSActive() {
		c += " STARTTLS"
	}
	mechs := s.c.Mechanisms()
	if !s.c.PlaintextAllowed() || (s.c.Secured() && !slices.ContainsFunc(mechs, func(m string) bool { return strings.EqualFold(m, "PLAIN") })) {
		c += " LOGINDISABLED"
	}
	for _, m := range mechs {
		c += " AUTH=" + m
	}
	return c
}

func (s *session) Greeting() string {
	return "* OK [CAPABILITY " + s.caps() + "] " + s.c.LoginGreeting() + "\r\n"
}

// Next reads a command with the client's IMAP reader (command.go) and
// runs it.
func (s *session) Next(in *input.Buffer) (string, login.Ending, error) {
	if s.r.in != in {
		s.r = imapReader{in: in, cont: s}
	}
	cmd, ok, err := s.r.read()
	if !ok {
		return "", login.Ending{}, err
	}
	s.forward(cmd.idPairs) // ID's x-* fields (id.go)
	reply, end := s.run(&cmd)
	return reply, end, err
}

// continueLiteral asks for a synchronizing literal's octets (with the
// replies queued before it).
func (s *session) continueLiteral() error {
	s.c.Queue("+ OK\r\n")
	return s.c.Flush()
}

// run answers one command as Dovecot's imap-login does, authentication
// apart. Arguments are never echoed; the tag only if valid.
func (s *session) run(cmd *imapCommand) (string, login.Ending) {
	tag := cmd.tag
	switch {
	case tag == "":
		return s.badCommand("*")
	case cmd.err != nil && cmd.err.fatal:
		return "* BYE " + cmd.err.msg + "\r\n", login.Ending{Why: cmd.err.msg, Reason: ipc.CloseError}
	case cmd.err != nil:
		return tag + " BAD " + cmd.err.msg + "\r\n", login.Ending{}
	}
	switch name := strings.ToUpper(cmd.name); name {
	case "CAPABILITY":
		if !s.starttls {
			s.capSent = true
		}
		return "* CAPABILITY " + s.caps() + "\r\n" + tag + " OK Pre-login capabilities listed, post-login capabilities have more.\r\n", login.Ending{}
	case "NOOP":
		return tag + " OK NOOP completed.\r\n", login.Ending{}
	case "LOGOUT":
		return "* BYE Logging out\r\n" + tag + " OK Logout completed.\r\n", login.EndLogout
	case "ID":
		return s.id(tag, cmd), login.Ending{}
	case "ENABLE":
		return "* ENABLED\r\n" + tag + " OK ENABLE ignored in non-authenticated state.\r\n", login.Ending{}
	case "STARTTLS":
		switch {
		case s.c.TLSActive():
			return tag + " BAD TLS is already active.\r\n", login.Ending{}
		case !s.c.TLSOffered():
			return tag + " BAD TLS support isn't enabled.\r\n", login.Ending{}
		}
		s.c.StartTLS()
		s.starttls = true
		return tag + " OK Begin TLS negotiation now.\r\n", login.Ending{}
	case "LOGIN":
		// Dovecot: exactly two astrings, else a bad command.
		if len(cmd.args) == 2 && cmd.args[0].astring() && cmd.args[1].astring() {
			return s.login(tag, cmd.args[0].str, cmd.args[1].str)
		}
	case "AUTHENTICATE":
		// A mechanism name is needed, else a bad command.
		if mech, ir, _ := strings.Cut(cmd.raw, " "); mech != "" {
			return s.authenticate(tag, mech, ir)
		}
	default:
		if strings.EqualFold(tag, "LOGIN") { // not counted
			return tag + " BAD First parameter in line is IMAP's command tag, not the command name. Add that before the command, like: a login user pass\r\n", login.Ending{}
		}
	}
	return s.badCommand(tag)
}

// badCommand counts a bad command: BAD, or at the third (cumulative) BYE.
func (s *session) badCommand(tag string) (string, login.Ending) {
	s.bad++
	if s.bad >= MaxBadCommands {
		return "* BYE Too many invalid IMAP commands.\r\n", login.Ending{Why: "Too many invalid commands", Reason: ipc.CloseError}
	}
	return tag + " BAD Error in IMAP command received by server.\r\n", login.Ending{}
}

func (s *session) Notice(n login.Notice) string {
	switch n {
	case login.NoticeEvicted:
		return "* BYE Connection queue full\r\n"
	case login.NoticeTimeout:
		return "* BYE Disconnected for inactivity.\r\n"
	case login.NoticeShutdown:
		return "* BYE Shutting down\r\n"
	case login.NoticeInputFull:
		return "* BYE Input buffer full, aborting\r\n"
	case login.NoticeInternalError:
		return "* BYE [UNAVAILABLE] " + login.InternalFailureText + "\r\n"
	case login.NoticeAuthWaiting:
		return "* OK " + login.AuthWaitingText + "\r\n"
	}
	return ""
}
