package accessd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcpwrapd/tcpwrapd/internal/filestamp"
	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
)

// TestRulesChanged checks change detection for each way a rule file can
// change, and that Reload swaps in a new policy while the old one stays
// usable.
func TestRulesChanged(t *testing.T) {
	tests := []struct {
		name   string
		change func(t *testing.T, path string)
	}{
		{"rewrite", func(t *testing.T, p string) { os.WriteFile(p, []byte("ALL: 127.0.0.3\n"), 0o644) }},
		{"append", func(t *testing.T, p string) {
			f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteString("ALL: 127.0.0.4\n")
			f.Close()
		}},
		{"atomic rename, same size and mtime", func(t *testing.T, p string) {
			st, _ := os.Stat(p)
			tmp := p + ".new"
			os.WriteFile(tmp, []byte("ALL: 127.0.0.9\n"), 0o644) // same length
			os.Chtimes(tmp, st.ModTime(), st.ModTime())
			if err := os.Rename(tmp, p); err != nil {
				t.Fatal(err)
			}
		}},
		{"chmod", func(t *testing.T, p string) { os.Chmod(p, 0o600) }},
		{"remove", func(t *testing.T, p string) { os.Remove(p) }},
		{"replace by directory", func(t *testing.T, p string) { os.Remove(p); os.Mkdir(p, 0o755) }},
		{"symlink retarget", func(t *testing.T, p string) {
			other := p + ".other"
			os.WriteFile(other, []byte("ALL: 127.0.0.2\n"), 0o644)
			os.Remove(p)
			os.Symlink(other, p)
		}},
	}
	for _, tt := range tests {
		for _, which := range []string{"allow", "deny"} {
			t.Run(tt.name+"/"+which, func(t *testing.T) {
				dir := t.TempDir()
				allow := writeFile(t, dir, "hosts.allow", "ALL: 127.0.0.2\n")
				deny := writeFile(t, dir, "hosts.deny", "ALL: 127.0.0.2\n")
				log := &logBuffer{}
				r := newReloadable(allow, deny, newLogger(log))
				old := r.Policy()
				if r.Changed() || r.ReloadIfChanged("changed") {
					t.Fatal("Changed before any change")
				}
				path := allow
				if which == "deny" {
					path = deny
				}
				tt.change(t, path)
				if !r.Changed() {
					t.Fatal("change not detected")
				}
				if !r.ReloadIfChanged("changed") {
					t.Fatal("ReloadIfChanged did not reload")
				}
				if r.Policy() == old || r.Generation() != 2 {
					t.Errorf("policy not swapped (generation %d)", r.Generation())
				}
				if r.Changed() {
					t.Error("Changed after reload")
				}
				// The old policy still answers.
				old.Check(context.Background(), &hostsrules.Request{Daemon: "imap"}, &hostsrules.Env{})
				if count(log.String(), `msg="rules loaded"`, "reason=changed", "generation=2") != 1 {
					t.Errorf("no reload log line:\n%s", log)
				}
			})
		}
	}
}

// TestRulesMissingFilesCreated checks that creating a missing table is
// seen, and that missing files are loaded (as empty) without error.
func TestRulesMissingFilesCreated(t *testing.T) {
	dir := t.TempDir()
	allow, deny := filepath.Join(dir, "hosts.allow"), filepath.Join(dir, "hosts.deny")
	r := newReloadable(allow, deny, nil)
	if r.Changed() {
		t.Fatal("Changed with both files missing")
	}
	writeFile(t, dir, "hosts.deny", "ALL: ALL\n")
	if !r.Changed() {
		t.Fatal("creation of hosts.deny not detected")
	}
}

// TestRulesDiagnosticsLogged checks that each diagnostic is logged with
// file and line, on every load.
func TestRulesDiagnosticsLogged(t *testing.T) {
	requireEngine(t)
	dir := t.TempDir()
	allow := writeFile(t, dir, "hosts.allow", "imap 127.0.0.1\n")
	deny := writeFile(t, dir, "hosts.deny", "")
	log := &logBuffer{}
	r := newReloadable(allow, deny, newLogger(log))
	if len(r.Policy().Diagnostics()) == 0 {
		t.Fatal("no diagnostics for a line without separator")
	}
	r.Reload("SIGHUP")
	want := "file=" + allow + " line=1"
	if n := count(log.String(), "level=WARN", allow+":1:", want); n != 2 {
		t.Errorf("%d diagnostic lines with %q, want 2 (one per load):\n%s", n, want, log)
	}
	if !strings.Contains(log.String(), "warnings=1") {
		t.Errorf("no warning count in reload line:\n%s", log)
	}
}

