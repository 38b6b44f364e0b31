package report

import (
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/ipc"
)

// pair is a Sender on a unixpacket (SOCK_SEQPACKET, the control
// socket's type) connection and the connection's other end.
func pair(t *testing.T) (*Sender, *net.UnixConn) {
	t.Helper()
	addr := &net.UnixAddr{Name: filepath.Join(t.TempDir(), "ctl"), Net: "unixpacket"}
	ln, err := net.ListenUnix("unixpacket", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.DialUnix("unixpacket", nil, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	peer, err := ln.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	return New(c), peer
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
	return ipc.AppendReport(nil, typ, id, arg, ipc.Accept{})
}

// TestOrder checks that reports go out in the order they were made: an
// urgent one alone, lazy ones batched ahead of the next urgent one or
// a packet sent on its own, and a lazy batch by itself within its delay.
func TestOrder(t *testing.T) {
	s, c := pair(t)
	s.Now(ipc.MsgState, 1, 2, ipc.Accept{})
	if d := cmp.Diff(rec(ipc.MsgState, 1, 2), next(t, c)); d != "" {
		t.Errorf("urgent alone (-want +got):\n%s", d)
	}
	s.Lazy(ipc.MsgClosed, 2, 0, ipc.Accept{})
	s.Lazy(ipc.MsgAuthFailed, 3, 1, ipc.Accept{})
	s.Now(ipc.MsgState, 4, 2, ipc.Accept{})
	want := append([]byte{ipc.MsgBatch}, rec(ipc.MsgClosed, 2, 0)...)
	want = append(want, rec(ipc.MsgAuthFailed, 3, 1)...)
	want = append(want, rec(ipc.MsgState, 4, 2)...)
	if d := cmp.Diff(want, next(t, c)); d != "" {
		t.Errorf("lazy before urgent (-want +got):\n%s", d)
	}
	s.Lazy(ipc.MsgClosed, 5, 0, ipc.Accept{})
	if err := s.Send([]byte{ipc.MsgReady}); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(append([]byte{ipc.MsgBatch}, rec(ipc.MsgClosed, 5, 0)...), next(t, c)); d != "" {
		t.Errorf("lazy before Send (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]byte{ipc.MsgReady}, next(t, c)); d != "" {
		t.Errorf("Send (-want +got):\n%s", d)
	}
	s.Lazy(ipc.MsgClosed, 6, 0, ipc.Accept{})
	if d := cmp.Diff(append([]byte{ipc.MsgBatch}, rec(ipc.MsgClosed, 6, 0)...), next(t, c)); d != "" {
		t.Errorf("lazy alone (-want +got):\n%s", d)
	}
}

// TestLazyPacket: a packet of its own queued lazily (a login) goes
// after the lazy reports made before it and before those made after it,
// all at the next flush; alone, it goes within the batch delay; an
// urgent report sends it first.
func TestLazyPacket(t *testing.T) {
	s, c := pair(t)
	login := []byte{ipc.MsgLogin, 1, 2, 3}
	s.Lazy(ipc.MsgAccepted, 1, 2, ipc.Accept{})
	s.LazyPacket(login)
	s.Lazy(ipc.MsgClosed, 1, 0, ipc.Accept{})
	s.Flush()
	for i, want := range [][]byte{
		append([]byte{ipc.MsgBatch}, rec(ipc.MsgAccepted, 1, 2)...),
		login,
		append([]byte{ipc.MsgBatch}, rec(ipc.MsgClosed, 1, 0)...),
	} {
		if d := cmp.Diff(want, next(t, c)); d != "" {
			t.Errorf("flush, packet %d (-want +got):\n%s", i, d)
		}
	}
	s.LazyPacket(login) // no Flush: the timer sends it
	if d := cmp.Diff(login, next(t, c)); d != "" {
		t.Errorf("alone (-want +got):\n%s", d)
	}
	s.LazyPacket(login)
	s.Now(ipc.MsgState, 2, 3, ipc.Accept{})
	if d := cmp.Diff(login, next(t, c)); d != "" {
		t.Errorf("before urgent (-want +got):\n%s", d)
	}
	if d := cmp.Diff(rec(ipc.MsgState, 2, 3), next(t, c)); d != "" {
		t.Errorf("urgent (-want +got):\n%s", d)
	}
}

// TestNil checks that a nil Sender (no supervisor) sends nothing and
// does not fail.
func TestNil(t *testing.T) {
	var s *Sender
	s.Now(ipc.MsgState, 1, 2, ipc.Accept{})
	s.Lazy(ipc.MsgClosed, 1, 0, ipc.Accept{})
	s.LazyPacket([]byte{ipc.MsgLogin})
	s.Flush()
	if err := s.Send([]byte{ipc.MsgReady}); err != nil {
		t.Errorf("Send: %v", err)
	}
}

// TestLazyPacketAllocs: a login's packet queued between a client's
// lazy reports (LazyPacket) costs the batches no allocations: the
// closed batch's buffer serves the next one.
func TestLazyPacketAllocs(t *testing.T) {
	s, c := pair(t)
	login := ipc.AppendLogin(nil, ipc.Login{ID: 1, User: "u", Mech: "PLAIN"})
	buf := make([]byte, 1<<16)
	cycle := func(withLogin bool) func() {
		return func() {
			s.Lazy(ipc.MsgAccepted, 1, 0, ipc.Accept{})
			if withLogin {
				s.LazyPacket(login)
			}
			s.Lazy(ipc.MsgClosed, 1, 0, ipc.Accept{})
			s.Flush()
			packets := 1
			if withLogin {
				packets = 3
			}
			for range packets {
				if _, _, _, _, err := c.ReadMsgUnix(buf, nil); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	without := testing.AllocsPerRun(100, cycle(false))
	with := testing.AllocsPerRun(100, cycle(true))
	if with > without {
		t.Errorf("allocations per client: %v with a LazyPacket, %v without", with, without)
	}
}
