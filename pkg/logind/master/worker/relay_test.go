package worker

import (
	"context"
	"io"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/config"

	"github.com/google/go-cmp/cmp"
)

// recordHandler counts log records and sums their "suppressed" attrs.
type recordHandler struct {
	mu         sync.Mutex
	records    []string
	suppressed int64
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *recordHandler) WithGroup(string) slog.Handler            { return h }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r.Message)
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "suppressed" {
			h.suppressed += a.Value.Int64()
		}
		return true
	})
	return nil
}

// lineSource yields n lines "INFO line i\n" without holding them.
type lineSource struct{ i, n int }

func (s *lineSource) Read(p []byte) (int, error) {
	k := 0
	for s.i < s.n {
		line := "INFO line " + strconv.Itoa(s.i) + "\n"
		if k+len(line) > len(p) {
			break
		}
		k += copy(p[k:], line)
		s.i++
	}
	if k == 0 && s.i >= s.n {
		return 0, io.EOF
	}
	return k, nil
}

// TestRelayLogBounds: two million lines are relayed as LogBurst plus
// LogRate a second (plus the lines a client's may run ahead of its grant), every other one counted as suppressed, in bounded
// memory; client grants add LogPerClient lines each; a line longer than
// MaxLogLine is cut and marked, and the next line is whole.
func TestRelayLogBounds(t *testing.T) {
	t.Run("flood", func(t *testing.T) {
		const n = 2_000_000
		h := &recordHandler{}
		before := heapInUse()
		start := time.Now()
		relayLog(&lineSource{n: n}, slog.New(h), 0, newLogLimiter(1), nil)
		elapsed := time.Since(start)
		lines := 0
		for _, r := range h.records {
			if strings.HasPrefix(r, "line ") {
				lines++
			}
		}
		t.Logf("%d lines in %v: %d relayed, %d suppressed, %d records", n, elapsed, lines, h.suppressed, len(h.records))
		if max := LogBurst + int(elapsed.Seconds()*LogRate) + 1 + 2*LogPerClient; lines > max { // + the lines ahead of grants (client_limit 1)
			t.Errorf("%d lines relayed, at most %d allowed", lines, max)
		}
		if lines+int(h.suppressed) != n {
			t.Errorf("relayed %d + suppressed %d != %d", lines, h.suppressed, n)
		}
		if grown := int64(heapInUse()) - int64(before); grown > 8<<20 {
			t.Errorf("heap grew by %d bytes", grown)
		}
	})
	t.Run("client grants", func(t *testing.T) {
		h := &recordHandler{}
		lim := newLogLimiter(99) // up to 100 × LogPerClient lines ahead of grants
		for range 10 {
			lim.grant()
		}
		relayLog(&lineSource{n: LogBurst + 3000}, slog.New(h), 0, lim, nil)
		if got, want := len(h.records)-1, LogBurst+10*LogPerClient+100*LogPerClient; got < want || got > want+LogRate {
			t.Errorf("%d lines relayed, want %d (+ refill)", got, want)
		}
	})
	t.Run("long line", func(t *testing.T) {
		h := &recordHandler{}
		in := "INFO start " + strings.Repeat("x", 10<<20) + "\nWARN next\nno level\n"
		relayLog(strings.NewReader(in), slog.New(h), 0, newLogLimiter(1), nil)
		want := []string{"start " + strings.Repeat("x", MaxLogLine-len("INFO start ")) + LogLineCut, "next", "no level"}
		if d := cmp.Diff(want, h.records); d != "" {
			t.Errorf("(-want +got)\n%s", d)
		}
	})
}

// TestRelayLogDropsSchedTrace: the runtime's scheduler trace line
// (printed by a process with SysmonNoDeepSleep once every 24.8 days) is
// not logged; lines that only look like it are.
func TestRelayLogDropsSchedTrace(t *testing.T) {
	h := &recordHandler{}
	in := "INFO before\n" +
		"SCHED 0ms: gomaxprocs=1 idleprocs=0 threads=2 spinningthreads=0 needspinning=0 idlethreads=0 runqueue=0 [ 0 ] schedticks=[ 0 ]\n" +
		"SCHED 2147483647ms: gomaxprocs=2 idleprocs=2 threads=5 spinningthreads=0 needspinning=0 idlethreads=3 runqueue=0 [ 0 0 ] schedticks=[ 9 4 ]\n" +
		"SCHED ms: gomaxprocs=1\n" +
		"INFO SCHED 1ms: gomaxprocs=1\n" +
		"WARN after\n"
	relayLog(strings.NewReader(in), slog.New(h), 0, newLogLimiter(1), nil)
	want := []string{"before", "SCHED ms: gomaxprocs=1", "SCHED 1ms: gomaxprocs=1", "after"}
	if d := cmp.Diff(want, h.records); d != "" {
		t.Errorf("(-want +got)\n%s", d)
	}
}

// TestLoginEnv: a login process's environment by mode: GOMAXPROCS=1,
// and SysmonNoDeepSleep without a service_count; ExecRunner.Env last.
func TestLoginEnv(t *testing.T) {
	base := []string{"LOGINSVC_LOGIN_PROCESS=1", "GOTRACEBACK=none", "GOMAXPROCS=1"}
	for _, tc := range []struct {
		name         string
		serviceCount int
		extra        []string
		want         []string
	}{
		{"high-security", 1, nil, base},
		{"service_count = 100", 100, nil, base},
		{"high-performance", 0, nil, append(base[:3:3], SysmonNoDeepSleep)},
		{"high-performance, Env", 0, []string{"GODEBUG="}, append(base[:3:3], SysmonNoDeepSleep, "GODEBUG=")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := loginEnv(&config.Service{ServiceCount: tc.serviceCount}, tc.extra)
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("(-want +got)\n%s", d)
			}
		})
	}
}

// TestLoginNProc: the RLIMIT_NPROC ceiling covers the threads of every
// login process of the services running as the same user, twice (a
// reload), plus the reserve.
func TestLoginNProc(t *testing.T) {
	cfg, err := config.Parse("t.conf", []byte("protocols = imap pop3\nservice imap-login {\n service_count = 1\n process_limit = 10\n}\nservice pop3-login {\n service_count = 1\n process_limit = 5\n user = other\n}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := NProc(cfg, cfg.Service("imap-login")), uint64(2*10*16+nprocReserve); got != want {
		t.Errorf("imap-login: %d, want %d", got, want)
	}
	if got, want := NProc(cfg, cfg.Service("pop3-login")), uint64(2*5*16+nprocReserve); got != want {
		t.Errorf("pop3-login: %d, want %d", got, want)
	}
}

// heapInUse is the test process's heap in use after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// chunks is a reader that returns one chunk per Read, as a login
// process's batched stderr writes arrive.
type chunks []string

func (c *chunks) Read(p []byte) (int, error) {
	if len(*c) == 0 {
		return 0, io.EOF
	}
	n := copy(p, (*c)[0])
	*c = (*c)[1:]
	return n, nil
}

// writes records each Write as one string.
type writes struct{ got []string }

func (w *writes) Write(p []byte) (int, error) {
	w.got = append(w.got, string(p))
	return len(p), nil
}

// TestRelayLogBatches: the lines relayed from one read of a login
// process's stderr go out in one write of the supervisor's log, a lone
// line in one of its own, and a line the supervisor logs while no relay
// holds the batch at once; a partial line does not hold the batch while
// its rest is awaited.
func TestRelayLogBatches(t *testing.T) {
	out := &writes{}
	batch := &LogBatch{W: out}
	log := slog.New(slog.NewTextHandler(batch, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	in := chunks{
		"INFO Disconnected: a\nINFO Disconnected: b\nWARN c\n",
		"INFO alone\nINFO part",
		"ial\n",
	}
	relayLog(&in, log, 0, newLogLimiter(1), batch)
	log.Info("supervisor")
	want := []string{
		"level=INFO msg=\"Disconnected: a\"\nlevel=INFO msg=\"Disconnected: b\"\nlevel=WARN msg=c\n",
		"level=INFO msg=alone\n",
		"level=INFO msg=partial\n",
		"level=INFO msg=supervisor\n",
	}
	if d := cmp.Diff(want, out.got); d != "" {
		t.Errorf("writes (-want +got):\n%s", d)
	}
}

// TestLogLinesAheadOfGrants: a high-performance process's lines for the
// clients it accepted itself can reach the relay before the reports
// that grant their budget (batched for up to 20 ms, read on another
// goroutine). With its bucket spent, a busy process whose grants lag
// its lines by up to client_limit + 1 clients loses none of its
// per-client lines (before: grants beyond the reserve were thrown away
// while the lines ahead of them were dropped: 6 Disconnected lines of
// 11,342 lost in 8 s of 1,400 logins a second under reloads); a
// process that logs more than its grants is still cut at the bound.
func TestLogLinesAheadOfGrants(t *testing.T) {
	const clientLimit = 4
	lim := newLogLimiter(clientLimit)
	now := lim.last
	for range LogBurst {
		if !lim.allow(now) {
			t.Fatal("bucket refused a line")
		}
	}
	// 10,000 clients, one line each, each grant 5 clients behind its line.
	const lag = clientLimit + 1
	lost := 0
	for i := range 10000 {
		if !lim.allow(now) {
			lost++
		}
		if i >= lag {
			lim.grant()
		}
	}
	if lost != 0 {
		t.Errorf("%d of 10000 per-client lines suppressed", lost)
	}
	// A process that logs beyond its grants is cut after at most
	// maxCredit lines ahead.
	extra := 0
	for range 10000 {
		if lim.allow(now) {
			extra++
		}
	}
	if max := 2*LogPerClient*(clientLimit+1) + lag; extra > max {
		t.Errorf("%d lines beyond the grants relayed, at most %d", extra, max)
	}
}

// TestWithSysmonNoDeepSleep covers the supervisor's environment for
// executing itself: the setting added to GODEBUG after the settings it
// has, nothing done when GODEBUG sets schedtrace already.
func TestWithSysmonNoDeepSleep(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in, out []string
		added   bool
	}{
		{"no GODEBUG", []string{"PATH=/bin"}, []string{"PATH=/bin", SysmonNoDeepSleep}, true},
		{"empty GODEBUG", []string{"GODEBUG=", "PATH=/bin"}, []string{"PATH=/bin", SysmonNoDeepSleep}, true},
		{"other settings kept", []string{"GODEBUG=madvdontneed=1,gctrace=0"}, []string{"GODEBUG=madvdontneed=1,gctrace=0,schedtrace=2147483647"}, true},
		{"schedtrace set stands", []string{"GODEBUG=gctrace=0,schedtrace=0"}, []string{"GODEBUG=gctrace=0,schedtrace=0"}, false},
		{"only the first GODEBUG counts", []string{"GODEBUG=x=1", "GODEBUG=schedtrace=5"}, []string{"GODEBUG=x=1,schedtrace=2147483647"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, added := WithSysmonNoDeepSleep(tc.in)
			if diff := cmp.Diff(tc.out, out); diff != "" || added != tc.added {
				t.Errorf("WithSysmonNoDeepSleep(%q) = %q, %v, want %v (-want +got):\n%s", tc.in, out, added, tc.added, diff)
			}
		})
	}
}
