package logintest

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login"
)

// Fuzz runs FuzzSession as f's fuzz target, with seeds added to the
// corpus.
func Fuzz(f *testing.F, mk func(auth func(*login.Client) login.Authenticator) login.Protocol, seeds ...string) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) { FuzzSession(t, mk, data) })
}

// FuzzSession serves data to a session of the protocol mk builds (with a
// FakeAuth, plaintext allowed when data's first byte is even), the input
// ending after it, and fails t unless the session ends within 10 s
// without a panic: every command consumes input, and the end of input
// ends every wait (a reply, an authentication's continuation).
func FuzzSession(t *testing.T, mk func(auth func(*login.Client) login.Authenticator) login.Protocol, data []byte) {
	fake := &FakeAuth{Plaintext: len(data) == 0 || data[0]%2 == 0}
	p := inputRecorder{mk(func(c *login.Client) login.Authenticator {
		fake.c = c
		return fake
	}), fake}
	done := make(chan struct{})
	go func() {
		defer close(done)
		login.ServeConn(p, &scriptConn{r: bytes.NewReader(data)}, Greeting, Hostname, time.Minute)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("the session did not end after %d bytes of input", len(data))
	}
}

// scriptConn is a net.Conn whose input is a script that ends, and whose
// output is dropped.
type scriptConn struct{ r io.Reader }

func (c *scriptConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *scriptConn) Write(p []byte) (int, error) { return len(p), nil }
func (c *scriptConn) Close() error                { return nil }
func (c *scriptConn) LocalAddr() net.Addr         { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 110} }
func (c *scriptConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }
