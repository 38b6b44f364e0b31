package login

import (
	"net/netip"
	"strings"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/ipc"
)

// The admin view (loginctl who, procs, login-status; docs/loginsvc.md
// "Who is logged in"): a login process tells the supervisor of every
// client that logged in and was handed to a mail process (reportLogin,
// ipc.MsgLogin) and of every failed authentication (reportAuthFailed,
// ipc.MsgAuthFailed). The supervisor checks both, as every report.

// whoState is what a Client has reported for the admin view. Only the
// client's serving goroutine touches it.
type whoState struct {
	loggedIn  bool
	authFails uint8 // failed authentications reported (saturates)
}

// reportLogin tells the supervisor that the client logged in as user
// with SASL mechanism mech and was handed to the mail process mailPID
// (0 if unknown), once, at a successful hand-off: before the TLS relay
// starts (ipc.StateProxying) or the client is closed. The address
// reported is the one the log lines give (rip: a PROXY header's, or
// what a trusted peer forwarded), and whether the client speaks TLS with
// this process. A user longer than ipc.MaxLoginUser bytes is cut; one
// that is not printable UTF-8 is reported as "?" (auth accepted it; the
// admin view must not print control characters).
func (cl *Client) reportLogin(user, mech string, mailPID uint32) {
	if cl.who.loggedIn || cl.lp == nil || cl.lp.rep == nil {
		return // no supervisor (ServeConn)
	}
	cl.who.loggedIn = true
	user = ipc.CutUser(user)
	if !ipc.ValidUser([]byte(user)) {
		user = "?"
	}
	mech = strings.ToUpper(mech)
	if !ipc.ValidMech([]byte(mech)) {
		mech = "UNKNOWN"
	}
	if mailPID > ipc.MaxMailPID {
		mailPID = 0
	}
	b := ipc.AppendLogin(nil, ipc.Login{ID: cl.id, User: user, Mech: mech, MailPID: mailPID,
		Remote: cl.whoRemote(), TLS: cl.tlsActive})
	cl.lp.rep.LazyPacket(b) // before the client's close or its StateProxying
}

// reportAuthFailed tells the supervisor that an authentication of the
// client failed (each attempt, before the client logs in; after 255 the
// rest are not reported).
func (cl *Client) reportAuthFailed() {
	if cl.who.loggedIn || cl.who.authFails == 255 || cl.lp == nil || cl.lp.rep == nil {
		return
	}
	cl.who.authFails++
	cl.lp.rep.Lazy(ipc.MsgAuthFailed, cl.id, cl.who.authFails, ipc.Accept{})
}

// noteAuthFailure reports a failed authentication (reportAuthFailed) if
// auth's FAIL ended it with result r: auth refused the credentials
// (AuthFailed, AuthFailedReason), the authorization (AuthzFailed) or the
// account (AuthPassExpired, AuthLoginDisabled); not a temporary failure,
// a referral, an abort by the client, nor a refusal before auth was
// asked (an unknown mechanism, plaintext or TLS required).
func (cl *Client) noteAuthFailure(r AuthResult) {
	switch r {
	case AuthFailed, AuthFailedReason, AuthzFailed, AuthPassExpired, AuthLoginDisabled:
		cl.reportAuthFailed()
	}
}

// whoRemote is the client's address as the log lines and the hand-off
// give it: the one a trusted peer forwarded (forward.go), if any.
func (cl *Client) whoRemote() netip.AddrPort { return cl.identity().Remote }
