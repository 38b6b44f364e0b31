package master

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/config"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/ipc"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/master/worker"
)

// fakeRunner starts in-process fake workers that record what the pool
// tells them; the test plays the workers' side by calling emit.
type fakeRunner struct {
	mu      sync.Mutex
	workers []*fakeWorker
	fail    bool
}

type fakeWorker struct {
	pid    int
	events func(worker.Event)
	mu     sync.Mutex
	log    []string
	dead   bool
}

func (r *fakeRunner) Start(_ context.Context, spec worker.Spec, ev func(worker.Event)) (worker.Worker, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return nil, fmt.Errorf("fake start failure")
	}
	w := &fakeWorker{pid: 1000 + len(r.workers), events: ev}
	r.workers = append(r.workers, w)
	return w, nil
}

func (r *fakeRunner) w(i int) *fakeWorker { r.mu.Lock(); defer r.mu.Unlock(); return r.workers[i] }
func (r *fakeRunner) n() int              { r.mu.Lock(); defer r.mu.Unlock(); return len(r.workers) }

func (w *fakeWorker) PID() int { return w.pid }
func (w *fakeWorker) rec(s string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.log = append(w.log, s)
	return nil
}
func (w *fakeWorker) Give(id uint64, fd int, _ netip.AddrPort) error {
	return w.rec(fmt.Sprintf("give %d", id))
}
func (w *fakeWorker) Evict(id uint64, reserve bool) error {
	if !reserve {
		return w.rec(fmt.Sprintf("evict %d (ip limit)", id))
	}
	return w.rec(fmt.Sprintf("evict %d", id))
}
func (w *fakeWorker) Stop(m ipc.StopMode) error { return w.rec(fmt.Sprintf("stop %d", m)) }
func (w *fakeWorker) Kill() error               { return w.rec("kill") }
func (w *fakeWorker) got() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.log...)
}

// emit delivers an event as the worker's reader goroutine would.
func (w *fakeWorker) emit(ev worker.Event) { w.events(ev) }

// testPool makes a pool of the service imap-login in conf; lns are its
// listening sockets (high-performance processes get them: direct accept).
func testPool(t testing.TB, conf string, lns ...*os.File) (*pool, *fakeRunner) {
	t.Helper()
	cfg, err := config.Parse("t.conf", []byte("base_dir = /tmp/x\n"+conf))
	if err != nil {
		t.Fatal(err)
	}
	r := &fakeRunner{}
	var seq, id atomic.Uint64
	p := newPool(t.Context(), slog.New(slog.DiscardHandler), r, cfg, cfg.Service("imap-login"), 1, &seq, &id, lns)
	t.Cleanup(func() { p.mu.Lock(); p.stopIdle(); p.mu.Unlock() })
	return p, r
}

// fakeListener stands for a listening socket given to the processes (the
// fake workers never use it).
func fakeListener(t testing.TB) *os.File {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

var anyAddr = netip.MustParseAddrPort("127.0.0.1:1")

// pastEvictGrace lets the fake clock run past the evictGrace of the
// connections waiting now (they evict only then) and waits for the
// evictions. In a synctest bubble.
func pastEvictGrace() {
	time.Sleep(evictGrace)
	synctest.Wait()
}

func TestHighSecurityLimitEvictsOldestLoggingInExactlyOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, r := testPool(t, "service imap-login {\n service_count = 1\n process_limit = 3\n}\n")
		for i := 0; i < 3; i++ {
			p.arrive(-1, anyAddr)
			time.Sleep(time.Second)
		}
		if r.n() != 3 {
			t.Fatalf("%d processes, want 3", r.n())
		}
		for i := 0; i < 3; i++ {
			r.w(i).emit(worker.Event{Kind: worker.EventReady})
			r.w(i).emit(worker.Event{Kind: worker.EventState, Conn: uint64(i + 1), State: ipc.StateLoggingIn})
		}
		// The oldest client (conn 1) is proxying: never a victim.
		r.w(0).emit(worker.Event{Kind: worker.EventState, Conn: 1, State: ipc.StateProxying})
		p.arrive(-1, anyAddr) // conn 4: evicts conn 2 only
		p.arrive(-1, anyAddr) // conn 5: evicts conn 3 only
		pastEvictGrace()
		want := [][]string{{"give 1"}, {"give 2", "evict 2"}, {"give 3", "evict 3"}}
		for i, w := range want {
			if d := cmp.Diff(w, r.w(i).got()); d != "" {
				t.Errorf("worker %d (-want +got)\n%s", i, d)
			}
		}
		if r.n() != 3 {
			t.Fatalf("spawned before the victims exited: %d processes", r.n())
		}
		// Victims exit (service_count reached): each is replaced by a
		// fresh process that gets one waiting connection.
		r.w(1).emit(worker.Event{Kind: worker.EventExit})
		r.w(2).emit(worker.Event{Kind: worker.EventExit})
		if r.n() != 5 || cmp.Diff([]string{"give 4"}, r.w(3).got()) != "" || cmp.Diff([]string{"give 5"}, r.w(4).got()) != "" {
			t.Fatalf("replacements: n=%d %v %v", r.n(), r.w(3).got(), r.w(4).got())
		}
		_, ctr, pending := p.snapshot()
		if ctr.Evicted != 2 || pending != 0 || ctr.Accepted != 5 {
			t.Errorf("counters %+v pending %d", ctr, pending)
		}
	})
}

