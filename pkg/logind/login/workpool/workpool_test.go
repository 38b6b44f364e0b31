package workpool

import (
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
)

// stats is Pool.Stats as one comparable value.
type stats struct{ Workers, Idle int }

func statsOf(p *Pool) stats {
	w, i := p.Stats()
	return stats{w, i}
}

// TestEveryFunctionOnce: functions handed to the pool from many
// goroutines at once each run exactly once, however many workers wait
// and whatever the bounds.
func TestEveryFunctionOnce(t *testing.T) {
	for _, tt := range []struct {
		name    string
		maxIdle int
		timeout time.Duration
	}{
		{"zero pool", 0, 0},
		{"one idle", 1, time.Minute},
		{"sixteen idle", 16, time.Minute},
		{"short timeout", 4, time.Microsecond},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := &Pool{MaxIdle: tt.maxIdle, IdleTimeout: tt.timeout}
			const senders, each = 8, 500
			var runs [senders * each]atomic.Int32
			var wg sync.WaitGroup
			wg.Add(senders * each)
			for s := range senders {
				go func() {
					for i := range each {
						n := s*each + i
						p.Go(func() { runs[n].Add(1); wg.Done() })
					}
				}()
			}
			wg.Wait()
			for n := range runs {
				if got := runs[n].Load(); got != 1 {
					t.Errorf("function %d ran %d times", n, got)
				}
			}
			// The workers settle: none over MaxIdle waits, and
			// every one still there is a waiting one.
			deadline := time.Now().Add(10 * time.Second)
			for {
				s := statsOf(p)
				if s.Idle <= tt.maxIdle && s.Workers == s.Idle {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("workers never settled: %+v, MaxIdle %d", s, tt.maxIdle)
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
}

// TestBounded: after a burst of concurrent functions, at most MaxIdle
// workers stay, each for IdleTimeout; then none. A function handed
// over meanwhile runs on a waiting worker, not a new one.
func TestBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &Pool{MaxIdle: 3, IdleTimeout: 5 * time.Second}
		release := make(chan struct{})
		for range 10 {
			p.Go(func() { <-release })
		}
		synctest.Wait()
		if diff := cmp.Diff(stats{Workers: 10}, statsOf(p)); diff != "" {
			t.Errorf("burst (-want +got):\n%s", diff)
		}
		close(release)
		synctest.Wait()
		if diff := cmp.Diff(stats{Workers: 3, Idle: 3}, statsOf(p)); diff != "" {
			t.Errorf("after the burst (-want +got):\n%s", diff)
		}
		time.Sleep(4 * time.Second)
		ran := false
		p.Go(func() { ran = true })
		synctest.Wait()
		if !ran {
			t.Error("the function did not run")
		}
		if diff := cmp.Diff(stats{Workers: 3, Idle: 3}, statsOf(p)); diff != "" {
			t.Errorf("one more function (-want +got):\n%s", diff)
		}
		// The two that kept waiting end at 5 s, the one that ran
		// waits 5 s from its function's end.
		time.Sleep(time.Second + time.Millisecond)
		synctest.Wait()
		if diff := cmp.Diff(stats{Workers: 1, Idle: 1}, statsOf(p)); diff != "" {
			t.Errorf("at 5 s (-want +got):\n%s", diff)
		}
		time.Sleep(4 * time.Second)
		synctest.Wait()
		if diff := cmp.Diff(stats{}, statsOf(p)); diff != "" {
			t.Errorf("idle (-want +got):\n%s", diff)
		}
	})
}

// TestReused: functions one after the other run on one goroutine,
// which the zero pool (and a process serving one client) never keeps.
func TestReused(t *testing.T) {
	for _, tt := range []struct {
		name       string
		pool       *Pool
		want       stats // between functions
		goroutines int   // the five functions ran on
	}{
		{"pool", &Pool{MaxIdle: 16, IdleTimeout: 5 * time.Second}, stats{Workers: 1, Idle: 1}, 1},
		{"zero pool", &Pool{}, stats{}, 5},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := tt.pool
				goroutines := map[string]bool{}
				for range 5 {
					p.Go(func() { goroutines[goroutineID()] = true })
					synctest.Wait()
					if diff := cmp.Diff(tt.want, statsOf(p)); diff != "" {
						t.Errorf("between functions (-want +got):\n%s", diff)
					}
				}
				if len(goroutines) != tt.goroutines {
					t.Errorf("the functions ran on %d goroutines, want %d", len(goroutines), tt.goroutines)
				}
				time.Sleep(p.IdleTimeout)
				synctest.Wait()
			})
		})
	}
}

