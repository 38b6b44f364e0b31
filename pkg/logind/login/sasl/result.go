package sasl

import (
	"net/url"
	"strconv"
	"time"

	"github.com/tcpwrapd/tcpwrapd/pkg/dovecot/authclient"
)

// Result is Dovecot's enum client_auth_result (client-common.h): how an
// authentication ended, for the protocol to word its reply.
type Result int

// Results, in the order of login.AuthResult.
const (
	Success         Result = iota + 1 // handed off
	ReferralSuccess                   // logged in, but referred elsewhere (host= without nologin)
	TempFail                          // temporary failure
	PassExpired                       // code=pass_expired
	ReferralNologin                   // referred elsewhere (host= with nologin)
	Aborted                           // the client cancelled ("*")
	Failed                            // wrong credentials
	FailedReason                      // failed with a reason to show
	AuthzFailed                       // code=authz_fail
	SSLRequired                       // ssl = required and not secured
	InvalidBase64                     // code=invalid_base64
	LoginDisabled                     // nologin without a code
	MechInvalid                       // unknown mechanism
	MechSSLRequired                   // plaintext refused (disable_plaintext_auth)
	AnonymousDenied                   // anonymous login refused
)

// Dovecot's texts (login-common.h, client-common.h, sasl-server.c,
// login-proxy.h).
const (
	FailedText            = "Authentication failed."
	TempFailText          = "Temporary authentication failure."
	PlaintextDisabledText = "Plaintext authentication disallowed on non-secure (SSL/TLS) connections."
	PlaintextMechText     = "Plaintext authentication disabled."
	SSLRequiredText       = "Authentication not allowed until SSL/TLS is enabled."
	UnsupportedMechText   = "Unsupported authentication mechanism."
	AbortedText           = "Authentication aborted by client."
	ProxyFailureText      = "Account is temporarily unavailable."
	AuthWaitingText       = "Waiting for authentication process to respond.."
	InternalFailureText   = "Internal login failure. Refer to server log for more information."
	// InvalidBase64RespText is the reason for a SASL response with a
	// character outside the base64 alphabet (NO [ALERT] in IMAP).
	InvalidBase64RespText = "Invalid base64 in response"
	// PasswordExposedText is the status line after a plaintext password
	// was sent where plaintext authentication is disabled.
	PasswordExposedText = "Plaintext authentication not allowed without SSL/TLS, but your client did it anyway. If anyone was listening, the password was exposed."
)

// Failure codes beyond authclient's: the login process's own
// (client_auth_fail_code), recorded in State.LastFail.
const (
	CodeLoginDisabled   = "login_disabled"
	CodeMechInvalid     = "auth_mech_invalid"
	CodeMechSSLRequired = "auth_mech_ssl_required"
	CodeAnonymousDenied = "anonymous_denied"
)

// knownCode reports whether code is one Dovecot's login looks up
// (client_auth_fail_codes); others count as none.
func knownCode(code string) bool {
	switch code {
	case authclient.CodeAuthzFailed, authclient.CodeTempFail, authclient.CodeUserDisabled,
		authclient.CodePassExpired, authclient.CodeInvalidBase64,
		CodeMechInvalid, CodeMechSSLRequired, CodeAnonymousDenied:
		return true
	}
	return false
}

// Verdict is how an OK or FAIL reply ends an authentication: its Result,
// the client's Text, and for a referral the destination.
type Verdict struct {
	// Result is the outcome (OK, a failure kind, TempFail).
	Result Result
	// Text is what the client is told (auth's reason=, or the
	// protocol's default text when auth gave none).
	Text string
	// Host, Port and Destuser: a referral's destination (IMAP's
	// [REFERRAL imap://destuser;AUTH=mech@host:port/]).
	Host, Destuser string
	Port           uint16
	// Code is the failure code the client is remembered by (State.LastFail).
	Code string
	// Proxy: auth asked for proxying (OK with proxy); the caller refuses
	// it (loginsvc does not proxy) with TempFail and
	// ProxyFailureText.
	Proxy bool
}