// TestNothingEvictableDropsAfterTimeout: at process_limit, a client that
// is proxying, or that has logged in (even for the moment it is still
// logging-in, before its relay or hand-off: it is no longer a pre-login
// client), is never evicted; the waiting connection is dropped after
// DropTimeout instead.
func TestNothingEvictableDropsAfterTimeout(t *testing.T) {
	for _, tt := range []struct {
		name string
		ev   worker.Event
	}{
		{"proxying", worker.Event{Kind: worker.EventState, Conn: 1, State: ipc.StateProxying}},
		{"logged in", worker.Event{Kind: worker.EventLogin, Conn: 1, Login: ipc.Login{ID: 1, User: "alice", Mech: "PLAIN"}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p, r := testPool(t, "service imap-login {\n process_limit = 1\n}\n")
				p.arrive(-1, anyAddr)
				r.w(0).emit(worker.Event{Kind: worker.EventReady})
				r.w(0).emit(tt.ev)
				p.arrive(-1, anyAddr)
				time.Sleep(DropTimeout + time.Millisecond)
				synctest.Wait()
				_, ctr, pending := p.snapshot()
				if ctr.Dropped != 1 || ctr.Evicted != 0 || pending != 0 {
					t.Errorf("counters %+v pending %d", ctr, pending)
				}
				if d := cmp.Diff([]string{"give 1"}, r.w(0).got()); d != "" {
					t.Errorf("worker (-want +got):\n%s", d)
				}
			})
		})
	}
}

func TestHighPerformanceSpillOverAndEviction(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, r := testPool(t, "service imap-login {\n service_count = 0\n client_limit = 2\n process_limit = 2\n process_min_avail = 1\n}\n")
		if r.n() != 1 {
			t.Fatalf("prefork: %d processes, want 1", r.n())
		}
		r.w(0).emit(worker.Event{Kind: worker.EventReady})
		for i := 1; i <= 4; i++ {
			p.arrive(-1, anyAddr)
			time.Sleep(time.Second)
		}
		for i := 1; i <= 4; i++ {
			w := r.w(0)
			if i > 2 {
				w = r.w(1)
			}
			w.emit(worker.Event{Kind: worker.EventState, Conn: uint64(i), State: ipc.StateLoggingIn})
		}
		// Full: 2 processes x 2 clients. Conn 5 evicts conn 1 (the oldest)
		// and goes to the same process as soon as it is evicted.
		p.arrive(-1, anyAddr)
		pastEvictGrace()
		if d := cmp.Diff([]string{"give 1", "give 2", "evict 1", "give 5"}, r.w(0).got()); d != "" {
			t.Errorf("worker 0 (-want +got)\n%s", d)
		}
		if d := cmp.Diff([]string{"give 3", "give 4"}, r.w(1).got()); d != "" {
			t.Errorf("worker 1 (-want +got)\n%s", d)
		}
	})
}

func TestStartupFailureThrottle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, r := testPool(t, "service imap-login {\n process_min_avail = 1\n}\n")
		start := time.Now()
		var gaps []time.Duration
		for i := 0; i < 4; i++ {
			for r.n() <= i {
				time.Sleep(100 * time.Millisecond)
			}
			gaps = append(gaps, time.Since(start).Round(time.Second))
			r.w(i).emit(worker.Event{Kind: worker.EventExit, ExitCode: 89})
		}
		want := []time.Duration{0, 2 * time.Second, 6 * time.Second, 14 * time.Second}
		if d := cmp.Diff(want, gaps); d != "" {
			t.Errorf("spawn times (-want +got)\n%s", d)
		}
		_, ctr, _ := p.snapshot()
		if ctr.Throttles != 4 || ctr.SpawnFailures != 4 {
			t.Errorf("counters %+v", ctr)
		}
	})
}

