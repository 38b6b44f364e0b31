package login

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"time"

	"github.com/tcpwrapd/tcpwrapd/internal/sockfd"
	"github.com/tcpwrapd/tcpwrapd/pkg/dovecot/authclient"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/ipc"
)

// startAuth starts the login process's one connection to Dovecot's auth
// (login_socket_path, relative to the chroot), after the sandbox: CPID
// is the process's pid, unique among the login processes; authclient
// reconnects with Dovecot's back-off when it breaks. nil when no auth
// socket is set.
func startAuth(in *ipc.Settings) *authclient.Client {
	if in.AuthSocket == "" {
		return nil
	}
	return authclient.New(authclient.Config{
		Path:   in.AuthSocket,
		PID:    uint32(os.Getpid()),
		Logger: slog.New(processLog.Handler("auth: ")),
	})
}

// authWaitWarning is how long a client waits for auth before Dovecot
// warns and tells it (AUTH_WAITING_WARNING_TIMEOUT_MSECS).
const authWaitWarning = 10 * time.Second

// authReady reports whether a client may be greeted at once: no auth
// socket is set, auth is connected, or its socket does not exist at all
// (no Dovecot behind loginsvc: logins then fail with a temporary
// failure instead of every greeting waiting).
func (lp *loginProc) authReady() bool {
	return lp.auth == nil || lp.authConnected() || lp.authSocketMissing()
}

// authConnected reports whether auth's handshake is done.
func (lp *loginProc) authConnected() bool {
	_, ok := lp.auth.Handshake()
	return ok
}

// authAbsent reports whether auth is not connected and its socket does
// not exist.
func (lp *loginProc) authAbsent() bool {
	return !lp.authConnected() && lp.authSocketMissing()
}

// authSocketMissing reports whether the auth socket does not exist.
func (lp *loginProc) authSocketMissing() bool {
	_, err := os.Stat(lp.in.AuthSocket)
	return errors.Is(err, os.ErrNotExist)
}

// awaitAuth holds the greeting until auth is connected, as Dovecot's
// login processes do: after 10 s it logs a warning and tells the client
// (NoticeAuthWaiting), and it gives up at the pre-login deadline, when
// the client is killed or hangs up (ok false, with the close reason and
// Dovecot's disconnect reason).
func (cl *Client) awaitAuth(deadline time.Time) (ipc.CloseReason, string, bool) {
	if cl.lp.authReady() {
		cl.auth.st.AuthReady = true
		return ipc.CloseNormal, "", true
	}
	ctx, cancel := context.WithDeadline(cl.killContext(), deadline)
	defer cancel()
	// Dovecot reads the client's input while it waits (an EOF destroys
	// the client); the input is left for the session here.
	stop := sockfd.WatchHangup(cl.c, cancel)
	defer stop() // the caller sets the read deadline
	wctx, wcancel := context.WithTimeout(ctx, authWaitWarning)
	_, err := cl.lp.auth.WaitReady(wctx)
	wcancel()
	if err != nil && ctx.Err() == nil {
		logLine("WARN", "Auth process not responding, delayed sending initial response (greeting) (rip=%s)", remoteIP(cl.c))
		if n := cl.session.Notice(NoticeAuthWaiting); n != "" && cl.write(n) != nil {
			return ipc.CloseNormal, "Connection closed", false
		}
		_, err = cl.lp.auth.WaitReady(ctx)
	}
	if err != nil {
		o := cl.authInterrupted(err)
		cl.Flush()
		return o.End.Reason, o.End.Why, false
	}
	cl.auth.st.AuthReady = true
	return ipc.CloseNormal, "", true
}