// Judge interprets an OK (success) or FAIL reply as Dovecot's
// client_auth_handle_reply and sasl_callback do. handOff is true for an
// OK that logs the user in (no nologin, proxy or host): the caller hands
// the client off. host and now word the temporary failure text
// ("Temporary authentication failure. [host:2006-01-02 15:04:05]").
func Judge(r *authclient.Reply, success bool, host string, now time.Time) (v Verdict, handOff bool) {
	if r == nil {
		r = &authclient.Reply{}
	}
	// The fail code as Dovecot's parser sets it: nologin first wins,
	// else the first known code=.
	code := ""
	for _, f := range r.Fields {
		switch {
		case f.Key == "nologin" && code == "":
			code = CodeLoginDisabled
		case f.Key == "code" && code == "":
			if knownCode(f.Value) {
				code = f.Value
			}
		}
	}
	v.Code = code
	if success && !r.Nologin && !r.Proxy {
		return Verdict{Result: Success}, true
	}
	if r.Proxy && !success {
		// A FAIL that still names a proxy: a plain failure.
		return Verdict{Result: Failed, Text: FailedText, Code: code}, false
	}
	if r.Proxy {
		return Verdict{Result: TempFail, Text: ProxyFailureText, Proxy: true, Code: code}, false
	}
	if r.Host != "" {
		v.Host, v.Port, v.Destuser = r.Host, r.Port, r.Destuser
		if v.Destuser == "" {
			v.Destuser = r.User
		}
		nologin := r.Nologin || !success
		switch {
		case r.Reason != "":
			v.Text = r.Reason
		case nologin:
			v.Text = "Try this server instead."
		default:
			v.Text = "Logged in, but you should use this server instead."
		}
		if nologin {
			v.Result = ReferralNologin
		} else {
			v.Result = ReferralSuccess
		}
		return v, false
	}
	reason := r.Reason
	switch code {
	case authclient.CodeAuthzFailed:
		v.Result = AuthzFailed
		if reason == "" {
			reason = "Authorization failed"
		}
	case authclient.CodeTempFail:
		v.Result = TempFail
		reason = TempFailText + " [" + host + ":" + now.Format("2006-01-02 15:04:05") + "]"
	case authclient.CodePassExpired:
		v.Result = PassExpired
	case authclient.CodeInvalidBase64:
		v.Result = InvalidBase64
	case CodeMechInvalid:
		v.Result = MechInvalid
	case CodeMechSSLRequired:
		v.Result = MechSSLRequired
	case CodeAnonymousDenied:
		v.Result = AnonymousDenied
	case CodeLoginDisabled:
		v.Result = LoginDisabled
		if reason == "" {
			reason = "Login disabled for this user"
		}
	default:
		v.Result = Failed
		if reason != "" {
			v.Result = FailedReason
		}
	}
	if reason == "" {
		reason = FailedText
	}
	v.Text = reason
	return v, false
}

// Base64Chars reports whether resp holds only characters of the base64
// alphabet (A-Z, a-z, 0-9, +, / and =), as Dovecot's login process checks
// a SASL response before it passes it to auth. Whether the characters
// form valid base64 is auth's to say.
func Base64Chars(resp string) bool {
	for i := 0; i < len(resp); i++ {
		switch c := resp[i]; {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '+', c == '/', c == '=':
		default:
			return false
		}
	}
	return true
}

// ReferralURL is v's referral as an IMAP URL, as Dovecot's imap_url_create
// writes it: imap://destuser;AUTH=MECH@host[:port]/ (the port only when
// it is not 143).
func (v Verdict) ReferralURL(mech string) string {
	s := "imap://"
	if v.Destuser != "" {
		s += url.PathEscape(v.Destuser)
	}
	s += ";AUTH=" + mech + "@" + v.Host
	if v.Port != 0 && v.Port != 143 {
		s += ":" + strconv.Itoa(int(v.Port))
	}
	return s + "/"
}
