package login

import (
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/ipc"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login/report"
)

// addrConn is a net.Conn with fixed addresses (a PROXY header's or
// forwarded ones are what RemoteAddr returns).
type addrConn struct {
	net.Conn
	remote net.Addr
}

func (c addrConn) RemoteAddr() net.Addr { return c.remote }

// reportPair is a login process whose control socket's other end the
// test reads, and a Client of it from remote.
func reportPair(t *testing.T, remote string) (*Client, *net.UnixConn) {
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
	lp := &loginProc{rep: report.New(conn(fds[0]))}
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	var ra net.Addr
	if remote != "" {
		ra = net.TCPAddrFromAddrPort(netip.MustParseAddrPort(remote))
	}
	return &Client{id: 7, lp: lp, c: plainConn{addrConn{a, ra}}}, conn(fds[1])
}

// readPackets reads the packets the process sent (until none comes for
// a moment).
func readPackets(t *testing.T, c *net.UnixConn) [][]byte {
	t.Helper()
	var out [][]byte
	for {
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		b := make([]byte, 8192)
		n, err := c.Read(b)
		if err != nil {
			return out
		}
		out = append(out, b[:n])
	}
}

// TestReportLogin: a login process reports a login once, with the
// client's address as logged, TLS, and a user and mechanism the
// supervisor accepts (a user auth returned with control characters is
// "?", a mechanism as the client typed it is upper-cased); failed
// authentications are numbered and batched, and go out before the login.
func TestReportLogin(t *testing.T) {
	for _, tt := range []struct {
		name, remote, user, mech string
		pid                      uint32
		tls                      bool
		want                     ipc.Login
	}{
		{"plain", "192.0.2.7:40000", "alice", "PLAIN", 4242, false,
			ipc.Login{ID: 7, User: "alice", Mech: "PLAIN", MailPID: 4242, Remote: netip.MustParseAddrPort("192.0.2.7:40000")}},
		{"tls mapped", "[::ffff:192.0.2.8]:993", "bob", "scram-sha-1", 1, true,
			ipc.Login{ID: 7, User: "bob", Mech: "SCRAM-SHA-1", MailPID: 1, Remote: netip.MustParseAddrPort("192.0.2.8:993"), TLS: true}},
		{"control characters", "[2001:db8::1]:143", "eve\r\nINFO x", "PLAIN", ipc.MaxMailPID + 1, false,
			ipc.Login{ID: 7, User: "?", Mech: "PLAIN", Remote: netip.MustParseAddrPort("[2001:db8::1]:143")}},
		{"long user, odd mechanism", "", strings.Repeat("u", 300), "X MECH", 9, false,
			ipc.Login{ID: 7, User: strings.Repeat("u", ipc.MaxLoginUser), Mech: "UNKNOWN", MailPID: 9}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cl, sup := reportPair(t, tt.remote)
			cl.tlsActive = tt.tls
			cl.reportAuthFailed()
			cl.reportAuthFailed()
			cl.reportLogin(tt.user, tt.mech, tt.pid)
			cl.reportLogin("again", "PLAIN", 1) // once only
			cl.reportAuthFailed()               // none after the login
			pks := readPackets(t, sup)
			if len(pks) != 2 {
				t.Fatalf("%d packets, want the batch of failures and the login: %q", len(pks), pks)
			}
			wantBatch := append([]byte{ipc.MsgBatch}, ipc.AppendReport(nil, ipc.MsgAuthFailed, 7, 1, ipc.Accept{})...)
			wantBatch = append(wantBatch, ipc.AppendReport(nil, ipc.MsgAuthFailed, 7, 2, ipc.Accept{})...)
			if d := cmp.Diff(wantBatch, pks[0]); d != "" {
				t.Errorf("failures (-want +got):\n%s", d)
			}
			got, err := ipc.ParseLogin(pks[1])
			if err != nil {
				t.Fatalf("the supervisor would refuse the login report: %v", err)
			}
			if d := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); d != "" {
				t.Errorf("login (-want +got):\n%s", d)
			}
		})
	}
}
