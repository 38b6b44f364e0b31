package sockfd

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// pair is a loopback TCP connection: the server side as a *Conn (made
// from an accept4'd non-blocking descriptor, as a login process makes
// it) and the client side.
func pair(t *testing.T) (*Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	rc, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var nfd int
	var aerr error
	// Dial returned: the connection is in the listen queue.
	if err := rc.Control(func(fd uintptr) {
		nfd, _, aerr = unix.Accept4(int(fd), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
	}); err != nil || aerr != nil {
		t.Fatal(err, aerr)
	}
	c := NewConn(nfd, nil)
	t.Cleanup(func() { c.Close() })
	return c, cc
}

// TestWatchHangup: the peer's close is seen, also behind unread input,
// which stays unread; the watch of a quiet peer stops at once.
func TestWatchHangup(t *testing.T) {
	for _, tc := range []struct {
		name  string
		input string // sent before the close
	}{
		{"close", ""},
		{"input then close", "a LOGIN u p\r\nb SELECT INBOX\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, cc := pair(t)
			hup := make(chan struct{})
			stop := WatchHangup(c, func() { close(hup) })
			if tc.input != "" {
				if _, err := cc.Write([]byte(tc.input)); err != nil {
					t.Fatal(err)
				}
			}
			cc.Close()
			select {
			case <-hup:
			case <-time.After(10 * time.Second):
				t.Fatal("the peer's close was not seen")
			}
			stop()
			c.SetReadDeadline(time.Time{})
			got, err := io.ReadAll(c)
			if err != nil || string(got) != tc.input {
				t.Errorf("input after the watch: %q, %v; want %q", got, err, tc.input)
			}
		})
	}
	t.Run("stop", func(t *testing.T) {
		// A poll in steps of 100 ms made each stop, once the watch had
		// started waiting, wait for the step to end (rounds × 100 ms);
		// the netpoller wakes it at once.
		c, cc := pair(t)
		cc.Write([]byte("x")) // readable, not closed
		looked := make(chan struct{}, 1)
		watchLooked = func() {
			select {
			case looked <- struct{}{}:
			default:
			}
		}
		defer func() { watchLooked = nil }()
		const rounds = 100
		start := time.Now()
		for range rounds {
			stop := WatchHangup(c, func() { t.Error("hup without a hang-up") })
			<-looked // the watch is waiting
			stop()
			c.SetReadDeadline(time.Time{})
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%d watches took %v to stop", rounds, d)
		}
		b := make([]byte, 2)
		if n, err := c.Read(b); n != 1 || err != nil {
			t.Errorf("input after the watches: %q, %v", b[:n], err)
		}
	})
}

// TestConnAddrs: a Conn made without the client's address asks the
// kernel for both (the syscall package's getpeername and getsockname).
func TestConnAddrs(t *testing.T) {
	c, cc := pair(t)
	if got, want := c.RemoteAddr().String(), cc.LocalAddr().String(); got != want {
		t.Errorf("RemoteAddr %s, want %s", got, want)
	}
	if got, want := c.LocalAddr().String(), cc.RemoteAddr().String(); got != want {
		t.Errorf("LocalAddr %s, want %s", got, want)
	}
}

// TestConnReadWrite: Read and Write, raw system calls under the
// netpoller, give os.File's results: data, io.EOF at the peer's close,
// the errno of a reset as an *os.PathError, a timeout past the read
// deadline, a write larger than the socket buffers while the peer
// reads, and os.ErrClosed after Close.
func TestConnReadWrite(t *testing.T) {
	t.Run("data then EOF", func(t *testing.T) {
		c, cc := pair(t)
		cc.Write([]byte("a LOGOUT\r\n"))
		cc.Close()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		b, err := io.ReadAll(c)
		if string(b) != "a LOGOUT\r\n" || err != nil {
			t.Errorf("ReadAll: %q, %v", b, err)
		}
		if n, err := c.Read(make([]byte, 8)); n != 0 || err != io.EOF {
			t.Errorf("Read after the end: %d, %v; want io.EOF", n, err)
		}
	})
	t.Run("reset", func(t *testing.T) {
		c, cc := pair(t)
		cc.(*net.TCPConn).SetLinger(0)
		cc.Close()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := c.Read(make([]byte, 8))
		var pe *os.PathError
		if !errors.As(err, &pe) || pe.Op != "read" || !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("Read after a reset: %v; want read's *os.PathError with ECONNRESET", err)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		c, _ := pair(t)
		c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		_, err := c.Read(make([]byte, 8))
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("Read past the deadline: %v; want a timeout", err)
		}
	})
	t.Run("large write", func(t *testing.T) {
		c, cc := pair(t)
		big := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MB
		got := make(chan int, 1)
		go func() { n, _ := io.Copy(io.Discard, cc); got <- int(n) }()
		c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if n, err := c.Write(big); n != len(big) || err != nil {
			t.Errorf("Write: %d, %v; want %d", n, err, len(big))
		}
		c.Close()
		if n := <-got; n != len(big) {
			t.Errorf("peer read %d bytes, want %d", n, len(big))
		}
		if _, err := c.Write([]byte("x")); !errors.Is(err, os.ErrClosed) {
			t.Errorf("Write after Close: %v; want os.ErrClosed", err)
		}
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrClosed) {
			t.Errorf("Read after Close: %v; want os.ErrClosed", err)
		}
	})
}

// TestConnReadWriteAllocs: Read and Write allocate nothing (a closure
// per call for the RawConn cost four allocations per write and read,
// on every relayed TLS record of a session).
func TestConnReadWriteAllocs(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	a, b := NewConn(fds[0], nil), NewConn(fds[1], nil)
	defer a.Close()
	defer b.Close()
	msg, buf := []byte("a LOGIN\r\n"), make([]byte, 64)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := a.Write(msg); err != nil {
			t.Fatal(err)
		}
		if n, err := b.Read(buf); err != nil || n != len(msg) {
			t.Fatalf("Read: %d, %v", n, err)
		}
	})
	if allocs != 0 {
		t.Errorf("allocations per Write and Read: %v, want 0", allocs)
	}
}
