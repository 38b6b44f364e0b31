package accessd

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestReloadWaitsForQuietFiles rewrites hosts.deny in place in two writes
// with a pause between them, the way a slow editor or a script appending
// rules does, and reloads in the middle: the reload must adopt the
// complete file, never the first half.
func TestReloadWaitsForQuietFiles(t *testing.T) {
	dir := t.TempDir()
	allow, deny := filepath.Join(dir, "hosts.allow"), filepath.Join(dir, "hosts.deny")
	if err := os.WriteFile(deny, []byte("ALL: 10.0.0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := newReloadable(allow, deny, nil)
	full := strings.Repeat("ALL: 10.9.9.9\n", 50) + "ALL: 10.0.0.2\n"
	f, err := os.OpenFile(deny, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(full[:len(full)/2]); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(SettleTime / 2)
		f.WriteString(full[len(full)/2:])
		f.Close()
	}()
	r.Reload("test") // starts while the file is half-written
	<-done
	if _, n := r.Policy().Rules(); n != 51 {
		t.Errorf("adopted hosts.deny with %d rules, want the complete 51", n)
	}
}

// TestReloadTornAppender appends rules to hosts.deny the way a careless
// script does, each line in two writes ("ALL: 10.1.0.k", a pause longer
// than SettleTime, then "\n"), while the daemon serves checks from
// 127.0.0.1, which no rule names. hosts.deny with an unterminated last line
// denies every client no rule before it matched (libwrap's meaning), so a
// refusal of 127.0.0.1 is a verdict from a half-written file. The daemon
// must keep the previous rules while the file is being written and adopt
// the complete file once the writer has stopped.
func TestReloadTornAppender(t *testing.T) {
	requireEngine(t)
	const lines = 10
	d := startSettleDaemon(t, "ALL: 10.1.0.0\n")
	p := d.probe(t, "127.0.0.1")

	f, err := os.OpenFile(d.deny, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	var torn []span // while the file ended mid-line
	for k := 1; k <= lines; k++ {
		begin := time.Now()
		write(t, f, fmt.Sprintf("ALL: 10.1.0.%d", k))
		time.Sleep(SettleTime + 100*time.Millisecond)
		write(t, f, "\n")
		torn = append(torn, span{begin, time.Now()})
		time.Sleep(50 * time.Millisecond)
	}
	f.Close()
	d.waitLog(t, "the complete hosts.deny", `msg="rules loaded"`, fmt.Sprintf("deny_rules=%d", lines+1))
	results := p.stop()

	// A torn tail left alone for TornSettleTime may be adopted: the writer
	// stalled (a busy machine), and the file is what it is.
	bad, excused := d.judge(t, results, "1\n", torn, TornSettleTime-50*time.Millisecond)
	t.Logf("%d checks of 127.0.0.1 while %d lines were appended in two writes each: %d refused (torn tail adopted), %d of them excused by a writer stall; %d loads with errors",
		len(results), lines, bad+excused, excused, count(d.log.String(), `msg="rules loaded"`)-count(d.log.String(), `msg="rules loaded"`, "errors=0"))
}

// TestReloadTruncateSlowWrite rewrites hosts.deny in place, truncating it
// and then writing it back one line per write with short pauses, for longer
// than any bound a reload might once have put on its wait, while the
// daemon serves checks from 127.0.0.2, which the last line bans. A grant is
// a verdict from a partly written file. The daemon must keep the previous
// rules until the writer has finished.
func TestReloadTruncateSlowWrite(t *testing.T) {
	requireEngine(t)
	const lines = 70
	var b strings.Builder
	for k := range lines {
		fmt.Fprintf(&b, "ALL: 10.2.0.%d\n", k)
	}
	b.WriteString("ALL: 127.0.0.2\n")
	full := b.String()
	d := startSettleDaemon(t, full)
	p := d.probe(t, "127.0.0.2")

	f, err := os.OpenFile(d.deny, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var gaps []span // between two writes: the file is partial and quiet
	last := time.Now()
	for _, line := range strings.SplitAfter(full, "\n") {
		if line == "" {
			continue
		}
		time.Sleep(60 * time.Millisecond)
		now := time.Now()
		gaps = append(gaps, span{last, now})
		write(t, f, line)
		last = time.Now()
	}
	f.Close()
	// The complete file has the same rules as before; wait for a load
	// after the last write.
	d.waitLog(t, "a load of the rewritten hosts.deny", `msg="rules loaded"`, `reason=changed`, fmt.Sprintf("deny_rules=%d", lines+1))
	results := p.stop()

	// A partial file left alone for SettleTime may be adopted: the writer
	// stalled, which the reload cannot tell from a finished file.
	bad, excused := d.judge(t, results, "0\n", gaps, SettleTime-50*time.Millisecond)
	t.Logf("%d checks of 127.0.0.2 while hosts.deny was rewritten in %d writes over %v: %d granted (partial file adopted), %d of them excused by a writer stall",
		len(results), lines+1, time.Duration(lines+1)*60*time.Millisecond, bad+excused, excused)
}

// TestReloadRemoveThenCreate removes hosts.deny and writes it again a
// moment later, as an editor or a script may: the moment without the file
// (no deny rules) must not be adopted. A missing file has no times of its
// own; its directory's times say when it went.
func TestReloadRemoveThenCreate(t *testing.T) {
	requireEngine(t)
	const rounds = 5
	d := startSettleDaemon(t, "ALL: 127.0.0.2\n")
	p := d.probe(t, "127.0.0.2")
	var gone []span
	for k := range rounds {
		begin := time.Now()
		if err := os.Remove(d.deny); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
		if err := os.WriteFile(d.deny, []byte(fmt.Sprintf("# round %d\nALL: 127.0.0.2\n", k)), 0o644); err != nil {
			t.Fatal(err)
		}
		gone = append(gone, span{begin, time.Now()})
		d.waitLog(t, fmt.Sprintf("round %d", k), `msg="rules loaded"`, fmt.Sprintf("generation=%d", k+2))
	}
	results := p.stop()
	bad, excused := d.judge(t, results, "0\n", gone, SettleTime-50*time.Millisecond)
	t.Logf("%d checks of 127.0.0.2 while hosts.deny was removed and written again %d times: %d granted, %d of them excused by a writer stall",
		len(results), rounds, bad+excused, excused)
}

// TestReloadTornTailQuiet checks that a hosts.deny whose last line has no
// newline is adopted, with libwrap's meaning (the unterminated line is an
// error and denies), once it has been quiet for TornSettleTime, and not
// before.
func TestReloadTornTailQuiet(t *testing.T) {
	requireEngine(t)
	dir := t.TempDir()
	allow, deny := filepath.Join(dir, "hosts.allow"), writeFile(t, dir, "hosts.deny", "ALL: 10.0.0.1\n")
	log := &logBuffer{}
	r := newReloadable(allow, deny, newLogger(log))
	written := time.Now()
	writeFile(t, dir, "hosts.deny", "ALL: 10.0.0.1\nALL: 10.0.0.2")
	r.Reload("test")
	// File times are those of a coarse clock, up to a tick behind.
	if took := time.Since(written); took < TornSettleTime-20*time.Millisecond {
		t.Errorf("torn hosts.deny adopted %v after it was written, want at least TornSettleTime (%v)", took, TornSettleTime)
	}
	if r.Generation() != 2 || count(log.String(), "missing newline", "level=ERROR") != 1 {
		t.Fatalf("generation %d, want the torn file adopted with its diagnostic:\n%s", r.Generation(), log)
	}
	if count(log.String(), "does not end in a newline", "quiet for TornSettleTime") != 1 {
		t.Errorf("adoption of a torn file not logged:\n%s", log)
	}
}

// TestReloadFutureTimes checks that a file time in the future (touch -d,
// or the clock set back) does not stall a reload: the reload watches the
// files for SettleTime instead.
func TestReloadFutureTimes(t *testing.T) {
	dir := t.TempDir()
	allow, deny := filepath.Join(dir, "hosts.allow"), writeFile(t, dir, "hosts.deny", "ALL: 10.0.0.1\n")
	r := newReloadable(allow, deny, nil)
	writeFile(t, dir, "hosts.deny", "ALL: 10.0.0.1\nALL: 10.0.0.2\n")
	future := time.Now().Add(time.Hour)
	if err := os.Chtimes(deny, future, future); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { r.Reload("test"); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Reload still waiting 30 s after a file got an mtime one hour ahead")
	}
	if _, n := r.Policy().Rules(); n != 2 {
		t.Errorf("%d deny rules, want 2", n)
	}
}

// TestReloadNeverQuiet rewrites hosts.deny without pause: the daemon must
// keep the previous rules, say every SettleWarnInterval that it is
// waiting, and still stop at once when told to.
func TestReloadNeverQuiet(t *testing.T) {
	requireEngine(t)
	d := startSettleDaemon(t, "ALL: 127.0.0.2\n")
	p := d.probe(t, "127.0.0.2")
	stop := make(chan struct{})
	writerDone := make(chan struct{})
	// stalls are the times between two writes that were long enough for
	// the file to look finished (SettleTime): a machine starved of CPU
	// can stop the whole test process, writer included, for that long,
	// and the reload cannot tell such a stall from a finished file. Only
	// then may the file (complete, with no rules) be adopted.
	var stalls []span
	go func() {
		defer close(writerDone)
		last := time.Now()
		for k := 0; ; k++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			now := time.Now()
			if now.Sub(last) >= SettleTime-50*time.Millisecond {
				stalls = append(stalls, span{last, now})
			}
			os.WriteFile(d.deny, []byte(fmt.Sprintf("# %d\n", k)), 0o644) // no rules at all
			last = time.Now()
		}
	}()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-writerDone
	}()
	deadline := time.Now().Add(SettleWarnInterval + 20*time.Second)
	for count(d.log.String(), "level=WARN", "still being written, keeping the previous rules", d.deny) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no warning within %v", SettleWarnInterval+20*time.Second)
		}
		time.Sleep(20 * time.Millisecond)
	}
	results := p.stop()
	close(stop)
	<-writerDone
	_, excused := d.judge(t, results, "0\n", stalls, 0)
	if n := count(d.log.String(), `msg="rules loaded"`); n > 1+len(stalls) {
		t.Errorf("%d loads, want only the initial one and at most one per writer stall (%d)", n, len(stalls))
	}
	t.Logf("%d checks, refused while hosts.deny was rewritten every 20 ms; %d writer stalls of SettleTime, %d checks after one granted", len(results), len(stalls), excused)
	// Run stops at once although a reload is waiting.
	stopped := time.Now()
	d.stop()
	if took := time.Since(stopped); took > 5*time.Second {
		t.Errorf("Run took %v to stop", took)
	}
	if count(d.log.String(), "reload abandoned") != 1 {
		t.Errorf("abandoned reload not logged:\n%s", d.log)
	}
}