func TestIdleKill(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, r := testPool(t, "service imap-login {\n service_count = 0\n process_min_avail = 1\n client_limit = 1\n idle_kill = 5s\n}\n")
		r.w(0).emit(worker.Event{Kind: worker.EventReady})
		p.arrive(-1, anyAddr) // fills worker 0; worker 1 is preforked once conn 1 is greeted
		r.w(0).emit(worker.Event{Kind: worker.EventState, Conn: 1, State: ipc.StateLoggingIn})
		r.w(1).emit(worker.Event{Kind: worker.EventReady})
		r.w(0).emit(worker.Event{Kind: worker.EventClosed, Conn: 1})
		time.Sleep(7 * time.Second)
		// Two idle processes, min 1: exactly one is stopped.
		stops := 0
		for i := 0; i < 2; i++ {
			for _, s := range r.w(i).got() {
				if s == "stop 1" {
					stops++
				}
			}
		}
		if stops != 1 {
			t.Errorf("%d idle stops, want 1: %v %v", stops, r.w(0).got(), r.w(1).got())
		}
		_ = p
	})
}

// TestPreforkReplacementAfterGreeting: when a preforked process takes a
// client, its replacement starts once that client is greeted (so that a
// starting process does not compete with the greeting), or after
// replenishAfter at the latest.
func TestPreforkReplacementAfterGreeting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, r := testPool(t, "service imap-login {\n service_count = 1\n process_min_avail = 1\n}\n")
		r.w(0).emit(worker.Event{Kind: worker.EventReady})
		p.arrive(-1, anyAddr)
		if r.n() != 1 {
			t.Fatalf("replacement started before the greeting: %d processes", r.n())
		}
		r.w(0).emit(worker.Event{Kind: worker.EventState, Conn: 1, State: ipc.StateLoggingIn})
		if r.n() != 2 {
			t.Fatalf("no replacement after the greeting: %d processes", r.n())
		}
		// No greeting report (a slow access check): replenishAfter.
		r.w(1).emit(worker.Event{Kind: worker.EventReady})
		p.arrive(-1, anyAddr)
		time.Sleep(replenishAfter / 2)
		if r.n() != 2 {
			t.Fatalf("replacement started early: %d processes", r.n())
		}
		time.Sleep(replenishAfter)
		if r.n() != 3 {
			t.Fatalf("no replacement after %v: %d processes", replenishAfter, r.n())
		}
	})
}

// told returns, per process in start order, what the pool told it.
func (r *fakeRunner) told() [][]string {
	var out [][]string
	for i := 0; i < r.n(); i++ {
		out = append(out, r.w(i).got())
	}
	return out
}

// burstOutcome is what 8 simultaneous connections to a high-security
// service with process_limit 3 end with: one process per connection,
// the 5 oldest evicted (one per connection beyond the limit), the 3
// newest kept.
var burstOutcome = [][]string{
	{"give 1", "evict 1"}, {"give 2", "evict 2"}, {"give 3", "evict 3"},
	{"give 4", "evict 4"}, {"give 5", "evict 5"},
	{"give 6"}, {"give 7"}, {"give 8"},
}

