package master

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/control"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/ipc"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/master/worker"
)

// fakeLogsIn plays a login process whose client logs in (fakeLogin modes
// logs-in-tls and logs-in-plain), as loginsvc's real ones report it: the
// first client it is given fails one authentication, then logs in as
// alice from the forwarded address fakeRemote with mail pid fakeMailPID.
// With tls, it relays the client (proxying): it greets it with "* OK
// fake" and holds it until the client closes. Without, it hands it off
// (closes its copy) at once, as a plaintext login does.
func fakeLogsIn(c *net.UnixConn, buf, oob []byte, tls bool) int {
	var pk ipc.Packet
	for {
		var err error
		if pk, err = ipc.ReadPacket(c, buf, oob); err != nil || pk.Closed {
			return 0
		}
		if pk.Type == ipc.MsgConn && pk.FD >= 0 {
			break
		}
	}
	rep := func(typ byte, arg uint8) {
		ipc.SendPacket(c, ipc.AppendReport(nil, typ, pk.ID, arg, ipc.Accept{}), -1)
	}
	client := os.NewFile(uintptr(pk.FD), "client")
	defer client.Close()
	rep(ipc.MsgAuthFailed, 1)
	ipc.SendPacket(c, ipc.AppendLogin(nil, ipc.Login{ID: pk.ID, User: "alice", Mech: "PLAIN",
		MailPID: fakeMailPID, Remote: fakeRemote, TLS: tls}), -1)
	if tls {
		rep(ipc.MsgState, uint8(ipc.StateProxying))
		client.WriteString("* OK fake\r\n")
		b := make([]byte, 512)
		for {
			if _, err := client.Read(b); err != nil {
				break
			}
		}
	}
	client.Close()
	rep(ipc.MsgClosed, uint8(ipc.CloseNormal))
	return 0
}

const fakeMailPID = 4242

var fakeRemote = netip.MustParseAddrPort("192.0.2.7:40000")

// queryWho asks the lab's control socket for who is logged in.
func (l *lab) queryWho(recent bool) []control.Session {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	w, err := control.QueryWho(ctx, l.cfg.ControlSocket(), recent)
	if err != nil {
		l.t.Fatal(err)
	}
	return w.Sessions
}

