package login

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/ipc"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login/forward"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login/input"
)

// Client is one connection inside a login process: what is common to
// every protocol (the socket, TLS, the access checks, the PROXY header,
// the deadline, the disconnect line). Its protocol's Session holds the
// rest; a Session may call the exported methods, from the client's
// serving goroutine, and nothing else of the process.
type Client struct {
	id       uint64
	lp       *loginProc
	c        clientConn // the socket: access checks, deadlines
	conn     net.Conn   // what the protocol reads and writes: c, or TLS over it
	accepted time.Time
	done     *sync.WaitGroup // set by shutdown, under lp.mu
	greeted  bool            // the greeting was sent before serve (no access checks)
	// greetFailed: writing that greeting failed (the Client is gone).
	greetFailed bool
	// reportedLoggingIn: accept reported the Client as logging in
	// (greeted, or TLS with no check to wait for); serve does not.
	reportedLoggingIn bool
	// implicitTLS: accepted on an ssl = yes listener (TLS handshake
	// after the access check, then the greeting); tlsActive: TLS is on;
	// wantTLS: STARTTLS/STLS was accepted, the handshake follows the
	// reply. Only the serving goroutine touches these.
	implicitTLS, tlsActive, wantTLS bool
	// haproxy: accepted on a haproxy = yes listener (the PROXY header
	// comes first, see haproxy.go); haproxyTLS: the proxy said it
	// terminated TLS for the Client (v2 SSL TLV), which makes the Client
	// secured (docs/loginsvc.md).
	haproxy, haproxyTLS bool
	// realRemote, realLocal: behind a PROXY header, the connection's own
	// addresses (the proxy's); sni: the TLS client's server name.
	realRemote, realLocal netip.AddrPort
	sni                   string
	auth                  clientAuth // authentication (auth.go)
	// fwd: what a trusted peer forwarded (forward.go).
	fwd forward.State
	// relaying: logged in over TLS, the relay runs (relay.go); a
	// shutdown leaves the client alone.
	relaying atomic.Bool

	mu     sync.Mutex
	reason ipc.CloseReason
	killed bool

	out     string  // corked replies (Queue, Flush)
	session Session // the protocol's state

	who whoState // what the supervisor was told for the admin view (who.go)
}

// kill makes the serving goroutine stop with reason (the notice is
// written by that goroutine, never concurrently with a reply).
func (cl *Client) kill(r ipc.CloseReason) {
	cl.mu.Lock()
	if !cl.killed {
		cl.killed, cl.reason = true, r
	}
	cl.mu.Unlock()
	cl.c.SetReadDeadline(time.Unix(1, 0))
	cl.cancelAuth()
}

func (cl *Client) killedReason() (ipc.CloseReason, bool) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.reason, cl.killed
}

func (cl *Client) write(s string) error {
	cl.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := cl.conn.Write([]byte(s))
	return err
}

// maxCorked is how many bytes of replies are held back at most (Dovecot's
// login output buffer).
const maxCorked = 4096

// Queue adds replies to the output, which is corked while the client's
// input is being processed, as Dovecot's is: the replies to pipelined
// commands go out in one write, before the process waits for more input
// (Flush, called by the input buffer), with a notice, or when more than
// maxCorked bytes are waiting. One write per batch also keeps a reply
// from being held back by Nagle's algorithm behind an earlier one and
// then lost when the process closes a socket with input unread (a
// reset).
func (cl *Client) Queue(s string) error {
	if cl.out == "" {
		cl.out = s
	} else {
		cl.out += s
	}
	if len(cl.out) > maxCorked {
		return cl.Flush()
	}
	return nil
}

// Flush writes the queued replies; an error is a *writeError.
func (cl *Client) Flush() error {
	if cl.out == "" {
		return nil
	}
	err := cl.write(cl.out)
	cl.out = ""
	if err != nil {
		return &writeError{err}
	}
	return nil
}

// writeError is a failed write to the client.
type writeError struct{ err error }

