package login

import (
	"net"
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
// is killed (service shutdown).
func (cl *Client) relay(peer *os.File) {
	cl.c.SetDeadline(time.Time{})
	if _, k := cl.killedReason(); k { // a kill before SetDeadline must not be lost
		peer.Close()
		return
	}
	pc, err := net.FileConn(peer)
	peer.Close()
	if err != nil {
		logLine("ERROR", "relay: %v (%s)", err, cl.elements(0))
		return
	}
	relay.Run(cl.conn, pc)
}
