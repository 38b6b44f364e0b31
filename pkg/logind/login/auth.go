package login

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/tcpwrapd/tcpwrapd/pkg/dovecot/authclient"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/ipc"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login/input"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login/sasl"
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
	Response(in *input.Buffer) (resp string, cancel bool, err error)
}

// Authenticator is what a Session authenticates through: its Client, or
// in the protocols' transcript tests a fake (logintest.FakeAuth).
type Authenticator interface {
	// Mechanisms lists the SASL mechanisms that may be advertised now
	// (Client.Mechanisms: plaintext ones hidden by
	// disable_plaintext_auth, none with ssl = required before TLS).
	Mechanisms() []string
	// PlaintextAllowed reports whether plaintext authentication is
	// allowed on the connection now (Dovecot's
	// client_check_plaintext_auth passing).
	PlaintextAllowed() bool
	// PlaintextRefused counts a refused plaintext attempt by user and
	// returns its outcome (AuthSSLRequired or AuthMechSSLRequired).
	PlaintextRefused(user string) AuthOutcome
	// Authenticate runs one SASL exchange with Dovecot's auth: mech as
	// the client named it, ir the base64 initial response when hasIR,
	// challenges and responses through io; on success the client goes
	// to the post-login service with prefix (docs/dovecot-auth.md).
	Authenticate(mech, ir string, hasIR bool, io AuthIO, prefix []byte) AuthOutcome
	// LoginPlain is Authenticate with PLAIN and "\0user\0pass" (IMAP
	// LOGIN, POP3 USER/PASS).
	LoginPlain(user, pass string, prefix []byte) AuthOutcome
}

// AuthVia is a Protocol's choice of the Authenticator its sessions use:
// nil means the Client itself; the protocols' transcript tests set a
// fake (logintest.FakeAuth).
type AuthVia func(*Client) Authenticator

// For returns the Authenticator for c: c itself when f is nil.
func (f AuthVia) For(c *Client) Authenticator {
	if f == nil {
		return c
	}
	return f(c)
}

// AuthResult is Dovecot's enum client_auth_result (client-common.h): how
// an authentication ended, for the protocol to word its reply. Its
// values are those of package sasl.
type AuthResult = sasl.Result

// Authentication results, in Dovecot's order.
const (
	AuthSuccess         = sasl.Success         // handed off (plaintext: fd sent; TLS: relaying)
	AuthReferralSuccess = sasl.ReferralSuccess // logged in, but referred elsewhere (host= without nologin)
	AuthTempFail        = sasl.TempFail        // temporary failure (auth or the hand-off unavailable, proxy)
	AuthPassExpired     = sasl.PassExpired     // code=pass_expired
	AuthReferralNologin = sasl.ReferralNologin // referred elsewhere (host= with nologin)
	AuthAborted         = sasl.Aborted         // the client cancelled ("*")
	AuthFailed          = sasl.Failed          // wrong credentials
	AuthFailedReason    = sasl.FailedReason    // failed with a reason= to show
	AuthzFailed         = sasl.AuthzFailed     // code=authz_fail
	AuthSSLRequired     = sasl.SSLRequired     // ssl = required and not secured
	AuthInvalidBase64   = sasl.InvalidBase64   // code=invalid_base64
	AuthLoginDisabled   = sasl.LoginDisabled   // nologin without a code (login disabled for the user)
	AuthMechInvalid     = sasl.MechInvalid     // unknown mechanism
	AuthMechSSLRequired = sasl.MechSSLRequired // plaintext mechanism refused (disable_plaintext_auth)
	AuthAnonymousDenied = sasl.AnonymousDenied // anonymous login refused
)

// AuthOutcome is what an authentication ended with.
type AuthOutcome struct {
	// Result says how it ended.
	Result AuthResult
	// Text is Dovecot's text for the client ("Authentication failed.",
	// the reason= of auth, ...). It is empty when there is nothing to
	// answer: after AuthSuccess (the post-login service answers), and
	// when End is set because the client is gone or was told why it is
	// closed (a failed hand-off: Dovecot's internal-error notice, already
	// written).
	Text string
	// Referral is, for AuthReferral*, the destination as an IMAP URL
	// without the scheme's trailing slash: "imap://destuser;AUTH=MECH@host[:port]/".
	Referral string
	// End, when non-zero, ends the session after the protocol's reply:
	// handed off, the client gone or out of time, the hand-off failed.
	End Ending
}