// TestRulesUnreadableDeny checks the log of an unreadable hosts.deny.
func TestRulesUnreadableDeny(t *testing.T) {
	requireEngine(t)
	if os.Geteuid() == 0 {
		// root reads any file; a directory stands in for a broken table.
		dir := t.TempDir()
		deny := filepath.Join(dir, "hosts.deny")
		os.Mkdir(deny, 0o755)
		log := &logBuffer{}
		newReloadable(filepath.Join(dir, "hosts.allow"), deny, newLogger(log))
		if count(log.String(), "is a directory", "file="+deny) != 1 {
			t.Errorf("directory table not logged:\n%s", log)
		}
		return
	}
	dir := t.TempDir()
	deny := writeFile(t, dir, "hosts.deny", "")
	os.Chmod(deny, 0)
	log := &logBuffer{}
	newReloadable(filepath.Join(dir, "hosts.allow"), deny, newLogger(log))
	if count(log.String(), "level=ERROR", "every check is denied", "file="+deny) != 1 {
		t.Errorf("unreadable hosts.deny not logged:\n%s", log)
	}
}

// TestRulesInFlightKeepsPolicy checks that a policy obtained before a reload
// keeps its answer after the swap.
func TestRulesInFlightKeepsPolicy(t *testing.T) {
	requireEngine(t)
	dir := t.TempDir()
	allow := writeFile(t, dir, "hosts.allow", "")
	deny := writeFile(t, dir, "hosts.deny", "ALL: ALL\n")
	r := newReloadable(allow, deny, nil)
	inflight := r.Policy()
	writeFile(t, dir, "hosts.deny", "")
	r.Reload("test")
	req := &hostsrules.Request{Daemon: "imap"}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if v := inflight.Check(ctx, req, &hostsrules.Env{}).Verdict; v != hostsrules.Denied {
		t.Errorf("old policy: %v, want denied", v)
	}
	if v := r.Policy().Check(ctx, req, &hostsrules.Env{}).Verdict; v != hostsrules.Granted {
		t.Errorf("new policy: %v, want granted", v)
	}
}

// TestRulesFileListChanged checks that a /file pattern list named by a rule
// is watched too.
func TestRulesFileListChanged(t *testing.T) {
	requireEngine(t)
	dir := t.TempDir()
	list := writeFile(t, dir, "clients", "127.0.0.2\n")
	allow := writeFile(t, dir, "hosts.allow", "")
	deny := writeFile(t, dir, "hosts.deny", "ALL: "+list+"\n")
	r := newReloadable(allow, deny, nil)
	found := false
	for _, f := range r.Policy().Files() {
		found = found || f.Path == list
	}
	if !found {
		t.Skipf("engine does not list %s in Files()", list)
	}
	if r.Changed() {
		t.Fatal("Changed before any change")
	}
	writeFile(t, dir, "clients", "127.0.0.3\n127.0.0.2\n")
	if !r.Changed() {
		t.Fatal("change of the /file list not detected")
	}
}

// TestReloadIfChangedStatsOnce counts the stats of a poll: one of every
// file to see that nothing changed; for a change, one to see it (the
// reload starts from it, with no second look), one per wait of the
// reload while the change is younger than SettleTime (it counts from
// when the poll saw it), and one after the read (the files did not
// change while they were read), each of every file once.
func TestReloadIfChangedStatsOnce(t *testing.T) {
	dir := t.TempDir()
	allow := writeFile(t, dir, "hosts.allow", "")
	deny := writeFile(t, dir, "hosts.deny", "ALL: 10.0.0.1\n")
	rl, err := NewReloader(context.Background(), ReloaderConfig{AllowFile: allow, DenyFile: deny})
	if err != nil {
		t.Fatal(err)
	}
	var stats []int
	statFiles = func(paths []string) filestamp.Set {
		stats = append(stats, len(paths))
		return filestamp.OfAll(paths)
	}
	t.Cleanup(func() { statFiles = filestamp.OfAll })
	if ok, _ := rl.ReloadIfChanged(context.Background(), "changed"); ok {
		t.Fatal("reloaded without a change")
	}
	if diff := cmp.Diff([]int{2}, stats); diff != "" {
		t.Errorf("stats of an idle poll (-want +got):\n%s", diff)
	}
	writeFile(t, dir, "hosts.deny", "ALL: 10.0.0.2\n")
	stats = nil
	start := time.Now()
	if ok, _ := rl.ReloadIfChanged(context.Background(), "changed"); !ok {
		t.Fatal("change not reloaded")
	}
	// A wait is at most settlePoll; a busy machine makes it longer.
	most := 2 + int(time.Since(start)/settlePoll) + 1
	if len(stats) < 3 || len(stats) > most || slices.ContainsFunc(stats, func(n int) bool { return n != 2 }) {
		t.Errorf("stats of a poll that reloads: %v, want 3 to %d stats of both files", stats, most)
	}
}

