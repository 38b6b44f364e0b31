// Package submission is loginsvc's pre-login submission (Dovecot 2.3's
// submission-login): SMTP line commands, 10 bad commands end the
// session; authentication is not there yet (docs/loginsvc.md).
package submission

import (
	"strings"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/ipc"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login"
)

// Protocol is submission as a login.Protocol.
type Protocol struct{}

// Name is "submission", what the access sockets receive.
func (Protocol) Name() string { return "submission" }

// NewSession starts a client's submission state.
func (Protocol) NewSession(c *login.Client) login.Session { return &session{c: c} }

// session is one client's submission state.
type session struct {
	c   *login.Client
	bad int // bad commands, cumulative
}

func (s *session) Greeting() string {
	return "220 " + s.c.Hostname() + " " + s.c.LoginGreeting() + "\r\n"
}

func (s *session) Next(in *login.Input) (string, login.Ending, error) {
	return login.LineCommand(in, s.command)
}

func (s *session) command(line string) (string, login.Ending) {
	cmd, _, _ := strings.Cut(line, " ")
	h := s.c.Hostname()
	switch strings.ToUpper(cmd) {
	case "EHLO":
		return "250-" + h + "\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250-PIPELINING\r\n250 CHUNKING\r\n", login.Ending{}
	case "HELO":
		return "250 " + h + "\r\n", login.Ending{}
	case "NOOP", "RSET":
		return "250 2.0.0 OK\r\n", login.Ending{}
	case "QUIT":
		return "221 2.0.0 " + h + " Bye\r\n", login.EndLogout
	case "AUTH", "MAIL", "RCPT", "DATA", "BDAT":
		return "530 5.7.0 Authentication required (not available yet)\r\n", login.Ending{}
	}
	s.bad++
	if s.bad >= 10 {
		return "421 4.7.0 " + h + " Too many invalid commands.\r\n", login.Ending{Why: "Too many invalid commands", Reason: ipc.CloseError}
	}
	return "500 5.5.1 Unknown command\r\n", login.Ending{}
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
	}
	return ""
}