// TestHighSecurityBurstEvictsAsClientsBecomeLoggingIn: 8 connections
// arrive at once at a high-security service with process_limit 3 whose
// clients are access-checked first. None of the first three can be
// evicted when the others arrive (they are being checked), so the others
// wait; each client that becomes logging-in while connections wait is
// evicted at once, oldest first, exactly one per waiting connection
// (victims whose process has not exited yet count), and each place that
// comes back goes to the oldest waiting connection. Nothing waits for
// DropTimeout.
func TestHighSecurityBurstEvictsAsClientsBecomeLoggingIn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, r := testPool(t, "login_access_sockets = tcpwrap\nservice imap-login {\n service_count = 1\n process_limit = 3\n}\n")
		for i := 0; i < 8; i++ {
			p.arrive(-1, anyAddr)
		}
		if _, ctr, pending := p.snapshot(); ctr.Evicted != 0 || pending != 5 || r.n() != 3 {
			t.Fatalf("at arrival: %d processes, %d waiting, counters %+v; want 3, 5, nothing evicted", r.n(), pending, ctr)
		}
		pastEvictGrace()
		loggingIn := func(w, conn int) {
			r.w(w).emit(worker.Event{Kind: worker.EventState, Conn: uint64(conn), State: ipc.StateLoggingIn})
		}
		for _, w := range []int{1, 0, 2} { // in any order: each is evicted at once
			r.w(w).emit(worker.Event{Kind: worker.EventReady})
			loggingIn(w, w+1)
		}
		if r.n() != 3 {
			t.Fatalf("%d processes before any victim exited, want 3", r.n())
		}
		r.w(1).emit(worker.Event{Kind: worker.EventExit}) // conn 4 gets worker 3
		r.w(0).emit(worker.Event{Kind: worker.EventExit}) // conn 5 gets worker 4
		loggingIn(3, 4)                                   // evicted for conn 6 (7, 8 wait; 3 victims under way)
		loggingIn(4, 5)                                   // evicted for conn 7
		r.w(2).emit(worker.Event{Kind: worker.EventExit}) // conn 6 gets worker 5
		loggingIn(5, 6)                                   // 2 waiting, 2 victims under way: kept
		r.w(3).emit(worker.Event{Kind: worker.EventExit}) // conn 7 gets worker 6
		r.w(4).emit(worker.Event{Kind: worker.EventExit}) // conn 8 gets worker 7
		loggingIn(6, 7)
		loggingIn(7, 8)
		if d := cmp.Diff(burstOutcome, r.told()); d != "" {
			t.Errorf("what each process was told (-want +got)\n%s", d)
		}
		time.Sleep(DropTimeout + time.Second)
		if _, ctr, pending := p.snapshot(); ctr.Evicted != 5 || ctr.Dropped != 0 || pending != 0 {
			t.Errorf("counters %+v, %d waiting; want 5 evicted, none dropped or waiting", ctr, pending)
		}
	})
}

// TestHighSecurityBurstWithoutChecksEvictsOldestAtArrival: with nothing
// to check before the greeting, a client handed to a process that has not
// started yet already counts as logging in, so the same burst evicts at
// arrival, strictly in arrival order, without waiting for any process to
// report; the rest follows the victims' exits alone.
func TestHighSecurityBurstWithoutChecksEvictsOldestAtArrival(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, r := testPool(t, "service imap-login {\n service_count = 1\n process_limit = 3\n}\n")
		for i := 0; i < 8; i++ {
			p.arrive(-1, anyAddr)
		}
		if _, ctr, pending := p.snapshot(); ctr.Evicted != 0 || pending != 5 {
			t.Fatalf("at arrival: %d waiting, counters %+v; want 5 waiting, none evicted yet (evictGrace)", pending, ctr)
		}
		pastEvictGrace()
		if _, ctr, pending := p.snapshot(); ctr.Evicted != 3 || pending != 5 {
			t.Fatalf("after evictGrace: %d waiting, counters %+v; want 5 waiting, 3 evicted", pending, ctr)
		}
		for w := 0; w < 5; w++ {
			r.w(w).emit(worker.Event{Kind: worker.EventExit})
		}
		if d := cmp.Diff(burstOutcome, r.told()); d != "" {
			t.Errorf("what each process was told (-want +got)\n%s", d)
		}
		if _, ctr, pending := p.snapshot(); ctr.Evicted != 5 || ctr.Dropped != 0 || pending != 0 {
			t.Errorf("counters %+v, %d waiting; want 5 evicted, none dropped or waiting", ctr, pending)
		}
	})
}

