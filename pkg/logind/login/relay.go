package login

import (
	"os"
	"time"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login/relay"
)

// relay runs the TLS relay of a client handed off over TLS: the
// post-login process has the other end of the socketpair peer, this
// process decrypts and encrypts for the whole session, as Dovecot's
// login processes do (client_get_plaintext_fd). The client is
// ipc.StateProxying meanwhile: never evicted, counted against its
// process's client_limit (high-performance) or keeping its process
// (high-security). It ends when either side is done (Dovecot's
// iostream proxy finishes at the first side's end), or when the client
// is killed (a shutdown with shutdown_clients = yes: ipc.StopShutdown):
// then both sides are closed, the disconnect line Dovecot's login
// processes log for a logged-in session their shutdown ends is logged
// (shutdownWhy), and killed is true.
func (cl *Client) relay(peer *os.File) (killed bool) {
	defer func() {
		if _, killed = cl.killedReason(); killed {
			logLine("INFO", "Disconnected by proxy: %s: %s", shutdownWhy, cl.elements(cl.auth.mpid))
		}
	}()
	cl.c.SetDeadline(time.Time{})
	if _, k := cl.killedReason(); k { // a kill before SetDeadline must not be lost
		peer.Close()
		return
	}
	relay.Run(cl.conn, peer, cl.lp.workers.Go) // peer: non-blocking, in the netpoller (handOff)
	return
}

// shutdownWhy is the reason logged for a relayed session ended by its
// process's shutdown, after "Disconnected by proxy: ": Dovecot 2.3's
// login processes log it for the logged-in sessions they proxy
// (login-proxy.c, KILLED_BY_SHUTDOWN_REASON).
const shutdownWhy = "Process shutting down"
