package login

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/tcpwrapd/tcpwrapd/pkg/dovecot/authclient"
	"github.com/tcpwrapd/tcpwrapd/pkg/dovecot/masterauth"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/ipc"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login/sasl"
)

// handOff passes a client auth said OK for to the post-login service
// (masterauth.Send, docs/dovecot-auth.md): its socket is the service's
// postlogin_socket unless auth named another (postlogin_socket=), the
// request's layout follows the auth handshake's version (1.2: Dovecot
// 2.3, 1.3: 2.4), and its data is the session id, prefix and every byte
// of client input not yet used (pipelined commands run after the
// login). A plaintext client's own socket is sent; a TLS client gets a
// socketpair whose other end this process relays (relay.go) for the
// whole session. On success the Login line is logged as Dovecot 2.3
// logs it; on failure auth's request is cancelled, the client is told
// Dovecot's internal-error text and the session ends.
func (cl *Client) handOff(a *authclient.Auth, hs authclient.Handshake, r *authclient.Reply, prefix []byte) AuthOutcome {
	st := &cl.auth.st
	layout := masterauth.Dovecot23
	if hs.Spoken.Minor >= 3 {
		layout = masterauth.Dovecot24
	}
	path := r.PostloginSocket
	if path == "" {
		path = cl.lp.in.PostloginSocket
	}
	if path == "" {
		path = cl.lp.proto.Name()
	}
	id := cl.identity() // as a trusted peer forwarded it (forward.go)
	req := &masterauth.Request{
		AuthPID: a.ServerPID(), AuthID: a.ID(), ClientPID: a.ClientPID(), Cookie: a.Cookie(),
		LocalAddr: id.Local, RemoteAddr: id.Remote,
		Data: masterauth.Data(id.Session, prefix, cl.auth.in.Data()),
	}
	if layout == masterauth.Dovecot23 && cl.Secured() {
		req.Flags |= masterauth.FlagConnSecured
	}
	if cl.tlsActive || cl.haproxyTLS {
		req.Flags |= masterauth.FlagConnSSLSecured // 2.4: FlagEndClientSecuredTLS, the same bit
	}
	var send syscall.Conn = cl.c
	var ours, theirs *os.File
	if cl.tlsActive {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			logLine("ERROR", "socketpair() failed: %v", err)
			return cl.handOffFailed(a)
		}
		// Our end non-blocking before os.NewFile, which then puts it
		// in the netpoller for the relay (no dup, no probing as
		// net.FileConn would); theirs stays as the post-login process
		// expects it.
		unix.SetNonblock(fds[0], true)
		ours, theirs = os.NewFile(uintptr(fds[0]), "relay"), os.NewFile(uintptr(fds[1]), "post-login")
		send = theirs
	}
	// Bounded by masterauth's own timeout and the client's kill, not the
	// pre-login deadline (Dovecot's master auth request has its own).
	rep, err := masterauth.Send(cl.killContext(), path, layout, req, send, masterauth.Options{})
	if theirs != nil {
		theirs.Close()
	}
	if err != nil {
		if ours != nil {
			ours.Close()
		}
		logLine("ERROR", "%v (%s)", err, cl.elements(0))
		return cl.handOffFailed(a)
	}
	cl.auth.in.Discard()
	st.Finishing = false
	cl.auth.loggedIn = true
	mpid := uint32(rep.MailPID)
	cl.auth.mpid = mpid
	processLog.Add("INFO", "Login: "+cl.elements(mpid))
	cl.reportLogin(st.User, st.Mech, mpid)
	if ours != nil {
		cl.auth.relay = ours
		cl.relaying.Store(true)
		cl.SetState(ipc.StateProxying)
	}
	return AuthOutcome{Result: AuthSuccess, End: Ending{Why: "Login", Reason: ipc.CloseNormal}}
}

// handOffFailed ends a session whose hand-off failed, as Dovecot's
// SASL_SERVER_REPLY_MASTER_FAILED does: auth forgets the request, the
// client gets the internal-error notice and the disconnect line says
// "Internal login failure (pid=PID id=ID)".
func (cl *Client) handOffFailed(a *authclient.Auth) AuthOutcome {
	a.Cancel()
	cl.auth.st.Finishing = false
	cl.auth.noExtra = true
	cl.Queue(cl.session.Notice(NoticeInternalError))
	cl.Flush()
	why := fmt.Sprintf("Internal login failure (pid=%d id=%d)", os.Getpid(), a.ID())
	return AuthOutcome{Result: AuthTempFail, End: Ending{Why: why, Reason: ipc.CloseError}}
}

// elements are the client's login log elements with mail pid mpid (0:
// none): "user=<u>, method=M, rip=IP, lip=IP[, mpid=N][, TLS|, secured], session=<ID>".
func (cl *Client) elements(mpid uint32) string {
	conn := ""
	switch {
	case cl.tlsActive:
		conn = "TLS"
	case cl.securedPlain():
		conn = "secured"
	}
	id := cl.identity() // as a trusted peer forwarded it (forward.go)
	return sasl.Elements{
		User: cl.auth.st.User, Mech: cl.auth.st.Mech,
		RemoteIP: ipString(id.Remote.Addr()), LocalIP: ipString(id.Local.Addr()),
		MailPID: mpid, Conn: conn, Session: id.Session,
	}.String()
}
