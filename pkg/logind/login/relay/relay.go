// Package relay copies a logged-in client's session between its TLS
// connection and the post-login process, as Dovecot's login processes
// do after a hand-off over TLS (client_get_plaintext_fd and the
// iostream proxy; docs/loginsvc.md).
package relay

import (
	"io"
	"net"
	"sync"
	"time"
)

// Run copies client to peer and peer to client until either side is
// done, as Dovecot's iostream proxy finishes at the first side's end:
// then peer is closed and client's deadline is set in the past, so that
// the other direction ends too. It returns when both copies have ended.
// client is left open for the caller to close. peer is the caller's end
// of the socket pair to the post-login process (an *os.File in
// non-blocking mode, which Go's netpoller serves without the dup and
// system calls net.FileConn would cost). The client-to-peer copy runs
// on a goroutine started by spawn (a login process's worker pool, see
// package workpool); nil: a go statement.
func Run(client net.Conn, peer io.ReadWriteCloser, spawn func(func())) {
	var once sync.Once
	end := func() {
		once.Do(func() {
			peer.Close()
			client.SetDeadline(time.Unix(1, 0)) // the client side's read or write ends
		})
	}
	done := make(chan struct{})
	up := func() {
		io.Copy(peer, client)
		end()
		close(done)
	}
	if spawn == nil {
		go up()
	} else {
		spawn(up)
	}
	// The other direction on the caller's goroutine: one goroutine
	// started per session, not two.
	io.Copy(client, peer)
	end()
	<-done
}