// TestReloadChangeWithOldTimes rewrites hosts.deny while its time stamps
// look older than SettleTime, as they do when a kernel's coarse clock
// lags behind a virtual CPU its host stalled, or when a tool sets the
// times back: the stamps of files written before the test stand in for
// hosts.deny's, one per version of it. A poll that sees the change must
// count it as made after the poll before, and adopt the file only once
// that is SettleTime ago, never at once from the old times.
func TestReloadChangeWithOldTimes(t *testing.T) {
	dir := t.TempDir()
	allow := writeFile(t, dir, "hosts.allow", "")
	deny := writeFile(t, dir, "hosts.deny", "ALL: 10.0.0.1\n")
	shadows := []string{writeFile(t, dir, "old-1", "1"), writeFile(t, dir, "old-2", "22")}
	time.Sleep(2 * SettleTime) // until the shadows' times are old
	var last filestamp.Stamp
	version := -1
	statFiles = func(paths []string) filestamp.Set {
		s := filestamp.OfAll(paths)
		if st := s[deny]; st != last {
			last, version = st, version+1
		}
		s[deny] = filestamp.Of(shadows[version])
		return s
	}
	t.Cleanup(func() { statFiles = filestamp.OfAll })
	rl, err := NewReloader(context.Background(), ReloaderConfig{AllowFile: allow, DenyFile: deny})
	if err != nil {
		t.Fatal(err)
	}
	looked := time.Now()
	if ok, _ := rl.ReloadIfChanged(context.Background(), "changed"); ok {
		t.Fatal("reloaded without a change")
	}
	writeFile(t, dir, "hosts.deny", "# no rules\n")
	if ok, _ := rl.ReloadIfChanged(context.Background(), "changed"); !ok {
		t.Fatal("change not reloaded")
	}
	if took := time.Since(looked); took < SettleTime {
		t.Errorf("adopted a change %v after the poll that saw the file before it, want at least SettleTime (%v)", took, SettleTime)
	}
	if _, n := rl.Rules().Policy().Rules(); n != 0 {
		t.Errorf("adopted hosts.deny with %d rules, want the new file's 0", n)
	}
}

// TestQuietFor covers the quiet time at now of files whose stamps were
// seen first at seenAt, seen made (made) or only found.
func TestQuietFor(t *testing.T) {
	f := writeFile(t, t.TempDir(), "f", "x")
	stamps := filestamp.OfAll([]string{f})
	newest := stamps.Newest()
	later := newest.Add(10 * time.Second)
	for _, tc := range []struct {
		name        string
		seenAt, now time.Time
		made        bool
		want        time.Duration
	}{
		{"found, old times", later, later, false, 10 * time.Second},
		{"seen made, old times", later.Add(-time.Second), later, true, time.Second},
		{"seen unchanged for longer than the times say", newest.Add(-time.Second), later, false, 11 * time.Second},
		{"times in the future count as now", newest.Add(-time.Second), newest.Add(-time.Second), false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := quietFor(stamps, tc.seenAt, tc.made, tc.now); got != tc.want {
				t.Errorf("quietFor = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestReloadSeesWritesTheStampsMiss rewrites hosts.deny every 20 ms while
// its stamps stand still after the first change, as they do when the
// kernel's coarse clock stalls and each version has the same size: the
// stamps of two files written before the test stand in for hosts.deny's.
// The reload must see the writes (inotify) and adopt only the last
// version, once it has been left alone for SettleTime; never one in the
// middle of the writing, unless the writer itself stalled that long.
func TestReloadSeesWritesTheStampsMiss(t *testing.T) {
	dir := t.TempDir()
	allow := writeFile(t, dir, "hosts.allow", "")
	deny := writeFile(t, dir, "hosts.deny", "ALL: 10.0.0.1\n")
	shadows := []string{writeFile(t, dir, "old-1", "1"), writeFile(t, dir, "old-2", "22")}
	var (
		mu      sync.Mutex
		last    filestamp.Stamp
		changes int
	)
	statFiles = func(paths []string) filestamp.Set {
		s := filestamp.OfAll(paths)
		mu.Lock()
		defer mu.Unlock()
		if st := s[deny]; st != last {
			last, changes = st, changes+1
		}
		s[deny] = filestamp.Of(shadows[min(changes, 2)-1]) // frozen after the first change
		return s
	}
	t.Cleanup(func() { statFiles = filestamp.OfAll })
	rl, err := NewReloader(context.Background(), ReloaderConfig{AllowFile: allow, DenyFile: deny})
	if err != nil {
		t.Fatal(err)
	}
	const versions = 40
	first := make(chan struct{})
	stalled := make(chan bool, 1)
	go func() {
		stall := false
		prev := time.Now()
		for k := range versions {
			text := fmt.Sprintf("# version %02d\n", k) // no rules, all the same size
			if k == versions-1 {
				text = "ALL: 10.0.0.2\n" // the last one: one rule
			}
			if err := os.WriteFile(deny, []byte(text), 0o644); err != nil {
				t.Error(err)
			}
			if k == 0 {
				close(first)
			}
			now := time.Now()
			stall = stall || now.Sub(prev) >= SettleTime-50*time.Millisecond
			prev = now
			time.Sleep(20 * time.Millisecond)
		}
		stalled <- stall
	}()
	<-first
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if ok, err := rl.ReloadIfChanged(ctx, "changed"); !ok || err != nil {
		t.Fatalf("change not reloaded: %v", err)
	}
	if stall := <-stalled; stall {
		t.Log("the writer stalled for SettleTime: the reload may have adopted a version in the middle")
		return
	}
	if _, n := rl.Rules().Policy().Rules(); n != 1 {
		t.Errorf("adopted a hosts.deny with %d rules in the middle of the writing, want the last version's 1", n)
	}
}
