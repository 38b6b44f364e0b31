package sockfd

import (
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// listeners opens n listening sockets on 127.0.0.1 (ports chosen by the
// kernel) and returns their descriptors and addresses.
func listeners(t *testing.T, n int) ([]int, []string) {
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

// next runs a.Next in a goroutine; the test fails if it has not
// returned within 10 s.
func next(t *testing.T, a *Acceptor) (int, error) {
	t.Helper()
	type res struct {
		fd  int
		err error
	}
	ch := make(chan res, 1)
	go func() { fd, _, err := a.Next(nil); ch <- res{fd, err} }()
	select {
	case r := <-ch:
		if r.fd >= 0 {
			t.Cleanup(func() { unix.Close(r.fd) })
		}
		return r.fd, r.err
	case <-time.After(10 * time.Second):
		t.Fatal("Next did not return")
		return -1, nil
	}
}

// TestPolledAcceptor: a login process's Acceptor, waiting in the
// netpoller, accepts from each of its listeners, also a connection
// that arrived while it was paused (full), and a Stop wakes a waiting
// Next.
func TestPolledAcceptor(t *testing.T) {
	fds, addrs := listeners(t, 2)
	a, err := NewPolledAcceptor(fds)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Release()
	dial := func(addr string) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
	}
	for _, tc := range []struct {
		name  string
		pause bool
		addr  string
	}{
		{"first listener", false, addrs[0]},
		{"second listener", false, addrs[1]},
		{"arrived while paused", true, addrs[0]},
		{"after the pause", false, addrs[1]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.pause {
				a.Pause()
				dial(tc.addr)
			} else {
				// Next waits first, then the client connects.
				go func() { time.Sleep(50 * time.Millisecond); dial(tc.addr) }()
			}
			fd, err := next(t, a)
			if err != nil || fd < 0 {
				t.Fatalf("Next: %d %v", fd, err)
			}
		})
	}
	go func() { time.Sleep(50 * time.Millisecond); a.Stop() }()
	if _, err := next(t, a); err != ErrClosed {
		t.Errorf("Next after Stop: %v, want ErrClosed", err)
	}
}

// TestBoundAddrs: a listener bound to one address gives the local
// address of every connection accepted from it (what getsockname on the
// connection says); a wildcard one gives none.
func TestBoundAddrs(t *testing.T) {
	fds, addrs := listeners(t, 1)
	any, err := Listen("tcp4", "0.0.0.0:0", false)
	if err != nil {
		t.Fatal(err)
	}
	defer any.Close()
	a, err := NewPolledAcceptor(fds)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Release()
	c, err := net.Dial("tcp", addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fd, err := next(t, a)
	if err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	bound := BoundAddrs([]int{fds[0], int(any.Fd())})
	if got, want := bound[a.From()].String(), AddrPort(sa).String(); got != want {
		t.Errorf("bound address of the listener %q, connection's %q", got, want)
	}
	if got, ok := bound[int(any.Fd())]; ok {
		t.Errorf("wildcard listener: %v, want none", got)
	}
}

// openFDs is the number of descriptors the test process has open.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestAcceptorCreationFailureLeaksNothing: when a socket cannot go into
// the epoll set (here a regular file, which epoll refuses), NewAcceptor
// and NewPolledAcceptor fail and close what they opened (the epoll set,
// the eventfd), leaving the listening sockets open for the caller.
func TestAcceptorCreationFailureLeaksNothing(t *testing.T) {
	fds, _ := listeners(t, 1)
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lfds := []int{fds[0], int(f.Fd())}
	for name, create := range map[string]func([]int) (*Acceptor, error){
		"NewAcceptor": NewAcceptor, "NewPolledAcceptor": NewPolledAcceptor,
	} {
		t.Run(name, func(t *testing.T) {
			before := openFDs(t)
			if a, err := create(lfds); err == nil {
				a.Release()
				t.Fatal("no error for a regular file")
			}
			if after := openFDs(t); after != before {
				t.Errorf("%d descriptors open after the failure, %d before", after, before)
			}
			if _, err := unix.Getsockname(fds[0]); err != nil {
				t.Errorf("the listening socket: %v", err)
			}
		})
	}
}

// TestPolledAcceptorArrivalBeforeWait: a connection whose wake-up
// reaches the netpoller after Next's last accept4 found nothing, and
// before Next waits, is accepted at once. Waiting resets the readiness
// the netpoller recorded; Next used to start the wait without looking
// again, so that connection waited for the next one to arrive (for
// ever, on a quiet listener). The hook connects in that gap and lets
// the netpoller run (the goroutine sleeps), as a busy process's other
// thread or sysmon can (the sleep provokes the race; it cannot make
// the test fail once the race is gone). Before the fix Next did not
// return (next fails after 10 s).
func TestPolledAcceptorArrivalBeforeWait(t *testing.T) {
	fds, addrs := listeners(t, 1)
	a, err := NewPolledAcceptor(fds)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Release()
	var once bool
	beforeWait = func() {
		if once {
			return
		}
		once = true
		c, err := net.Dial("tcp", addrs[0]) // in the accept queue on return
		if err != nil {
			t.Error(err)
			return
		}
		t.Cleanup(func() { c.Close() })
		// Every goroutine idle: the scheduler's netpoll sees the wake-up.
		time.Sleep(100 * time.Millisecond)
	}
	defer func() { beforeWait = nil }()
	if fd, err := next(t, a); err != nil || fd < 0 {
		t.Fatalf("Next: %d %v", fd, err)
	}
}
