package imap

import (
	"bytes"
	"errors"
	"strings"

	"github.com/tcpwrapd/tcpwrapd/pkg/dovecot/masterauth"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login/input"
)

// login runs LOGIN user pass (cmd_login): refused with Dovecot's alert
// where plaintext authentication is not allowed, else PLAIN through auth.
func (s *session) login(tag, user, pass string) (string, login.Ending) {
	if !s.c.PlaintextAllowed() {
		out := s.c.PlaintextRefused(user)
		return "* BAD [ALERT] " + login.PasswordExposedText + "\r\n" + authReply(tag, out), out.End
	}
	out := s.c.LoginPlain(user, pass, masterauth.IMAPPrefix(s.capSent, tag))
	return authReply(tag, out), out.End
}

// authenticate runs AUTHENTICATE mech [ir] (cmd_authenticate): "=" is
// an empty initial response (SASL-IR), nothing none.
func (s *session) authenticate(tag, mech, ir string) (string, login.Ending) {
	hasIR := ir != ""
	if ir == "=" {
		ir = ""
	}
	out := s.c.Authenticate(mech, ir, hasIR, saslIO{}, masterauth.IMAPPrefix(s.capSent, tag))
	return authReply(tag, out), out.End
}

// authReply words an authentication's outcome as imap-login's
// imap_client_auth_result does; "" when there is nothing to answer
// (handed off: imap answers; or the client is gone or was told).
func authReply(tag string, out login.AuthOutcome) string {
	if out.NoReply() {
		return ""
	}
	code := ""
	switch out.Result {
	case login.AuthSuccess:
		return ""
	case login.AuthReferralSuccess:
		return tag + " OK [REFERRAL " + out.Referral + "] " + out.Text + "\r\n"
	case login.AuthReferralNologin:
		return tag + " NO [REFERRAL " + out.Referral + "] " + out.Text + "\r\n"
	case login.AuthInvalidBase64, login.AuthAborted:
		return tag + " BAD " + out.Text + "\r\n"
	case login.AuthFailedReason, login.AuthMechInvalid:
		if strings.HasPrefix(out.Text, "[") {
			return tag + " NO " + out.Text + "\r\n"
		}
		code = "ALERT"
	case login.AuthzFailed:
		code = "AUTHORIZATIONFAILED"
	case login.AuthTempFail:
		code = "UNAVAILABLE"
	case login.AuthSSLRequired, login.AuthMechSSLRequired:
		code = "PRIVACYREQUIRED"
	case login.AuthPassExpired:
		code = "EXPIRED"
	case login.AuthLoginDisabled, login.AuthAnonymousDenied:
		code = "CONTACTADMIN"
	default: // login.AuthFailed
		code = "AUTHENTICATIONFAILED"
	}
	return tag + " NO [" + code + "] " + out.Text + "\r\n"
}

// maxAuthLine is the longest SASL response line (LOGIN_MAX_AUTH_BUF_SIZE).
const maxAuthLine = 8192

// saslIO is IMAP's side of a SASL exchange: "+ challenge" and a
// response line, "*" to abort.
type saslIO struct{}

func (saslIO) Challenge(data string) string { return "+ " + data + "\r\n" }

func (saslIO) Response(in *input.Buffer) (string, bool, error) {
	in.Grow(maxAuthLine + 2)
	defer in.Shrink()
	line, err := in.Line()
	if errors.Is(err, input.ErrFull) {
		return "", false, input.ErrAuthTooLarge
	}
	if err != nil {
		return "", false, err
	}
	resp := string(bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r")))
	if len(resp) > maxAuthLine {
		return "", false, input.ErrAuthTooLarge
	}
	return resp, resp == "*", nil
}
