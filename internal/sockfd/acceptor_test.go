package sockfd

import (
	"net"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// listen opens n listening sockets on 127.0.0.1 (Listen) and returns
// their descriptors and addresses; the test closes them.
func listen(t *testing.T, n int) ([]int, []string) {
	t.Helper()
	var fds []int
	var addrs []string
	for range n {
		f, err := Listen("tcp4", "127.0.0.1:0", false)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		sa, err := unix.Getsockname(int(f.Fd()))
		if err != nil {
			t.Fatal(err)
		}
		fds = append(fds, int(f.Fd()))
		addrs = append(addrs, AddrPort(sa).String())
	}
	return fds, addrs
}

// nextResult is what Acceptor.Next returned.
type nextResult struct {
	fd  int
	sa  unix.Sockaddr
	err error
}

// goNext runs a.Next(may) in a goroutine.
func goNext(a *Acceptor, may func() bool) <-chan nextResult {
	ch := make(chan nextResult, 1)
	go func() {
		fd, sa, err := a.Next(may)
		ch <- nextResult{fd, sa, err}
	}()
	return ch
}

// waitingState waits until a goroutine is in Acceptor.Next with nothing
// to accept and returns its state as the runtime shows it ("IO wait",
// "syscall", ...).
func waitingState(t *testing.T) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	buf := make([]byte, 1<<20)
	for time.Now().Before(deadline) {
		n := runtime.Stack(buf, true)
		for _, g := range strings.Split(string(buf[:n]), "\n\n") {
			if !strings.Contains(g, "sockfd.(*Acceptor).Next") {
				continue
			}
			head, _, _ := strings.Cut(g, "\n")
			_, state, _ := strings.Cut(head, "[")
			state, _, _ = strings.Cut(state, "]")
			state, _, _ = strings.Cut(state, ",")
			if state != "running" && state != "runnable" {
				return state
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("no goroutine waiting in Acceptor.Next")
	return ""
}

// TestAcceptorWaitsInNetpoller: a Next with nothing to accept waits in
// the Go netpoller ("IO wait"), not in a blocking epoll_wait that holds
// a P in a system call (which keeps the runtime's sysmon polling every
// 20 µs); a connection then wakes it, on each listener in turn; Stop
// ends a waiting Next with ErrClosed; may saying no after a wake-up is
// ErrNotNow, with the connection left queued.
func TestAcceptorWaitsInNetpoller(t *testing.T) {
	fds, addrs := listen(t, 2)
	a, err := NewAcceptor(fds)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Release()
	for i, addr := range append(addrs, addrs...) {
		ch := goNext(a, nil)
		if st := waitingState(t); st != "IO wait" {
			t.Fatalf("connection %d: Next waits in state %q, want IO wait (the netpoller)", i, st)
		}
		c, err := net.Dial("tcp4", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		select {
		case r := <-ch:
			if r.err != nil {
				t.Fatalf("connection %d: %v", i, r.err)
			}
			unix.Close(r.fd)
			if got, want := AddrPort(r.sa), netip.MustParseAddrPort(c.LocalAddr().String()); got != want {
				t.Errorf("connection %d: peer %v, want %v", i, got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("connection %d to %s: Next not woken", i, addr)
		}
	}

	// may says no: ErrNotNow, and the connection stays queued for the
	// next Next.
	no := goNext(a, func() bool { return false })
	waitingState(t)
	c, err := net.Dial("tcp4", addrs[1])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if r := <-no; r.err != ErrNotNow {
		t.Fatalf("may false: %v, want ErrNotNow", r.err)
	}
	if r := <-goNext(a, nil); r.err != nil {
		t.Fatalf("queued connection: %v", r.err)
	} else {
		unix.Close(r.fd)
	}

	ch := goNext(a, nil)
	waitingState(t)
	a.Stop()
	select {
	case r := <-ch:
		if r.err != ErrClosed {
			t.Fatalf("after Stop: %v, want ErrClosed", r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not end a waiting Next")
	}
	if _, _, err := a.Next(nil); err != ErrClosed {
		t.Fatalf("Next after Stop: %v, want ErrClosed", err)
	}
}
