package worker

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/ipc"
)

// TestDeliverReports: the reports of a batch, and one alone, arrive as
// the events they encode, the accepted client's address and accept time
// included.
func TestDeliverReports(t *testing.T) {
	acc := ipc.Accept{Remote: netip.MustParseAddrPort("192.0.2.7:40001"), At: 1_796_000_000_123_456_789}
	b := ipc.AppendReport([]byte{ipc.MsgBatch}, ipc.MsgAccepted, 1<<32|1, uint8(ipc.StateLoggingIn), acc)
	b = ipc.AppendReport(b, ipc.MsgAuthFailed, 1<<32|1, 2, ipc.Accept{})
	b = ipc.AppendReport(b, ipc.MsgClosed, 1<<32|1, uint8(ipc.CloseNormal), ipc.Accept{})
	got := deliverAll(t, b)
	got = append(got, deliverAll(t, ipc.AppendReport(nil, ipc.MsgAccepted, 5, uint8(ipc.StateChecking), acc))...)
	want := []Event{
		{Kind: EventAccepted, Conn: 1<<32 | 1, State: ipc.StateLoggingIn, Accept: acc},
		{Kind: EventAuthFailed, Conn: 1<<32 | 1, Attempt: 2},
		{Kind: EventClosed, Conn: 1<<32 | 1, Reason: ipc.CloseNormal},
		{Kind: EventAccepted, Conn: 5, State: ipc.StateChecking, Accept: acc},
	}
	if d := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); d != "" {
		t.Errorf("events (-want +got)\n%s", d)
	}
}

func deliverAll(t testing.TB, b []byte) []Event {
	t.Helper()
	w := &execWorker{logs: newLogLimiter(1)}
	var got []Event
	if what := w.deliver(b, func(ev Event) { got = append(got, ev) }); what != "" {
		t.Fatalf("deliver %x: %s", b, what)
	}
	return got
}

// FuzzDeliver: whatever a (compromised) login process sends on its
// control socket, the supervisor's decoding of it never panics, and
// the reports of a packet it accepts, written again, decode into the
// same events (what a report says survives the wire).
func FuzzDeliver(f *testing.F) {
	acc := ipc.Accept{Remote: netip.MustParseAddrPort("[2001:db8::1]:143"), At: 42}
	f.Add([]byte{ipc.MsgReady})
	f.Add(ipc.AppendReport(nil, ipc.MsgAccepted, 9, 1, acc))
	f.Add(ipc.AppendReport(ipc.AppendReport([]byte{ipc.MsgBatch}, ipc.MsgState, 3, 2, ipc.Accept{}), ipc.MsgAccepted, 4, 1, acc))
	f.Add(ipc.AppendLogin(nil, ipc.Login{ID: 7, User: "alice", Mech: "PLAIN", Remote: acc.Remote}))
	f.Add([]byte{ipc.MsgBatch, ipc.MsgAccepted, 1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 {
			return // readLoop never delivers an empty packet (it is EOF)
		}
		w := &execWorker{logs: newLogLimiter(1)}
		var got []Event
		if what := w.deliver(b, func(ev Event) { got = append(got, ev) }); what != "" || b[0] != ipc.MsgBatch {
			return
		}
		again := []byte{ipc.MsgBatch}
		for _, ev := range got {
			typ, arg := eventReport(t, ev)
			again = ipc.AppendReport(again, typ, ev.Conn, arg, ev.Accept)
		}
		if d := cmp.Diff(got, deliverAll(t, again), cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); d != "" {
			t.Errorf("%x: delivered, written again and delivered (-first +again)\n%s", b, d)
		}
	})
}

// eventReport is the report type and argument of ev, an event a batch
// delivered (FuzzDeliver).
func eventReport(t *testing.T, ev Event) (byte, uint8) {
	switch ev.Kind {
	case EventAccepted:
		return ipc.MsgAccepted, uint8(ev.State)
	case EventState:
		return ipc.MsgState, uint8(ev.State)
	case EventClosed:
		return ipc.MsgClosed, uint8(ev.Reason)
	case EventAuthFailed:
		return ipc.MsgAuthFailed, ev.Attempt
	case EventUnlistened:
		return ipc.MsgUnlistened, 0
	case EventDetached:
		return ipc.MsgDetached, 0
	}
	t.Fatalf("a batch delivered %v", ev)
	return 0, 0
}
