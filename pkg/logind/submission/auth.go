package submission

import (
	"net/netip"
	"strings"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login/input"
)

// auth runs AUTH <mech> [<initial response>] (RFC 4954; "=" is an empty
// initial response): through auth, the challenges as 334 lines, and the
// outcome worded as submission-login's auth_result does. AUTH is allowed
// before EHLO, as in Dovecot.
func (s *session) auth(params string) (string, login.Ending) {
	argv := strings.Split(params, " ")
	switch {
	case params == "":
		return "501 5.5.4 Missing SASL mechanism parameter\r\n", login.Ending{}
	case len(argv) > 2:
		return "501 5.5.4 Invalid parameters\r\n", login.Ending{}
	}
	ir, hasIR := "", len(argv) == 2
	if hasIR {
		ir = argv[1]
	}
	return reply(s.a.Authenticate(argv[0], ir, hasIR, s, s.prefix()))
}

// prefix is what the submission service reads before the client's
// buffered input (its client_create_from_input): the EHLO domain (if
// it was valid), NUL, the HELO an XCLIENT forwarded (none), NUL.
func (s *session) prefix() []byte {
	return []byte(s.helo + "\x00\x00")
}

// Challenge is "334 data".
func (s *session) Challenge(data string) string { return "334 " + data + "\r\n" }

// Response reads a continuation line; "*" cancels.
func (s *session) Response(in *input.Buffer) (string, bool, error) { return in.AuthResponse() }

// reply words an authentication's outcome with submission-login's codes
// (RFC 4954, RFC 5248); nothing when handed off: Dovecot's submission
// answers "235 2.7.0 Logged in."; nor when the client is gone or was
// told why it is closed (AuthOutcome.NoReply).
func reply(o login.AuthOutcome) (string, login.Ending) {
	if o.NoReply() {
		return "", o.End
	}
	code := "535 5.7.8 " // failed, pass expired, authz failed, referrals
	switch o.Result {
	case login.AuthTempFail:
		code = "454 4.7.0 "
	case login.AuthAborted, login.AuthInvalidBase64:
		code = "501 5.5.2 "
	case login.AuthSSLRequired:
		code = "530 5.7.0 "
	case login.AuthMechSSLRequired:
		code = "523 5.7.10 "
	case login.AuthMechInvalid:
		code = "504 5.5.4 "
	case login.AuthLoginDisabled, login.AuthAnonymousDenied:
		code = "525 5.7.13 "
	}
	return code + o.Text + "\r\n", o.End
}

// heloDomain is the domain of EHLO's or HELO's parameters if it is
// valid as lib-smtp's smtp_helo_domain_parse judges it (labels of
// letters, digits, '-' and '_'; for EHLO also an address literal),
// followed by nothing or a space; else "".
func heloDomain(params string, literal bool) string {
	d, _, _ := strings.Cut(params, " ")
	if literal && strings.HasPrefix(d, "[") && strings.HasSuffix(d, "]") {
		in := d[1 : len(d)-1]
		if v6, ok := strings.CutPrefix(in, "IPv6:"); ok {
			if a, err := netip.ParseAddr(v6); err == nil && a.Is6() {
				return d
			}
			return ""
		}
		if a, err := netip.ParseAddr(in); err == nil && a.Is4() {
			return d
		}
		return ""
	}
	if d == "" {
		return ""
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" {
			return ""
		}
		for _, ch := range label {
			if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_') {
				return ""
			}
		}
	}
	return d
}
