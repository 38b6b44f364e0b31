package accessbench

import (
	"fmt"
	"net"
	"net/netip"
	"syscall"
)

// tcpSource hands out accepted, server-side loopback TCP sockets whose peer
// is a given client address: what a login passes to an access service.
type tcpSource struct {
	ln  *net.TCPListener
	src netip.Addr
}

func newTCPSource(src netip.Addr) (*tcpSource, error) {
	listen := netip.IPv4Unspecified()
	if src.Is6() {
		listen = netip.IPv6Loopback()
	} else if src.IsLoopback() {
		listen = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(listen, 0)))
	if err != nil {
		return nil, fmt.Errorf("listen tcp: %w", err)
	}
	return &tcpSource{ln: ln, src: src}, nil
}

func (t *tcpSource) Close() error { return t.ln.Close() }

// tcpPair is one established connection: the client end we dialed and a
// dup of the accepted server end's fd (it shares the O_NONBLOCK open file
// description with the accepted conn, like the fd a login passes).
type tcpPair struct {
	client, server *net.TCPConn
	fd             int
}

// pair dials the listener from the client address and returns both ends.
func (t *tcpSource) pair() (*tcpPair, error) {
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(t.src, 0))}
	type acc struct {
		c   *net.TCPConn
		err error
	}
	ch := make(chan acc, 1)
	go func() {
		c, err := t.ln.AcceptTCP()
		ch <- acc{c, err}
	}()
	cl, err := d.Dial("tcp", t.ln.Addr().String())
	if err != nil {
		// unblock the acceptor by a connection from the default address
		if c2, err2 := net.Dial("tcp", t.ln.Addr().String()); err2 == nil {
			c2.Close()
		}
		if a := <-ch; a.c != nil {
			a.c.Close()
		}
		return nil, fmt.Errorf("dial from %v: %w", t.src, err)
	}
	a := <-ch
	if a.err != nil {
		cl.Close()
		return nil, fmt.Errorf("accept: %w", a.err)
	}
	p := &tcpPair{client: cl.(*net.TCPConn), server: a.c, fd: -1}
	rc, err := a.c.SyscallConn()
	if err == nil {
		cerr := rc.Control(func(fd uintptr) {
			p.fd, err = syscall.Dup(int(fd))
		})
		if err == nil {
			err = cerr
		}
	}
	if err != nil {
		p.close()
		return nil, fmt.Errorf("dup accepted fd: %w", err)
	}
	syscall.CloseOnExec(p.fd)
	return p, nil
}

func (p *tcpPair) close() {
	if p.fd >= 0 {
		syscall.Close(p.fd)
		p.fd = -1
	}
	p.client.Close()
	p.server.Close()
}
