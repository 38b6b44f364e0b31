package login

import (
	"bufio"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/ipc"
)

// TestClientGoroutinesReused: a high-performance process serves its
// clients one after the other on one goroutine, kept waiting between
// them (its stack stays grown: no runtime.morestack on the next
// login); a high-security one (service_count = 1) keeps none.
func TestClientGoroutinesReused(t *testing.T) {
	type workers struct{ Workers, Idle int }
	for _, tt := range []struct {
		name         string
		serviceCount int
		want         workers // after each client
	}{
		{"high-performance", 0, workers{Workers: 1, Idle: 1}},
		{"service_count = 10", 10, workers{Workers: 1, Idle: 1}},
		{"high-security", 1, workers{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rep, _ := reportPair(t, "")
			in := &ipc.Settings{PreloginTimeout: 30 * time.Second, ClientLimit: 10, ServiceCount: tt.serviceCount}
			lp := &loginProc{in: in, rep: rep.lp.rep, clients: map[uint64]*Client{}, proto: greetProto{}, exit: make(chan int, 1)}
			lp.workers.MaxIdle, lp.workers.IdleTimeout = workerBounds(in)
			ln, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			for i := range 3 {
				c, err := net.Dial("tcp4", ln.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				fd, remote := acceptFD(t, ln)
				id := uint64(1<<32 | i + 1)
				lp.mu.Lock()
				lp.starting++
				lp.mu.Unlock()
				lp.accept(id, fd, remote, nil, ipc.MsgAccepted)
				r := bufio.NewReader(c)
				if l, err := r.ReadString('\n'); l != "* OK hi\r\n" {
					t.Fatalf("client %d: greeting %q, %v", i, l, err)
				}
				c.Write([]byte("a LOGOUT\r\n"))
				if l, err := r.ReadString('\n'); l != "* BYE\r\n" {
					t.Fatalf("client %d: %q, %v", i, l, err)
				}
				if _, err := r.ReadByte(); err == nil {
					t.Fatalf("client %d: not closed", i)
				}
				// The worker counts itself waiting after the client is gone.
				deadline := time.Now().Add(10 * time.Second)
				var got workers
				for {
					got.Workers, got.Idle = lp.workers.Stats()
					lp.mu.Lock()
					n := lp.count()
					lp.mu.Unlock()
					if n == 0 && got == tt.want || time.Now().After(deadline) {
						break
					}
					time.Sleep(time.Millisecond)
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("after client %d (-want +got):\n%s", i, diff)
				}
			}
		})
	}
}

// acceptFD accepts a connection from ln and returns its socket as a
// non-blocking descriptor of its own, as the accept loop has it, and
// the client's address.
func acceptFD(t *testing.T, ln net.Listener) (int, *net.TCPAddr) {
	t.Helper()
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	f, err := sc.(*net.TCPConn).File()
	sc.Close()
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Dup(int(f.Fd()))
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	unix.SetNonblock(fd, true)
	return fd, sc.RemoteAddr().(*net.TCPAddr)
}
