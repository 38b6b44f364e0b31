package pop3

import (
	"strings"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login/input"
)

// capa is CAPA's answer: STLS while TLS can be started, USER where
// plaintext authentication is allowed, SASL with the mechanisms that
// may be used now (pop3-login's cmd_capa).
func (s *session) capa() string {
	var b strings.Builder
	b.WriteString("+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\n")
	if s.c.TLSOffered() && !s.c.TLSActive() {
		b.WriteString("STLS\r\n")
	}
	b.WriteString(xclientCapa(s.c))
	if s.a.PlaintextAllowed() {
		b.WriteString("USER\r\n")
	}
	b.WriteString("SASL")
	for _, m := range s.a.Mechanisms() {
		b.WriteString(" " + m)
	}
	b.WriteString("\r\n.\r\n")
	return b.String()
}

// cmdUser keeps the user name for PASS, where plaintext authentication
// is allowed; elsewhere it is a refused attempt (-ERR [AUTH] Plaintext
// authentication disallowed on non-secure (SSL/TLS) connections.).
func (s *session) cmdUser(args string) (string, login.Ending) {
	if !s.a.PlaintextAllowed() {
		return reply(s.a.PlaintextRefused(args))
	}
	s.user, s.hasUser = args, true
	return "+OK\r\n", login.Ending{}
}

// cmdPass logs in with USER's name and args as the password (SASL PLAIN
// through auth).
func (s *session) cmdPass(args string) (string, login.Ending) {
	if !s.hasUser {
		// A client may ignore USER's error and show only PASS's.
		if !s.a.PlaintextAllowed() {
			return reply(s.a.PlaintextRefused(""))
		}
		return "-ERR No username given.\r\n", login.Ending{}
	}
	user := s.user
	s.user, s.hasUser = "", false
	return reply(s.a.LoginPlain(user, args, nil))
}

// auth runs AUTH, its name read: "AUTH" alone (or followed by a space)
// lists the mechanisms (the old SASL discovery of Outlook); else
// "AUTH <mech> [<initial response>]" authenticates, the continuations
// going through the session as a login.AuthIO. AUTH neither counts as a
// bad command nor resets the count, as in pop3-login.
func (s *session) auth(in *input.Buffer) (string, login.Ending, error) {
	var mech string
	for {
		d := in.Data()
		if i := strings.IndexAny(string(d), " \r\n"); i >= 0 {
			if i == 0 {
				if _, err := in.Line(); err != nil {
					return "", login.Ending{}, err
				}
				var b strings.Builder
				b.WriteString("+OK\r\n")
				for _, m := range s.a.Mechanisms() {
					b.WriteString(m + "\r\n")
				}
				b.WriteString(".\r\n")
				return b.String(), login.Ending{}, nil
			}
			mech = string(d[:i])
			if d[i] == ' ' {
				i++
			}
			in.Skip(i)
			break
		}
		if err := in.Fill(); err != nil {
			return "", login.Ending{}, err
		}
	}
	ir, err := in.AuthLine()
	if err != nil {
		return "", login.Ending{}, err
	}
	r, end := reply(s.a.Authenticate(mech, ir, ir != "", s, nil))
	return r, end, nil
}

// Challenge is "+ data", as for IMAP.
func (s *session) Challenge(data string) string { return "+ " + data + "\r\n" }

// Response reads a continuation line; "*" cancels.
func (s *session) Response(in *input.Buffer) (string, bool, error) { return in.AuthResponse() }

// reply words an authentication's outcome as pop3-login's
// pop3_client_auth_result does: nothing when handed off (Dovecot's pop3
// says "+OK Logged in.") or when the client is gone or was told why it
// is closed (AuthOutcome.NoReply), -ERR [SYS/TEMP] for a temporary
// failure, -ERR [AUTH] for the failures the client can act on (the
// text's own code instead when it starts with one, such as [IN-USE]), a
// plain -ERR for the rest (aborted, referrals).
func reply(o login.AuthOutcome) (string, login.Ending) {
	if o.NoReply() {
		return "", o.End
	}
	var r string
	switch o.Result {
	case login.AuthTempFail:
		r = "-ERR [SYS/TEMP] " + o.Text + "\r\n"
	case login.AuthFailed, login.AuthFailedReason, login.AuthzFailed, login.AuthPassExpired,
		login.AuthSSLRequired, login.AuthLoginDisabled, login.AuthMechInvalid,
		login.AuthMechSSLRequired, login.AuthInvalidBase64:
		if strings.HasPrefix(o.Text, "[") {
			r = "-ERR " + o.Text + "\r\n"
		} else {
			r = "-ERR [AUTH] " + o.Text + "\r\n"
		}
	default:
		r = "-ERR " + o.Text + "\r\n"
	}
	return r, o.End
}
