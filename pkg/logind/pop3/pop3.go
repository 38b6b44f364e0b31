// Package pop3 is loginsvc's pre-login POP3 (Dovecot 2.3's pop3-login):
// line commands, 3 consecutive bad commands end the session; XCLIENT
// from login_trusted_networks (xclient.go); authentication is not there
// yet (docs/loginsvc.md).
package pop3

import (
	"strings"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/ipc"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login"
)

// Protocol is POP3 as a login.Protocol.
type Protocol struct{}

// Name is "pop3", what the access sockets receive.
func (Protocol) Name() string { return "pop3" }

// NewSession starts a client's POP3 state.
func (Protocol) NewSession(c *login.Client) login.Session { return &session{c: c} }

// session is one client's POP3 state.
type session struct {
	c   *login.Client
	bad int // consecutive bad commands
}

func (s *session) Greeting() string {
	return "+OK " + xclientGreeting(s.c) + s.c.LoginGreeting() + "\r\n"
}

func (s *session) Next(in *login.Input) (string, login.Ending, error) {
	return login.LineCommand(in, s.command)
}

func (s *session) command(line string) (string, login.Ending) {
	cmd, args, _ := strings.Cut(line, " ")
	switch strings.ToUpper(cmd) {
	case "CAPA":
		s.bad = 0
		stls := ""
		if s.c.TLSOffered() && !s.c.TLSActive() {
			stls = "STLS\r\n"
		}
		return "+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\n" + stls + xclientCapa(s.c) + ".\r\n", login.Ending{}
	case "XCLIENT", "XOIP": // xclient.go
		s.bad = 0
		return xclient(s.c, strings.ToUpper(cmd), args), login.Ending{}
	case "QUIT":
		return "+OK Logging out\r\n", login.EndLogout
	case "STLS":
		s.bad = 0
		switch {
		case s.c.TLSActive():
			return "-ERR TLS is already active.\r\n", login.Ending{}
		case !s.c.TLSOffered():
			return "-ERR TLS support isn't enabled.\r\n", login.Ending{}
		}
		s.c.StartTLS()
		return "+OK Begin TLS negotiation now.\r\n", login.Ending{}
	case "USER", "PASS", "AUTH", "APOP":
		s.bad = 0
		return "-ERR [SYS/TEMP] Authentication is not available yet.\r\n", login.Ending{}
	}
	s.bad++
	if s.bad >= 3 {
		// Dovecot 2.3.19.1 logs "Disconnected: Disconnected: Too many
		// bad commands", the reason with its own prefix.
		return "-ERR Unknown command.\r\n-ERR Too many invalid bad commands.\r\n", login.Ending{Why: "Disconnected: Too many bad commands", Reason: ipc.CloseError}
	}
	return "-ERR Unknown command.\r\n", login.Ending{}
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
	}
	return ""
}
