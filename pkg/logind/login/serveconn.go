package login

import (
	"errors"
	"net"
	"syscall"
	"time"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/ipc"
)

// clientConn is a client's connection: a sockfd.Conn in a login process,
// any net.Conn under ServeConn.
type clientConn interface {
	net.Conn
	syscall.Conn // for the access checks (SCM_RIGHTS)
	// Peek and SetAddrs read a PROXY header (haproxy.go).
	Peek(p []byte) (int, error)
	SetAddrs(remote, local net.Addr)
}

// plainConn is a net.Conn as a clientConn without a socket: no access
// checks, no PROXY header.
type plainConn struct{ net.Conn }

func (plainConn) SyscallConn() (syscall.RawConn, error) { return nil, errors.ErrUnsupported }
func (plainConn) Peek([]byte) (int, error)              { return 0, errors.ErrUnsupported }
func (plainConn) SetAddrs(net.Addr, net.Addr)           {}

// ServeConn runs p's pre-login protocol for one client on c as a login
// process does once the client has passed its access checks, but with
// no process around it: the greeting (greeting is login_greeting, host
// the host name), then the client's commands until the session ends or
// c fails, with the pre-login deadline timeout from now. It closes c
// and returns when the client is gone. No TLS is offered, nothing is
// reported to a supervisor, and the disconnect line goes to stderr. It
// is how the protocols are tested over net.Pipe (logintest.Transcripts).
func ServeConn(p Protocol, c net.Conn, greeting, host string, timeout time.Duration) {
	lp := &loginProc{in: &ipc.Settings{Greeting: greeting, PreloginTimeout: timeout}, proto: p, host: host,
		clients: map[uint64]*Client{}, exit: make(chan int, 1)}
	cl := &Client{id: 1, lp: lp, c: plainConn{c}, conn: c, accepted: time.Now()}
	cl.session = p.NewSession(cl)
	lp.clients[cl.id] = cl
	lp.served++
	cl.serve()
}