// TestHighPerformanceEvictsAsAcceptedClientsBecomeLoggingIn: two full
// high-performance processes whose four clients (accepted by the
// processes themselves) are being access-checked; three connections
// arrive at the supervisor and wait. As each client becomes logging-in,
// it is evicted for the oldest waiting connection, which gets its slot
// in the same process at once (no process exits or starts).
func TestHighPerformanceEvictsAsAcceptedClientsBecomeLoggingIn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, r := testPool(t, "login_access_sockets = tcpwrap\nservice imap-login {\n service_count = 0\n client_limit = 2\n process_limit = 2\n process_min_avail = 2\n}\n", fakeListener(t))
		a, b := uint64(1)<<32, uint64(2)<<32
		for i, w := range []*fakeWorker{r.w(0), r.w(1)} {
			base := []uint64{a, b}[i]
			w.emit(worker.Event{Kind: worker.EventReady})
			w.emit(worker.Event{Kind: worker.EventAccepted, Conn: base | 1, State: ipc.StateChecking})
			w.emit(worker.Event{Kind: worker.EventAccepted, Conn: base | 2, State: ipc.StateChecking})
		}
		for i := 0; i < 3; i++ {
			// conns 1, 2, 3, each from an address of its own: a
			// source that holds more places than a victim's would not
			// evict it (evict.go)
			p.arrive(-1, netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, byte(1 + i)}), 1))
		}
		if _, ctr, pending := p.snapshot(); ctr.Evicted != 0 || pending != 3 {
			t.Fatalf("at arrival: %d waiting, counters %+v; want 3 waiting, none evicted", pending, ctr)
		}
		pastEvictGrace()
		r.w(1).emit(worker.Event{Kind: worker.EventState, Conn: b | 1, State: ipc.StateLoggingIn}) // for conn 1
		r.w(0).emit(worker.Event{Kind: worker.EventState, Conn: a | 2, State: ipc.StateLoggingIn}) // for conn 2
		// A listening process reports each client handed to it at
		// once (canGive): the next one goes there only then.
		r.w(0).emit(worker.Event{Kind: worker.EventState, Conn: 2, State: ipc.StateChecking})
		r.w(0).emit(worker.Event{Kind: worker.EventState, Conn: a | 1, State: ipc.StateLoggingIn}) // for conn 3
		r.w(1).emit(worker.Event{Kind: worker.EventState, Conn: b | 2, State: ipc.StateLoggingIn}) // nobody waits: kept
		want := [][]string{
			{fmt.Sprintf("evict %d", a|2), "give 2", fmt.Sprintf("evict %d", a|1), "give 3"},
			{fmt.Sprintf("evict %d", b|1), "give 1"},
		}
		if d := cmp.Diff(want, r.told()); d != "" {
			t.Errorf("what each process was told (-want +got)\n%s", d)
		}
		if _, ctr, pending := p.snapshot(); ctr.Evicted != 3 || pending != 0 || ctr.Direct != 4 {
			t.Errorf("counters %+v, %d waiting; want 3 evicted, 4 direct, none waiting", ctr, pending)
		}
	})
}

// TestEvictionOnlyWhereItMakesRoom: a process that has served its
// service_count (2) and still holds two clients takes no new one whether
// or not one of them is evicted, so a connection waiting at the limit
// evicts nobody; once one client has left, evicting the other makes the
// process exit, and that is what happens.
func TestEvictionOnlyWhereItMakesRoom(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, r := testPool(t, "service imap-login {\n service_count = 2\n client_limit = 2\n process_limit = 1\n}\n")
		p.arrive(-1, anyAddr)
		p.arrive(-1, anyAddr)
		r.w(0).emit(worker.Event{Kind: worker.EventReady})
		p.arrive(-1, anyAddr) // conn 3 waits
		pastEvictGrace()
		if _, ctr, pending := p.snapshot(); ctr.Evicted != 0 || pending != 1 {
			t.Fatalf("%d waiting, counters %+v; want 1 waiting, none evicted", pending, ctr)
		}
		r.w(0).emit(worker.Event{Kind: worker.EventClosed, Conn: 2}) // conn 1 is now its last client
		r.w(0).emit(worker.Event{Kind: worker.EventExit})
		want := [][]string{{"give 1", "give 2", "evict 1"}, {"give 3"}}
		if d := cmp.Diff(want, r.told()); d != "" {
			t.Errorf("what each process was told (-want +got)\n%s", d)
		}
		if _, ctr, pending := p.snapshot(); ctr.Evicted != 1 || pending != 0 {
			t.Errorf("counters %+v, %d waiting; want 1 evicted, none waiting", ctr, pending)
		}
	})
}

// TestShutdownAfterTheLastProcessExited: a process that exits between
// stopSpawning and shutdown (the pool is stopping and empty) must not
// make shutdown close the pool's done channel a second time.
func TestShutdownAfterTheLastProcessExited(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, r := testPool(t, "service imap-login {\n process_min_avail = 1\n}\n")
		r.w(0).emit(worker.Event{Kind: worker.EventReady})
		p.stopSpawning()
		r.w(0).emit(worker.Event{Kind: worker.EventExit})
		p.shutdown(t.Context(), time.Second, ipc.StopShutdown)
	})
}