// waitWho polls the control socket until who (with recent) lists n
// sessions, and returns them.
func (l *lab) waitWho(recent bool, n int) []control.Session {
	l.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := l.queryWho(recent)
		if len(s) == n {
			return s
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("who (recent %v): %d sessions, want %d: %+v", recent, len(s), n, s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestWhoOverControlSocket: a client that a login process reports
// logged in is listed by the control socket's who (loginctl who) with
// what the process reported (user, mechanism, forwarded address, TLS,
// mail pid) and its login process's pid; procs and login-status count
// it (logins, failed authentications, proxying). A TLS client is listed
// while its process relays it and disappears when it leaves; a plaintext
// one leaves loginsvc at the hand-off and is only a recent hand-off. A
// reload keeps the relayed session listed.
func TestWhoOverControlSocket(t *testing.T) {
	for _, tt := range []struct {
		mode  string
		tls   bool
		state string
	}{
		{"logs-in-tls", true, "proxying"},
		{"logs-in-plain", false, control.StateHandedOff},
	} {
		t.Run(tt.mode, func(t *testing.T) {
			l := liarLab(t, tt.mode, "service_count = 1\nprocess_min_avail = 1")
			st := l.waitFor("the fake process ready", func(s control.ServiceStatus) bool { return readyProcs(s) == 1 })
			pid := st.Procs[0].PID
			c := l.dial("")
			c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
			line, err := c.r.ReadString('\n')
			want := control.Session{User: "alice", Service: "imap-login", Protocol: "imap", Mech: "PLAIN",
				RemoteIP: fakeRemote.Addr(), RemotePort: fakeRemote.Port(), TLS: tt.tls, PID: pid, MailPID: fakeMailPID, State: tt.state}
			ignoreSince := cmp.Options{cmpopts.IgnoreFields(control.Session{}, "Since"), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })}
			if tt.tls {
				if line != "* OK fake\r\n" {
					t.Fatalf("client: %q, %v", line, err)
				}
				got := l.waitWho(false, 1)
				if d := cmp.Diff([]control.Session{want}, got, ignoreSince); d != "" {
					t.Errorf("who while relayed (-want +got):\n%s", d)
				}
				if since := got[0].Since; time.Since(since) > time.Minute || time.Until(since) > 0 {
					t.Errorf("since %v, want about now", since)
				}
				st := l.status()
				if len(st.Procs) < 1 || st.Procs[0].PID != pid || st.Procs[0].Logins != 1 || st.Procs[0].Proxying != 1 {
					t.Errorf("procs: %+v, want pid %d with 1 login, 1 proxying", st.Procs, pid)
				}
				// A reload keeps the session: its draining process relays on.
				if err := l.sup.Reload(l.cfg); err != nil {
					t.Fatal(err)
				}
				if d := cmp.Diff(got, l.queryWho(false), ignoreSince); d != "" {
					t.Errorf("who after a reload (-before +after):\n%s", d)
				}
				c.c.Close()
				l.waitWho(false, 0)
				if s := l.queryWho(true); len(s) != 0 {
					t.Errorf("an ended TLS session listed as a recent hand-off: %+v", s)
				}
			} else {
				if err == nil {
					t.Fatalf("client: %q, want the end of the stream (handed off)", line)
				}
				l.waitFor("the client counted closed", func(s control.ServiceStatus) bool { return s.Counters.Closed == 1 })
				got := l.queryWho(true)
				if d := cmp.Diff([]control.Session{want}, got, ignoreSince); d != "" {
					t.Errorf("who --recent (-want +got):\n%s", d)
				}
				if s := l.queryWho(false); len(s) != 0 {
					t.Errorf("a handed-off plaintext client listed as live: %+v", s)
				}
			}
			st = l.waitFor("the client counted closed", func(s control.ServiceStatus) bool { return s.Counters.Closed == 1 })
			if st.Counters.Logins != 1 || st.Counters.AuthFailures != 1 || st.Counters.Violations != 0 {
				t.Errorf("counters %+v, want 1 login, 1 auth failure, no violation", st.Counters)
			}
		})
	}
}

// TestWhoKeepsRecentHandoffsBounded: a service keeps its last
// RecentHandoffs plaintext hand-offs, newest last; a relayed client is
// listed while it lasts and is not kept after it.
func TestWhoKeepsRecentHandoffsBounded(t *testing.T) {
	const own = uint64(1) << 32
	p, r := testPool(t, "service imap-login {\n service_count = 0\n client_limit = 1000\n process_limit = 1\n process_min_avail = 1\n}\n", fakeListener(t))
	w := r.w(0)
	w.emit(worker.Event{Kind: worker.EventReady})
	const n = RecentHandoffs + 44
	for i := uint64(1); i <= n+1; i++ {
		w.emit(worker.Event{Kind: worker.EventAccepted, Conn: own | i, State: ipc.StateLoggingIn})
		user := fmt.Sprintf("user%d", i)
		w.emit(worker.Event{Kind: worker.EventLogin, Conn: own | i, Login: ipc.Login{ID: own | i, User: user, Mech: "PLAIN", TLS: i == n+1}})
		if i == n+1 {
			w.emit(worker.Event{Kind: worker.EventState, Conn: own | i, State: ipc.StateProxying})
			break
		}
		w.emit(worker.Event{Kind: worker.EventClosed, Conn: own | i})
	}
	users := func(ss []control.Session) []string {
		var out []string
		for _, s := range ss {
			out = append(out, s.User+" "+s.State)
		}
		return out
	}
	if d := cmp.Diff([]string{fmt.Sprintf("user%d proxying", n+1)}, users(p.who(false))); d != "" {
		t.Errorf("live (-want +got):\n%s", d)
	}
	all := users(p.who(true))
	if len(all) != RecentHandoffs+1 || all[1] != fmt.Sprintf("user%d handed-off", n-RecentHandoffs+1) || all[len(all)-1] != fmt.Sprintf("user%d handed-off", n) {
		t.Errorf("with recent: %d sessions, first recent %q, last %q; want %d, user%d, user%d", len(all), all[1], all[len(all)-1], RecentHandoffs+1, n-RecentHandoffs+1, n)
	}
	w.emit(worker.Event{Kind: worker.EventClosed, Conn: own | (n + 1)})
	if got := p.who(true); len(got) != RecentHandoffs || strings.HasPrefix(got[0].State, "prox") {
		t.Errorf("after the relayed client left: %d sessions (%v), want the %d hand-offs", len(got), users(got)[:1], RecentHandoffs)
	}
	if _, ctr, _ := p.snapshot(); ctr.Logins != n+1 {
		t.Errorf("%d logins counted, want %d", ctr.Logins, n+1)
	}
}

// BenchmarkWho10k: the supervisor lists 10,000 relayed sessions (one
// high-performance process of client_limit 10000); its first run logs
// the supervisor's heap per logged-in session.
func BenchmarkWho10k(b *testing.B) {
	const own, n = uint64(1) << 32, 10000
	before := heapAlloc()
	p, r := testPool(b, "service imap-login {\n service_count = 0\n client_limit = 10000\n process_limit = 1\n process_min_avail = 1\n}\n", fakeListener(b))
	w := r.w(0)
	w.emit(worker.Event{Kind: worker.EventReady})
	for i := uint64(1); i <= n; i++ {
		w.emit(worker.Event{Kind: worker.EventAccepted, Conn: own | i, State: ipc.StateLoggingIn, Accept: ipc.Accept{Remote: anyAddr}})
		w.emit(worker.Event{Kind: worker.EventLogin, Conn: own | i, Login: ipc.Login{ID: own | i, User: fmt.Sprintf("user%05d@example.org", i), Mech: "PLAIN", MailPID: 1000, Remote: anyAddr, TLS: true}})
		w.emit(worker.Event{Kind: worker.EventState, Conn: own | i, State: ipc.StateProxying})
	}
	if b.N == 1 { // the first run; later ones reuse its freed memory
		b.Logf("supervisor heap: %.0f bytes per logged-in session", float64(int64(heapAlloc())-int64(before))/n)
	}
	b.ResetTimer()
	for range b.N {
		if got := p.who(false); len(got) != n {
			b.Fatalf("%d sessions", len(got))
		}
	}
}

// heapAlloc is the bytes of live heap objects after a collection.
func heapAlloc() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
