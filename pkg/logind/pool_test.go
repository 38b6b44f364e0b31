package logind

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
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
	events func(WorkerEvent)
	mu     sync.Mutex
	log    []string
	dead   bool
}

func (r *fakeRunner) Start(_ context.Context, spec WorkerSpec, ev func(WorkerEvent)) (Worker, error) {
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
func (w *fakeWorker) Give(id uint64, fd int) error { return w.rec(fmt.Sprintf("give %d", id)) }
func (w *fakeWorker) Evict(id uint64) error        { return w.rec(fmt.Sprintf("evict %d", id)) }
func (w *fakeWorker) Stop(m StopMode) error        { return w.rec(fmt.Sprintf("stop %d", m)) }
func (w *fakeWorker) Kill() error                  { return w.rec("kill") }
func (w *fakeWorker) got() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.log...)
}

// emit delivers an event as the worker's reader goroutine would.
func (w *fakeWorker) emit(ev WorkerEvent) { w.events(ev) }

func testPool(t *testing.T, conf string) (*pool, *fakeRunner) {
	t.Helper()
	cfg, err := Parse("t.conf", []byte("base_dir = /tmp/x\n"+conf))
	if err != nil {
		t.Fatal(err)
	}
	r := &fakeRunner{}
	var seq, id atomic.Uint64
	p := newPool(t.Context(), slog.New(slog.DiscardHandler), r, cfg, cfg.Service("imap-login"), 1, &seq, &id, nil)
	t.Cleanup(func() { p.mu.Lock(); p.stopIdle(); p.mu.Unlock() })
	return p, r
}

var anyAddr = netip.MustParseAddrPort("127.0.0.1:1")

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
			r.w(i).emit(WorkerEvent{Kind: EventReady})
			r.w(i).emit(WorkerEvent{Kind: EventState, Conn: uint64(i + 1), State: StateLoggingIn})
		}
		// The oldest client (conn 1) is proxying: never a victim.
		r.w(0).emit(WorkerEvent{Kind: EventState, Conn: 1, State: StateProxying})
		p.arrive(-1, anyAddr) // conn 4: evicts conn 2 only
		p.arrive(-1, anyAddr) // conn 5: evicts conn 3 only
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
		r.w(1).emit(WorkerEvent{Kind: EventExit})
		r.w(2).emit(WorkerEvent{Kind: EventExit})
		if r.n() != 5 || cmp.Diff([]string{"give 4"}, r.w(3).got()) != "" || cmp.Diff([]string{"give 5"}, r.w(4).got()) != "" {
			t.Fatalf("replacements: n=%d %v %v", r.n(), r.w(3).got(), r.w(4).got())
		}
		_, ctr, pending := p.snapshot()
		if ctr.Evicted != 2 || pending != 0 || ctr.Accepted != 5 {
			t.Errorf("counters %+v pending %d", ctr, pending)
		}
	})
}

func TestNothingEvictableDropsAfterTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, r := testPool(t, "service imap-login {\n process_limit = 1\n}\n")
		p.arrive(-1, anyAddr)
		r.w(0).emit(WorkerEvent{Kind: EventReady})
		r.w(0).emit(WorkerEvent{Kind: EventState, Conn: 1, State: StateProxying})
		p.arrive(-1, anyAddr)
		time.Sleep(DropTimeout + time.Millisecond)
		synctest.Wait()
		_, ctr, pending := p.snapshot()
		if ctr.Dropped != 1 || ctr.Evicted != 0 || pending != 0 {
			t.Errorf("counters %+v pending %d", ctr, pending)
		}
	})
}

func TestHighPerformanceSpillOverAndEviction(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, r := testPool(t, "service imap-login {\n service_count = 0\n client_limit = 2\n process_limit = 2\n process_min_avail = 1\n}\n")
		if r.n() != 1 {
			t.Fatalf("prefork: %d processes, want 1", r.n())
		}
		r.w(0).emit(WorkerEvent{Kind: EventReady})
		for i := 1; i <= 4; i++ {
			p.arrive(-1, anyAddr)
			time.Sleep(time.Second)
		}
		for i := 1; i <= 4; i++ {
			w := r.w(0)
			if i > 2 {
				w = r.w(1)
			}
			w.emit(WorkerEvent{Kind: EventState, Conn: uint64(i), State: StateLoggingIn})
		}
		// Full: 2 processes x 2 clients. Conn 5 evicts conn 1 (the oldest)
		// and goes to the same process at once.
		p.arrive(-1, anyAddr)
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
			r.w(i).emit(WorkerEvent{Kind: EventExit, ExitCode: 89})
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
		r.w(0).emit(WorkerEvent{Kind: EventReady})
		p.arrive(-1, anyAddr) // fills worker 0; worker 1 is preforked once conn 1 is greeted
		r.w(0).emit(WorkerEvent{Kind: EventState, Conn: 1, State: StateLoggingIn})
		r.w(1).emit(WorkerEvent{Kind: EventReady})
		r.w(0).emit(WorkerEvent{Kind: EventClosed, Conn: 1})
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
		r.w(0).emit(WorkerEvent{Kind: EventReady})
		p.arrive(-1, anyAddr)
		if r.n() != 1 {
			t.Fatalf("replacement started before the greeting: %d processes", r.n())
		}
		r.w(0).emit(WorkerEvent{Kind: EventState, Conn: 1, State: StateLoggingIn})
		if r.n() != 2 {
			t.Fatalf("no replacement after the greeting: %d processes", r.n())
		}
		// No greeting report (a slow access check): replenishAfter.
		r.w(1).emit(WorkerEvent{Kind: EventReady})
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
