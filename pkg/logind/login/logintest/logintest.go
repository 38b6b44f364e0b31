// Package logintest is a test-only login.Protocol: Wrap adds to a
// protocol the commands that the supervisor's end-to-end tests use to
// reach inside a login process (before authentication exists). Only test
// binaries serve it; cmd/loginsvc never does.
//
// The commands are read before the wrapped protocol sees the line, as
// "TAG NAME [ARG]" for IMAP (answered "* ..." lines, then "TAG OK") and
// "NAME [ARG]" otherwise (answered "+OK"):
//
//   - XALLOC <MiB> allocates and keeps that much memory (vsz_limit tests);
//   - XPROXY marks the client as proxying (eviction tests);
//   - XOPEN <path> tries to open a file from inside the login process
//     (TLS key tests): "* XOPEN ok" or "* XOPEN <error>";
//   - XADDR answers "* XADDR <remote> <local> tls=<yes|no>": the
//     client's addresses as the process sees them and whether a PROXY
//     header said the proxy terminated TLS (haproxy tests);
//   - XORPHAN makes the process ignore the end of its control socket,
//     so that only the parent-death signal ends it when the supervisor
//     dies (login.IgnoreSupervisorEnd; Pdeathsig tests).
//
// IMAP knows all of them; the other protocols XALLOC and XPROXY.
package logintest

import (
	"bytes"
	"os"
	"strings"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/ipc"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login/input"
)

// Wrap returns p with the test commands.
func Wrap(p login.Protocol) login.Protocol { return protocol{p} }

type protocol struct{ login.Protocol }

func (p protocol) NewSession(c *login.Client) login.Session {
	return &session{Session: p.Protocol.NewSession(c), c: c, imap: p.Name() == "imap"}
}

type session struct {
	login.Session
	c    *login.Client
	imap bool
	mem  [][]byte
}

// AfterTLS passes on the wrapped session's words after STARTTLS.
func (s *session) AfterTLS() string {
	if g, ok := s.Session.(login.TLSGreeter); ok {
		return g.AfterTLS()
	}
	return ""
}

// Next answers a test command, or leaves the line to the wrapped
// protocol.
func (s *session) Next(in *input.Buffer) (string, login.Ending, error) {
	if line, ok := peekLine(in); ok {
		if reply, ok := s.command(strings.TrimRight(string(line), "\r\n")); ok {
			in.Skip(len(line))
			return reply, login.Ending{}, nil
		}
	}
	return s.Session.Next(in)
}

// peekLine returns the next whole line without consuming it, once it is
// in the input buffer; not ok if the buffer fills up or the input ends
// first (the wrapped protocol then meets the same: a read error stays,
// see input.Buffer.Fill).
func peekLine(in *input.Buffer) ([]byte, bool) {
	for {
		if i := bytes.IndexByte(in.Data(), '\n'); i >= 0 {
			return in.Data()[:i+1], true
		}
		if in.Full() || in.Fill() != nil {
			return nil, false
		}
	}
}

// command runs line if it is a test command.
func (s *session) command(line string) (string, bool) {
	f := strings.Fields(line)
	tag, ok := "", "+OK\r\n"
	if s.imap {
		if len(f) < 2 {
			return "", false
		}
		tag, f = f[0], f[1:]
		ok = tag + " OK\r\n"
	}
	if len(f) == 0 {
		return "", false
	}
	name, arg := strings.ToUpper(f[0]), ""
	if len(f) > 1 {
		arg = strings.Trim(f[1], "\"")
	}
	switch {
	case name == "XALLOC":
		n := 0
		for _, ch := range arg {
			if ch >= '0' && ch <= '9' {
				n = n*10 + int(ch-'0')
			}
		}
		for range n {
			b := make([]byte, 1<<20)
			for j := range b {
				b[j] = byte(j)
			}
			s.mem = append(s.mem, b)
		}
		return ok, true
	case name == "XPROXY":
		s.c.SetState(ipc.StateProxying)
		return ok, true
	case !s.imap:
		return "", false
	case name == "XADDR":
		tls := map[bool]string{true: "yes", false: "no"}[s.c.ProxiedTLS()]
		return "* XADDR " + s.c.RemoteAddr().String() + " " + s.c.LocalAddr().String() + " tls=" + tls + "\r\n" + ok, true
	case name == "XORPHAN":
		login.IgnoreSupervisorEnd()
		return ok, true
	case name == "XOPEN":
		f, err := os.Open(arg)
		if err != nil {
			return "* XOPEN " + err.Error() + "\r\n" + ok, true
		}
		f.Close()
		return "* XOPEN ok\r\n" + ok, true
	}
	return "", false
}