// span is an interval of wall-clock time.
type span struct{ begin, end time.Time }

func write(t *testing.T, f *os.File, s string) {
	t.Helper()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

// settleDaemon is the whole daemon (Run) on a socket in a temporary
// directory, polling its rule files every 10 ms.
type settleDaemon struct {
	sock, deny string
	log        *logBuffer
	stop       func() // stops Run and checks that it returns nil within 10 s
}

// startSettleDaemon starts Run with an empty hosts.allow and the given
// hosts.deny, and stops it at the end of the test.
func startSettleDaemon(t *testing.T, deny string) *settleDaemon {
	t.Helper()
	dir := shortDir(t)
	d := &settleDaemon{sock: filepath.Join(dir, "access"), log: &logBuffer{}}
	allow := writeFile(t, dir, "hosts.allow", "")
	d.deny = writeFile(t, dir, "hosts.deny", deny)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Listen: d.sock, AllowFile: allow, DenyFile: d.deny,
			ReloadInterval: 10 * time.Millisecond, Env: testEnv(), Logger: newLogger(d.log)})
	}()
	d.stop = sync.OnceFunc(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return within 10 s after cancel")
		}
	})
	t.Cleanup(func() {
		d.stop()
		if t.Failed() {
			t.Logf("daemon log:\n%s", d.log)
		}
	})
	waitFor(t, "the access socket", func() bool {
		c, err := net.Dial("unix", d.sock)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return d
}

// waitLog waits up to 30 s for a log line containing every one of subs.
func (d *settleDaemon) waitLog(t *testing.T, what string, subs ...string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for count(d.log.String(), subs...) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no load of %s within 30 s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// probeResult is one access check made by a prober.
type probeResult struct {
	start, end time.Time
	reply      string
	err        error
}

// prober asks the daemon about one client address in a loop, as
// imap-login does, until stopped.
type prober struct {
	stopped atomic.Bool
	wg      sync.WaitGroup
	results []probeResult
}

// probe starts asking about clientIP every 2 ms; it makes one check
// before it returns.
func (d *settleDaemon) probe(t *testing.T, clientIP string) *prober {
	t.Helper()
	pair := dialLoopback(t, clientIP)
	f := fileOf(t, pair.accepted)
	t.Cleanup(func() { f.Close() })
	p := &prober{}
	ask := func() {
		start := time.Now()
		reply, err := askFD(d.sock, int(f.Fd()))
		p.results = append(p.results, probeResult{start, time.Now(), reply, err})
	}
	ask()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for !p.stopped.Load() {
			ask()
			time.Sleep(2 * time.Millisecond)
		}
	}()
	t.Cleanup(func() { p.stop() })
	return p
}

// stop ends the probing and returns every check made.
func (p *prober) stop() []probeResult {
	p.stopped.Store(true)
	p.wg.Wait()
	return p.results
}

// askFD makes one access check for imap with the client socket fd.
func askFD(sock string, fd int) (string, error) {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, _, err := c.WriteMsgUnix([]byte("imap\n"), syscall.UnixRights(fd), nil); err != nil {
		return "", err
	}
	b := make([]byte, 3)
	n, err := c.Read(b)
	if n > 0 {
		err = nil
	}
	return string(b[:n]), err
}

// judge checks that every result has the reply want. A different reply is
// excused if some span of the writer's that was at least excuse long began
// before the check ended: the file was then left alone long enough to be
// adopted. It returns the number of wrong and of excused replies.
func (d *settleDaemon) judge(t *testing.T, results []probeResult, want string, spans []span, excuse time.Duration) (bad, excused int) {
	t.Helper()
	for _, r := range results {
		if r.err != nil || r.reply == want {
			if r.err != nil {
				t.Errorf("check at %v: %v", r.start.Format(time.StampMicro), r.err)
			}
			continue
		}
		ok := false
		for _, s := range spans {
			if s.end.Sub(s.begin) >= excuse && s.begin.Before(r.end) {
				ok = true
			}
		}
		if ok {
			excused++
			continue
		}
		if bad++; bad <= 3 {
			t.Errorf("check [%v, %v]: reply %q, want %q: a half-written hosts.deny was adopted",
				r.start.Format(time.StampMicro), r.end.Format(time.StampMicro), r.reply, want)
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d checks answered from a half-written hosts.deny", bad, len(results))
	}
	return bad, excused
}
