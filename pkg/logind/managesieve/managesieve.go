// Package managesieve is loginsvc's pre-login ManageSieve (Pigeonhole's
// managesieve-login for Dovecot 2.3): line commands, 3 bad commands end
// the session; authentication is not there yet (docs/loginsvc.md). Its
// protocol name, as the access sockets receive it, is "sieve".
package managesieve

import (
	"strings"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/ipc"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login"
)

// Protocol is ManageSieve as a login.Protocol.
type Protocol struct{}

// Name is "sieve", what the access sockets receive.
func (Protocol) Name() string { return "sieve" }

// NewSession starts a client's ManageSieve state.
func (Protocol) NewSession(c *login.Client) login.Session { return &session{c: c} }

const caps = "\"IMPLEMENTATION\" \"loginsvc\"\r\n\"SIEVE\" \"\"\r\n\"SASL\" \"\"\r\n\"VERSION\" \"1.0\"\r\n"

// session is one client's ManageSieve state.
type session struct {
	c   *login.Client
	bad int // bad commands, cumulative
}

func (s *session) Greeting() string {
	return caps + "OK \"" + s.c.LoginGreeting() + "\"\r\n"
}

func (s *session) Next(in *login.Input) (string, login.Ending, error) {
	return login.LineCommand(in, s.command)
}

func (s *session) command(line string) (string, login.Ending) {
	cmd, _, _ := strings.Cut(line, " ")
	switch strings.ToUpper(cmd) {
	case "CAPABILITY":
		return caps + "OK \"Capability completed.\"\r\n", login.Ending{}
	case "NOOP":
		return "OK \"NOOP completed.\"\r\n", login.Ending{}
	case "LOGOUT":
		return "OK \"Logout completed.\"\r\n", login.EndLogout
	case "AUTHENTICATE", "STARTTLS":
		return "NO \"Not available yet.\"\r\n", login.Ending{}
	}
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
		return "BYE \"Shutting down\"\r\n"
	case login.NoticeInputFull:
		return "BYE \"Input buffer full, aborting\"\r\n"
	}
	return ""
}
