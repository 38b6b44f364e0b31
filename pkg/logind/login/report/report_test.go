package report

import (
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/ipc"
)

// pair is a Sender on one end of a SOCK_SEQPACKET pair (the control
// socket's type) and the other end.
func pair(t *testing.T) (*Sender, *net.UnixConn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "ctl")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c.(*net.UnixConn)
	}
	return New(conn(fds[0])), conn(fds[1])
}

// next reads the next packet (the test fails after 10 s without one).
func next(t *testing.T, c *net.UnixConn) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, 1<<16)
	n, _, _, _, err := c.ReadMsgUnix(b, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b[:n]
}

func rec(typ byte, id uint64, arg uint8) []byte {
	return ipc.AppendReport(nil, typ, id, arg, netip.AddrPort{})
}

// TestOrder checks that reports go out in the order they were made: an
// urgent one alone, lazy ones batched ahead of the next urgent one or
// a packet sent on its own, and a lazy batch by itself within its delay.
func TestOrder(t *testing.T) {
	s, c := pair(t)
	s.Now(ipc.MsgState, 1, 2, netip.AddrPort{})
	if d := cmp.Diff(rec(ipc.MsgState, 1, 2), next(t, c)); d != "" {
		t.Errorf("urgent alone (-want +got):\n%s", d)
	}
	s.Lazy(ipc.MsgClosed, 2, 0, netip.AddrPort{})
	s.Lazy(ipc.MsgAuthFailed, 3, 1, netip.AddrPort{})
	s.Now(ipc.MsgState, 4, 2, netip.AddrPort{})
	want := append([]byte{ipc.MsgBatch}, rec(ipc.MsgClosed, 2, 0)...)
	want = append(want, rec(ipc.MsgAuthFailed, 3, 1)...)
	want = append(want, rec(ipc.MsgState, 4, 2)...)
	if d := cmp.Diff(want, next(t, c)); d != "" {
		t.Errorf("lazy before urgent (-want +got):\n%s", d)
	}
	s.Lazy(ipc.MsgClosed, 5, 0, netip.AddrPort{})
	if err := s.Send([]byte{ipc.MsgReady}); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(append([]byte{ipc.MsgBatch}, rec(ipc.MsgClosed, 5, 0)...), next(t, c)); d != "" {
		t.Errorf("lazy before Send (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]byte{ipc.MsgReady}, next(t, c)); d != "" {
		t.Errorf("Send (-want +got):\n%s", d)
	}
	s.Lazy(ipc.MsgClosed, 6, 0, netip.AddrPort{})
	if d := cmp.Diff(append([]byte{ipc.MsgBatch}, rec(ipc.MsgClosed, 6, 0)...), next(t, c)); d != "" {
		t.Errorf("lazy alone (-want +got):\n%s", d)
	}
}

// TestNil checks that a nil Sender (no supervisor) sends nothing and
// does not fail.
func TestNil(t *testing.T) {
	var s *Sender
	s.Now(ipc.MsgState, 1, 2, netip.AddrPort{})
	s.Lazy(ipc.MsgClosed, 1, 0, netip.AddrPort{})
	s.Flush()
	if err := s.Send([]byte{ipc.MsgReady}); err != nil {
		t.Errorf("Send: %v", err)
	}
}