// NoReply reports whether the protocol has nothing to answer (Text is
// empty): the client was handed off (the post-login service answers),
// is gone, or was told why it is closed (a failed hand-off, a kill).
func (o AuthOutcome) NoReply() bool { return o.Text == "" }

// clientAuth is a Client's authentication state.
type clientAuth struct {
	st sasl.State
	in *input.Buffer // serve's input buffer: responses, and what the hand-off passes on
	// loggedIn: handed off (the Login line is logged, no Disconnected
	// line); relay: the login process's end of the TLS relay, run once
	// the session's last reply is out (relay.go); noExtra: the
	// disconnect reason has no "(...)" part.
	loggedIn, noExtra bool
	relay             *os.File
	mpid              uint32 // the post-login process's pid (the Login line's mpid=)

	mu     sync.Mutex
	ctx    context.Context // ended by kill
	cancel context.CancelFunc
}

// killContext is a context that ends when the Client is killed.
func (cl *Client) killContext() context.Context {
	a := &cl.auth
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ctx == nil {
		a.ctx, a.cancel = context.WithCancel(context.Background())
		if _, k := cl.killedReason(); k {
			a.cancel()
		}
	}
	return a.ctx
}

// cancelAuth ends killContext's context (kill).
func (cl *Client) cancelAuth() {
	a := &cl.auth
	a.mu.Lock()
	if a.cancel != nil {
		a.cancel()
	}
	a.mu.Unlock()
}

// policy is what decides the mechanisms the client may use now.
func (cl *Client) policy() sasl.Policy {
	return sasl.Policy{Secured: cl.Secured(), AllowCleartext: cl.lp.in.AuthAllowCleartext, SSLRequired: cl.lp.in.SSL == "required",
		NoAnonymous: cl.lp.proto.Name() == "submission" || cl.lp.proto.Name() == "sieve"}
}

// Mechanisms lists the mechanisms auth announced that may be advertised
// now: plaintext ones are hidden when the connection is not secured and
// plaintext authentication is disabled, none are listed with ssl =
// required before TLS, private ones never. It is empty while auth is not
// connected.
func (cl *Client) Mechanisms() []string {
	if cl.lp.auth == nil {
		return nil
	}
	hs, ok := cl.lp.auth.Handshake()
	if !ok {
		return nil
	}
	return sasl.Advertised(hs.Mechs, cl.policy())
}

// PasswordExposedText is Dovecot's status line after a password sent
// where plaintext authentication is disabled (IMAP: "* BAD [ALERT] ...").
const PasswordExposedText = sasl.PasswordExposedText

// PlaintextAllowed reports whether plaintext authentication (IMAP LOGIN,
// POP3 USER/PASS, the PLAIN and LOGIN mechanisms) is allowed on this
// connection now: it is secured (Secured), or disable_plaintext_auth =
// no (auth_allow_cleartext = yes) and ssl is not required.
func (cl *Client) PlaintextAllowed() bool { return cl.policy().PlaintextAllowed() }

// PlaintextRefused is Dovecot's client_check_plaintext_auth for a
// refused plaintext login (PlaintextAllowed false): it counts the
// attempt, remembers user, and returns the outcome (AuthSSLRequired with
// ssl = required, else AuthMechSSLRequired). A protocol whose command
// carried the password (IMAP LOGIN, POP3 PASS) first sends the status
// line PasswordExposedText, as Dovecot does.
func (cl *Client) PlaintextRefused(user string) AuthOutcome {
	st := &cl.auth.st
	st.Attempts++
	if st.User == "" {
		st.User = user
	}
	if cl.lp.in.SSL == "required" {
		return AuthOutcome{Result: AuthSSLRequired, Text: sasl.PlaintextDisabledText}
	}
	st.LastFail = sasl.CodeMechSSLRequired
	return AuthOutcome{Result: AuthMechSSLRequired, Text: sasl.PlaintextDisabledText}
}

