package worker

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// records collects slog records' messages.
type records struct {
	mu   sync.Mutex
	msgs []string
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	msg := rec.Message
	rec.Attrs(func(a slog.Attr) bool { msg += " " + a.String(); return true })
	r.msgs = append(r.msgs, msg)
	return nil
}
func (r *records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *records) WithGroup(string) slog.Handler      { return r }

// TestRelayLogBoundsACrash: a login process that dies in a runtime throw
// ("fatal error: out of memory") has every goroutine's stack printed by
// the Go runtime whatever GOTRACEBACK says (runtime throws always print
// all goroutines); the supervisor logs the lines before it, the first
// CrashLines lines of the crash, the vsz_limit hint and one line saying
// how many were left out, not the 180,000 lines of a busy process.
func TestRelayLogBoundsACrash(t *testing.T) {
	var in strings.Builder
	in.WriteString("INFO Disconnected: Connection closed\n")
	in.WriteString("runtime: out of memory: cannot allocate 4194304-byte block (66977792 in use)\n")
	in.WriteString("fatal error: out of memory\n\n")
	const goroutines = 15000
	for i := range goroutines {
		fmt.Fprintf(&in, "goroutine %d [IO wait]:\ninternal/poll.runtime_pollWait(0x7f, 0x72)\n\t/usr/lib/go/src/runtime/netpoll.go:351 +0x85\n", i)
	}
	in.WriteString("INFO after the crash\n")
	total := 4 + 3*goroutines + 1
	rec := &records{}
	relayLog(strings.NewReader(in.String()), slog.New(rec), 64<<20, newLogLimiter(1), nil)
	if len(rec.msgs) > CrashLines+5 {
		t.Fatalf("%d log records for a crash of %d lines, want at most %d", len(rec.msgs), total, CrashLines+5)
	}
	want := []string{
		"Disconnected: Connection closed",
		"runtime: out of memory: cannot allocate 4194304-byte block (66977792 in use)",
		"fatal error: out of memory",
		"Out of memory (vsz_limit=64 MB), you may need to increase it",
	}
	for i, w := range want {
		if rec.msgs[i] != w {
			t.Errorf("record %d: %q, want %q", i, rec.msgs[i], w)
		}
	}
	last := rec.msgs[len(rec.msgs)-1]
	if wantLast := fmt.Sprintf("crash output of the login process cut short lines_not_logged=%d", total-2-CrashLines); last != wantLast {
		t.Errorf("last record %q, want %q", last, wantLast)
	}
}
