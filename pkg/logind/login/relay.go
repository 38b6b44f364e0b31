package login

import (
	"io"
	"os"
	"sync"
	"time"
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
	pc := peer // non-blocking: in the netpoller (handOff)
	var once sync.Once
	end := func() {
		once.Do(func() {
			pc.Close()
			cl.c.SetDeadline(time.Unix(1, 0)) // the client side's read or write ends
		})
	}
	done := make(chan struct{}, 2)
	pipe := func(dst io.Writer, src io.Reader) {
		io.Copy(dst, src)
		end()
		done <- struct{}{}
	}
	go pipe(pc, cl.conn)
	go pipe(cl.conn, pc)
	<-done
	<-done
}
