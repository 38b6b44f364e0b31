package login

import (
	"github.com/tcpwrapd/tcpwrapd/pkg/dovecot/masterauth"
)

// AuthIO formats and reads a protocol's side of a SASL exchange: what
// the Client writes for a server challenge and how it reads the client's
// answer. Each protocol package implements it (imap, pop3, submission,
// managesieve).
type AuthIO interface {
	// Challenge is the protocol's continuation for a server challenge
	// (data is base64, possibly ""): IMAP "+ data\r\n", POP3 "+ data\r\n",
	// SMTP "334 data\r\n", ManageSieve "\"data\"\r\n".
	Challenge(data string) string
	// Response reads the client's answer to a challenge from in: the base64
	// line without CRLF, or cancel=true when the client aborted ("*").
	Response(in *Input) (resp string, cancel bool, err error)
}

// AuthResult is Dovecot's enum client_auth_result (client-common.h): how
// an authentication ended, for the protocol to word its reply.
type AuthResult int

// Authentication results, in Dovecot's order.
const (
	AuthSuccess         AuthResult = iota + 1 // handed off (plaintext: fd sent; TLS: relaying)
	AuthReferralSuccess                       // logged in, but referred elsewhere (host= without nologin)
	AuthTempFail                              // temporary failure (auth or the hand-off unavailable, proxy=y)
	AuthPassExpired                           // code=pass_expired
	AuthReferralNologin                       // referred elsewhere (host= with nologin)
	AuthAborted                               // the client cancelled ("*")
	AuthFailed                                // wrong credentials
	AuthFailedReason                          // failed with a reason= to show
	AuthzFailed                               // code=authz_fail
	AuthSSLRequired                           // ssl = required and not secured
	AuthInvalidBase64                         // code=invalid_base64
	AuthLoginDisabled                         // nologin without a code (login disabled for the user)
	AuthMechInvalid                           // unknown mechanism
	AuthMechSSLRequired                       // plaintext mechanism refused (disable_plaintext_auth)
	AuthAnonymousDenied                       // anonymous login refused
)

// AuthOutcome is what an authentication ended with.
type AuthOutcome struct {
	// Result says how it ended.
	Result AuthResult
	// Text is Dovecot's text for the client ("Authentication failed.",
	// the reason= of auth, ...); empty for AuthSuccess.
	Text string
	// Referral is, for AuthReferral*, the imap://… URL (IMAP's
	// [REFERRAL …]).
	Referral string
	// End, when non-zero, ends the session after the protocol's reply:
	// handed off, too many failures, the hand-off failed.
	End Ending
}

// Mechanisms lists the mechanisms auth announced that may be advertised
// now: plaintext ones are hidden when the connection is not secured and
// plaintext authentication is disabled, none are listed with ssl =
// required before TLS, private ones never. It is empty while auth is not
// connected.
func (cl *Client) Mechanisms() []string { return nil }

// PlaintextAllowed reports whether plaintext authentication (IMAP LOGIN,
// POP3 USER/PASS, the PLAIN and LOGIN mechanisms) is allowed on this
// connection now: it is secured (Secured), or disable_plaintext_auth =
// no (auth_allow_cleartext = yes) and ssl is not required.
func (cl *Client) PlaintextAllowed() bool { return false }

// Authenticate runs one SASL authentication through auth: mech as the
// client named it, ir the initial response (base64) when hasIR. The
// challenges go out and the responses come in through io; on OK the
// client is handed off to the post-login service with prefix (the
// protocol's hand-off prefix: masterauth.IMAPPrefix for IMAP, nil for
// POP3, the submission and ManageSieve prefixes as Dovecot builds them)
// followed by all of its buffered input. The outcome says how it ended;
// the protocol words its reply from it.
func (cl *Client) Authenticate(mech, ir string, hasIR bool, io AuthIO, prefix []byte) AuthOutcome {
	return AuthOutcome{Result: AuthTempFail, Text: authTempFailText}
}

// LoginPlain is Authenticate with the PLAIN mechanism and the initial
// response "\0user\0pass" (IMAP LOGIN, POP3 PASS).
func (cl *Client) LoginPlain(user, pass string, prefix []byte) AuthOutcome {
	return AuthOutcome{Result: AuthTempFail, Text: authTempFailText}
}

// authTempFailText is Dovecot's AUTH_TEMP_FAILED_MSG.
const authTempFailText = "Temporary authentication failure."

// handoffFailText is the text after a failed hand-off.
const handoffFailText = masterauth.InternalFailureText
