package smtpdpolicy

import (
	"bufio"
	"context"
	"io"
	"net"
	"testing"
	"time"
)

// TestServeConnDeadlines: a busy connection does not set its socket
// deadlines per request (each is a runtime timer update), and every
// request is answered.
func TestServeConnDeadlines(t *testing.T) {
	s := &Server{Check: compile("", "ALL: 127.0.0.2\n")}
	s.init()
	c := &loopConn{tb: t, block: []byte(rcpt(t, "127.0.0.1", "unknown", "unknown")), max: 1000, want: "action=DUNNO\n\n"}
	s.serveConn(context.Background(), c, func(bool, time.Time) {})
	if c.n != c.max || c.pending {
		t.Fatalf("%d of %d requests answered", c.n, c.max)
	}
	// The first read's, the first idle wait's and the first write's.
	if c.deadlines > 3 {
		t.Errorf("%d deadlines set for %d requests, want at most 3", c.deadlines, c.max)
	}
}

// BenchmarkServeConn measures the front end's own work per request, with
// no network: one connection's loop (serveConn) reads Postfix 3.7's RCPT
// block from an in-memory connection, checks it against a 1-line
// hosts.deny and writes the reply, next to a null responder that reads
// the block line by line with bufio and answers DUNNO. deadlines/op
// counts the socket deadlines set per request (each one a runtime timer
// update on a real socket).
func BenchmarkServeConn(b *testing.B) {
	block := []byte(rcpt(b, "127.0.0.1", "unknown", "unknown"))
	b.Run("server", func(b *testing.B) {
		s := &Server{Check: compile("", "ALL: 127.0.0.2\n")}
		s.init()
		c := &loopConn{tb: b, block: block, max: b.N, want: "action=DUNNO\n\n"}
		b.ReportAllocs()
		b.ResetTimer()
		s.serveConn(context.Background(), c, func(bool, time.Time) {})
		b.StopTimer()
		if c.n != b.N || c.pending {
			b.Fatalf("%d of %d requests answered", c.n, b.N)
		}
		b.ReportMetric(float64(c.deadlines)/float64(b.N), "deadlines/op")
	})
	b.Run("null-responder", func(b *testing.B) {
		c := &loopConn{tb: b, block: block, max: b.N, want: "action=DUNNO\n\n"}
		b.ReportAllocs()
		b.ResetTimer()
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadSlice('\n')
			if err != nil {
				break
			}
			if len(line) == 1 {
				c.Write([]byte("action=DUNNO\n\n"))
			}
		}
		if c.n != b.N || c.pending {
			b.Fatalf("%d of %d requests answered", c.n, b.N)
		}
	})
}

// loopConn is a connection whose peer sends block max times, each after
// the reply to the previous one, then closes; replies must be want.
type loopConn struct {
	net.Conn // nil: the methods not defined here are not called
	tb       testing.TB
	block    []byte
	want     string
	n, max   int
	pending  bool // a block was sent, its reply not yet written
	// deadlines counts Set*Deadline calls.
	deadlines int
}

func (c *loopConn) Read(p []byte) (int, error) {
	if c.pending {
		c.tb.Fatal("read before the reply")
	}
	if c.n == c.max {
		return 0, io.EOF
	}
	c.n++
	c.pending = true
	return copy(p, c.block), nil
}

func (c *loopConn) Write(p []byte) (int, error) {
	if string(p) != c.want {
		c.tb.Fatalf("reply %q, want %q", p, c.want)
	}
	c.pending = false
	return len(p), nil
}

func (c *loopConn) RemoteAddr() net.Addr               { return &net.UnixAddr{Net: "unix"} }
func (c *loopConn) SetDeadline(t time.Time) error      { c.deadlines++; return nil }
func (c *loopConn) SetReadDeadline(t time.Time) error  { c.deadlines++; return nil }
func (c *loopConn) SetWriteDeadline(t time.Time) error { c.deadlines++; return nil }