// LoginPlain is Authenticate with the PLAIN mechanism and the initial
// response "\0user\0pass" (IMAP LOGIN, POP3 PASS).
func (cl *Client) LoginPlain(user, pass string, prefix []byte) AuthOutcome {
	ir := sasl.PlainResponse(user, pass)
	return cl.Authenticate("PLAIN", ir, true, nil, prefix)
}

// Authenticate runs one SASL authentication through auth: mech as the
// client named it, ir the initial response (base64) when hasIR. The
// challenges go out and the responses come in through io; on OK the
// client is handed off to the post-login service with prefix (the
// protocol's hand-off prefix: masterauth.IMAPPrefix for IMAP, nil for
// POP3, the submission and ManageSieve prefixes as Dovecot builds them)
// followed by all of its buffered input. The outcome says how it ended;
// the protocol words its reply from it. Passwords and responses are
// never logged.
func (cl *Client) Authenticate(mech, ir string, hasIR bool, io AuthIO, prefix []byte) AuthOutcome {
	st := &cl.auth.st
	pol := cl.policy()
	if !pol.Secured && pol.SSLRequired {
		st.Attempts++
		return AuthOutcome{Result: AuthSSLRequired, Text: sasl.SSLRequiredText}
	}
	if err := cl.Flush(); err != nil { // the replies before this command go first
		return cl.authInterrupted(err)
	}
	ac := cl.lp.auth
	if ac == nil || cl.lp.authAbsent() {
		st.Begin(mech, time.Now())
		st.Done(authclient.CodeTempFail)
		if ac != nil { // login_socket_path is set, but no Dovecot there
			logLine("ERROR", "auth: %s does not exist (is Dovecot running with this base_dir?)", cl.lp.in.AuthSocket)
		}
		return AuthOutcome{Result: AuthTempFail, Text: sasl.TempFailText}
	}
	ctx, cancel := context.WithDeadline(cl.killContext(), cl.accepted.Add(cl.lp.in.PreloginTimeout))
	defer cancel()
	// No watch on the client's socket while auth or the post-login
	// service answers: Dovecot's login processes remove the client's io
	// until the reply (client_auth_begin_common, client_auth_respond),
	// so a client that sends its password and hangs up is still judged
	// (and its failure logged as "auth failed", which ban tools read);
	// an EOF is seen when its input is next read.
	hs, err := ac.WaitReady(ctx)
	if err != nil {
		return cl.authInterrupted(err)
	}
	st.Begin(mech, time.Now())
	name, v, ok := sasl.Check(hs.Mechs, mech, pol)
	if !ok {
		st.Done(v.Code)
		return cl.outcome(v)
	}
	req := cl.authRequest(name, ir, hasIR)
	a, err := ac.Begin(ctx, req)
	if err != nil {
		if ctx.Err() == nil {
			st.CommFail = true
			st.Done(authclient.CodeTempFail)
			return AuthOutcome{Result: AuthTempFail, Text: sasl.TempFailText}
		}
		return cl.authInterrupted(err)
	}
	for {
		step, err := a.Next(ctx) // cancels the request when ctx ends
		if err != nil {
			return cl.authInterrupted(err)
		}
		switch step.Status {
		case authclient.StatusContinue:
			st.Requesting, st.Waiting = false, true
			if io == nil { // LoginPlain: PLAIN has no second step
				a.Cancel()
				st.Done("")
				return AuthOutcome{Result: AuthFailed, Text: sasl.FailedText}
			}
			if err := cl.Queue(io.Challenge(step.Challenge)); err != nil {
				a.Cancel()
				return cl.authInterrupted(err)
			}
			resp, abort, err := io.Response(cl.auth.in)
			if err != nil {
				a.Cancel()
				return cl.authInterrupted(err)
			}
			if abort {
				a.Cancel()
				st.Aborted = true
				st.Done("")
				return AuthOutcome{Result: AuthAborted, Text: sasl.AbortedText}
			}
			if !sasl.Base64Chars(resp) {
				// Dovecot's login process checks the alphabet itself
				// and fails the attempt with a reason; auth never sees
				// the response (its own invalid_base64 is for
				// malformed base64 of the right characters).
				// Dovecot leaves the client waiting for SASL input
				// (auth_waiting): a client that leaves now "didn't
				// finish SASL auth".
				a.Cancel()
				st.Done("")
				st.Waiting = true
				cl.noteAuthFailure(AuthFailedReason)
				return AuthOutcome{Result: AuthFailedReason, Text: sasl.InvalidBase64RespText}
			}
			st.Requesting, st.Waiting = true, false
			if err := a.Continue(authclient.Secret(resp)); errors.Is(err, authclient.ErrFinished) {
				continue // Next delivers what ended it
			}
			// A lost connection ends the request with INTERNAL_FAIL,
			// which Next delivers.
		case authclient.StatusOK:
			st.Reply(step.Reply)
			st.Successes++
			v, handOff := sasl.Judge(step.Reply, true, cl.lp.host, time.Now())
			if !handOff {
				if v.Proxy {
					logLine("ERROR", "proxy(%s): Proxying is not supported by loginsvc, login refused (%s)", st.User, cl.elements(0))
				}
				a.Cancel()
				st.Done(v.Code)
				return cl.outcome(v)
			}
			st.Requesting, st.Finishing = false, true
			return cl.handOff(a, hs, step.Reply, prefix)
		default: // FAIL, or INTERNAL_FAIL (the connection to auth was lost)
			if step.Status == authclient.StatusInternalFail {
				st.CommFail = true
			}
			st.Reply(step.Reply)
			v, _ := sasl.Judge(step.Reply, false, cl.lp.host, time.Now())
			st.Done(v.Code)
			cl.noteAuthFailure(v.Result)
			return cl.outcome(v)
		}
	}
}

// outcome is the AuthOutcome of a verdict that did not log in.
func (cl *Client) outcome(v sasl.Verdict) AuthOutcome {
	o := AuthOutcome{Result: v.Result, Text: v.Text}
	if v.Host != "" {
		o.Referral = v.ReferralURL(cl.auth.st.Mech)
	}
	return o
}

// authInterrupted ends an authentication that the client's going away,
// its kill or the pre-login deadline cut short (err), as serve would end
// the session for that input error: with the notice and Dovecot's
// disconnect reason. Auth was told CANCEL by the caller (or by
// authclient.Auth.Next).
func (cl *Client) authInterrupted(err error) AuthOutcome {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		err = os.ErrDeadlineExceeded
	case errors.Is(err, context.Canceled): // killed, or the client hung up (awaitAuth)
		if _, k := cl.killedReason(); !k {
			return AuthOutcome{End: Ending{Why: "Connection closed", Reason: ipc.CloseNormal}}
		}
		err = os.ErrDeadlineExceeded // killed: inputFailure takes the kill's notice and reason
	}
	r, why := cl.inputFailure(err)
	return AuthOutcome{End: Ending{Why: why, Reason: r}}
}

// authRequest is the AUTH request for mech: every field Dovecot's login
// processes send (sasl-server.c).
func (cl *Client) authRequest(mech, ir string, hasIR bool) *authclient.Request {
	// rip/lip: as forwarded by a trusted peer (forward.go); real_*: the
	// connection's own (the proxy's behind a PROXY header).
	id := cl.identity()
	remote, local := addrPortOf(cl.c.RemoteAddr()), addrPortOf(cl.c.LocalAddr())
	req := &authclient.Request{
		Mech: mech, Service: cl.lp.proto.Name(), Session: id.Session,
		Secured: cl.Secured(), TLS: cl.tlsActive || cl.haproxyTLS,
		// No final-resp-ok: Dovecot 2.3's login processes (and
		// Pigeonhole's) all have sasl_support_final_reply off; auth then
		// sends a final response as a challenge (protocol 1.3 always
		// sends the flag, and authclient turns resp= into a challenge).
		LocalAddr: id.Local, RemoteAddr: id.Remote,
		RealLocalAddr: local, RealRemoteAddr: remote, ForwardFields: id.ForwardFields,
		LocalName:       cl.sni,
		InitialResponse: authclient.Secret(ir), HasInitialResponse: hasIR,
	}
	if cl.haproxy {
		req.RealLocalAddr, req.RealRemoteAddr = cl.realLocal, cl.realRemote
	}
	return req
}

// addrPortOf is a's address and port, unmapped (the zero AddrPort if a
// is not TCP).
func addrPortOf(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		ap := t.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}