func (e *writeError) Error() string { return "write: " + e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

// serve runs the client: access check, greeting, commands, until it
// leaves or is dropped. The pre-login deadline is absolute from accept.
// A Client that passed the checks (haproxy header, access sockets) is
// logged when it goes, as Dovecot's login processes do (disconnect.go).
func (cl *Client) serve() {
	reason := ipc.CloseNormal
	why := "" // Dovecot's disconnect reason; "" logs nothing
	defer func() {
		if why != "" {
			// The addresses are needed after Close, which ends the
			// socket before the line is written.
			cl.c.RemoteAddr()
			cl.c.LocalAddr()
		}
		cl.conn.Close()
		if why != "" && !cl.auth.loggedIn { // a Login line was logged instead
			cl.logDisconnect(why)
		}
		cl.lp.finished(cl, reason)
	}()
	if cl.greetFailed {
		reason, why = ipc.CloseError, "Connection closed"
		return
	}
	deadline := cl.accepted.Add(cl.lp.in.PreloginTimeout)
	if !cl.greeted {
		if cl.haproxy {
			if r, ok := cl.proxyHeader(deadline); !ok {
				reason = r
				return
			}
		}
		if r, ok := cl.access(); !ok {
			reason = r
			return
		}
		if r, k := cl.killedReason(); k {
			reason, why = r, closeWhy(r)
			if r != ipc.CloseRefused && !cl.implicitTLS { // no plaintext to a TLS client
				cl.write(cl.session.Notice(noticeFor(r)))
			}
			return
		}
		// A Client in its TLS handshake is logging in (evictable), as in
		// Dovecot.
		if !cl.reportedLoggingIn {
			cl.lp.rep.Now(ipc.MsgState, cl.id, uint8(ipc.StateLoggingIn), ipc.Accept{})
		}
		if cl.implicitTLS {
			if err := cl.handshake(deadline); err != nil {
				reason = cl.tlsFailure(err)
				return
			}
		}
		if r, w, ok := cl.awaitAuth(deadline); !ok {
			reason, why = r, w
			return
		}
		if err := cl.write(cl.session.Greeting()); err != nil {
			reason, why = ipc.CloseError, "Connection closed"
			return
		}
	}
	cl.c.SetReadDeadline(deadline)
	if _, k := cl.killedReason(); k { // killed while greeting
		cl.c.SetReadDeadline(time.Unix(1, 0))
	}
	in := input.New(cl.conn, cl)
	cl.auth.in = in
	for {
		reply, end, err := cl.session.Next(in)
		if qerr := cl.Queue(reply); qerr != nil && err == nil {
			err = qerr
		}
		if end.Why != "" {
			reason, why = end.Reason, end.Why
			if cl.Flush() != nil && !cl.auth.loggedIn {
				why = "Connection closed"
			}
			if cl.auth.relay != nil && cl.relay(cl.auth.relay) {
				reason = ipc.CloseShutdown
			}
			return
		}
		if err != nil {
			reason, why = cl.inputFailure(err)
			return
		}
		if cl.wantTLS {
			cl.wantTLS = false
			if err := cl.Flush(); err != nil {
				reason, why = ipc.CloseError, "Connection closed"
				return
			}
			// Plaintext pipelined after STARTTLS is dropped, never run
			// as if it had come over TLS (the CVE-2011-0411 class).
			in.Discard()
			if err := cl.handshake(deadline); err != nil {
				reason = cl.tlsFailure(err)
				return
			}
			cl.c.SetReadDeadline(deadline)
			if _, k := cl.killedReason(); k {
				cl.c.SetReadDeadline(time.Unix(1, 0))
			}
			in.Reset(cl.conn)
			if g, ok := cl.session.(TLSGreeter); ok {
				cl.Queue(g.AfterTLS())
			}
		}
	}
}

// inputFailure handles an input error: the queued replies and the
// notice to the Client (if any) are written, and the close reason and
// Dovecot's disconnect reason are returned.
func (cl *Client) inputFailure(err error) (ipc.CloseReason, string) {
	defer cl.Flush()
	if r, k := cl.killedReason(); k {
		cl.Queue(cl.session.Notice(noticeFor(r)))
		return r, closeWhy(r)
	}
	var ne net.Error
	var we *writeError
	switch {
	case errors.As(err, &we):
		return ipc.CloseError, "Connection closed"
	case errors.Is(err, input.ErrFull):
		cl.Queue(cl.session.Notice(NoticeInputFull))
		return ipc.CloseError, "Input buffer full"
	case errors.Is(err, input.ErrAuthTooLarge):
		return ipc.CloseError, "Authentication response too large"
	case errors.As(err, &ne) && ne.Timeout():
		cl.Queue(cl.session.Notice(NoticeTimeout))
		return ipc.CloseTimeout, closeWhy(ipc.CloseTimeout)
	case errors.Is(err, io.EOF):
		return ipc.CloseNormal, "Connection closed"
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return ipc.CloseNormal, "Connection closed: read(size=" + strconv.Itoa(input.MaxLine) + ") failed: " + capitalize(errno.Error())
	}
	return ipc.CloseNormal, "Connection closed"
}

// handshake runs the server side of a TLS handshake on the client's
// socket, bounded by the pre-login deadline (and cut short by kill), and
// makes TLS the connection's transport.
func (cl *Client) handshake(deadline time.Time) error {
	tc := tls.Server(cl.c, cl.lp.tls)
	cl.c.SetDeadline(deadline)
	if _, k := cl.killedReason(); k { // a kill before SetDeadline must not be lost
		cl.c.SetReadDeadline(time.Unix(1, 0))
	}
	err := tc.Handshake()
	cl.c.SetWriteDeadline(time.Time{})
	if err != nil {
		return err
	}
	cl.conn, cl.tlsActive = tc, true
	cl.sni = tc.ConnectionState().ServerName
	return nil
}

// tlsFailure logs a failed handshake (Dovecot: "Disconnected ... TLS
// handshaking: ...") and returns the close reason. A Client killed in
// its handshake (evicted, shut down) gets the usual disconnect line.
func (cl *Client) tlsFailure(err error) ipc.CloseReason {
	if r, k := cl.killedReason(); k {
		cl.logDisconnect(closeWhy(r))
		return r
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		logLine("INFO", "Disconnected: Inactivity during TLS handshake (rip=%s)", ipString(cl.identity().Remote.Addr()))
		return ipc.CloseTimeout
	}
	logLine("INFO", "Disconnected: TLS handshaking: %v (rip=%s)", err, ipString(cl.identity().Remote.Addr()))
	return ipc.CloseError
}

// TLSOffered reports whether TLS can be started (ssl is not no):
// STARTTLS and STLS are offered while it is not active.
func (cl *Client) TLSOffered() bool { return cl.lp.tls != nil }

// TLSActive reports whether the connection is TLS.
func (cl *Client) TLSActive() bool { return cl.tlsActive }

// StartTLS makes the client's TLS handshake follow the reply of the
// current command (STARTTLS, STLS); input pipelined behind the command
// is dropped.
func (cl *Client) StartTLS() { cl.wantTLS = true }

// Secured reports whether the connection counts as secured, as Dovecot
// says: TLS is on, the proxy terminated TLS (a PROXY header's SSL TLV),
// the client is in login_trusted_networks, or it connected from the
// local address itself (rip == lip, not through a proxy).
func (cl *Client) Secured() bool { return cl.tlsActive || cl.securedPlain() }

// securedPlain is Secured without TLS.
func (cl *Client) securedPlain() bool {
	remote, local := addrOf(cl.c.RemoteAddr()), addrOf(cl.c.LocalAddr())
	return cl.haproxyTLS || inNetworks(cl.lp.trusted, remote) || !cl.haproxy && remote.IsValid() && remote == local
}

// ProxiedTLS reports whether a PROXY header said that the proxy
// terminated TLS for the client.
func (cl *Client) ProxiedTLS() bool { return cl.haproxyTLS }

// SetState tells the supervisor that the client is now in state s
// (ipc.StateProxying once it is handed on).
func (cl *Client) SetState(s ipc.ConnState) {
	cl.lp.rep.Now(ipc.MsgState, cl.id, uint8(s), ipc.Accept{})
}

// LoginGreeting is the service's login_greeting.
func (cl *Client) LoginGreeting() string { return cl.lp.in.Greeting }

// Hostname is the host's name (the submission greeting's).
func (cl *Client) Hostname() string { return cl.lp.host }

// RemoteAddr is the client's address (that of a PROXY header on a
// haproxy = yes listener).
func (cl *Client) RemoteAddr() net.Addr { return cl.c.RemoteAddr() }

// LocalAddr is the address the client connected to (that of a PROXY
// header on a haproxy = yes listener).
func (cl *Client) LocalAddr() net.Addr { return cl.c.LocalAddr() }