// goroutineID is the calling goroutine's number (runtime.Stack's first
// line).
func goroutineID() string {
	b := make([]byte, 64)
	b = b[:runtime.Stack(b, false)]
	return strings.Fields(string(b))[1]
}

// TestGoexit: a function that ends its goroutine (runtime.Goexit, as
// t.FailNow does) takes its worker with it, and the worker is no
// longer counted; the pool goes on serving.
func TestGoexit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &Pool{MaxIdle: 2, IdleTimeout: time.Second}
		p.Go(func() {})
		synctest.Wait()
		p.Go(runtime.Goexit) // on the waiting worker
		synctest.Wait()
		if diff := cmp.Diff(stats{}, statsOf(p)); diff != "" {
			t.Errorf("after Goexit (-want +got):\n%s", diff)
		}
		ran := 0
		for range 3 {
			p.Go(func() { ran++ })
			synctest.Wait()
		}
		if ran != 3 {
			t.Errorf("%d functions ran after Goexit, want 3", ran)
		}
		if diff := cmp.Diff(stats{Workers: 1, Idle: 1}, statsOf(p)); diff != "" {
			t.Errorf("after Goexit and three functions (-want +got):\n%s", diff)
		}
		time.Sleep(time.Second)
		synctest.Wait()
	})
}

// TestPanicEndsProcess: a function that panics on a reused worker
// ends the process with its panic, as on a goroutine of its own: the
// pool recovers nothing, so a session's crash is not hidden.
func TestPanicEndsProcess(t *testing.T) {
	if os.Getenv("WORKPOOL_PANIC_CHILD") == "1" {
		p := &Pool{MaxIdle: 1, IdleTimeout: time.Minute}
		done := make(chan struct{})
		p.Go(func() { close(done) })
		<-done
		for statsOf(p).Idle != 1 {
			runtime.Gosched()
		}
		p.Go(func() { panic("session panicked") })
		select {}
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestPanicEndsProcess$")
	cmd.Env = append(os.Environ(), "WORKPOOL_PANIC_CHILD=1")
	out, err := cmd.CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "panic: session panicked") {
		t.Errorf("child: %v, output:\n%s\nwant exit status 2 and the panic", err, out)
	}
}

// deep uses about depth × 300 bytes of stack over depth frames, as a
// login's call chain does (the auth client, SASL, the hand-off, a log
// line: 1.9 stack growths per plaintext login on a new goroutine).
//
//go:noinline
func deep(depth int) byte {
	var pad [256]byte
	pad[depth%256] = byte(depth)
	if depth == 0 {
		return pad[0]
	}
	return deep(depth-1) + pad[(depth+1)%256]
}

// BenchmarkDeepFunction: a function that grows its stack to about
// 19 KB (64 frames), run on a new goroutine (the go statement, as the
// login process did) and on the pool's reused workers; shallow: one
// frame, no growth (what the pool's hand-over costs against go).
func BenchmarkDeepFunction(b *testing.B) {
	for _, bb := range []struct {
		name  string
		depth int
		spawn func(func())
	}{
		{"go", 64, func(f func()) { go f() }},
		{"pool", 64, (&Pool{MaxIdle: 16, IdleTimeout: 5 * time.Second}).Go},
		{"go/shallow", 0, func(f func()) { go f() }},
		{"pool/shallow", 0, (&Pool{MaxIdle: 16, IdleTimeout: 5 * time.Second}).Go},
	} {
		b.Run(bb.name, func(b *testing.B) {
			done := make(chan struct{})
			f := func() { deep(bb.depth); done <- struct{}{} }
			for b.Loop() {
				bb.spawn(f)
				<-done
			}
		})
	}
}
