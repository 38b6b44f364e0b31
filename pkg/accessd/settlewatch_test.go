package accessd

import (
	"os"
	"path/filepath"
	"testing"
)

// TestWriteWatch: which changes a reload's writeWatch counts. A file
// replaced by a rename (an editor's save) or created after the watch
// began is watched from then on, so a later in-place write to it counts;
// a name in another watched directory does not.
func TestWriteWatch(t *testing.T) {
	tests := []struct {
		name string
		// do changes the files after the watch began and drained;
		// then changed() must report want.
		do   func(t *testing.T, w *writeWatch, dirA, dirB string)
		want bool
	}{
		{"in-place write", func(t *testing.T, w *writeWatch, a, _ string) {
			appendFile(t, filepath.Join(a, "hosts.deny"), "x")
		}, true},
		{"write after a rename over it", func(t *testing.T, w *writeWatch, a, _ string) {
			p := renameOver(t, a, "hosts.deny", "ALL: 10.0.0.2\n")
			drain(t, w, p)
			appendFile(t, p, "x")
		}, true},
		{"write after the file was created", func(t *testing.T, w *writeWatch, _, b string) {
			p := writeFile(t, b, "missing", "")
			drain(t, w, p)
			appendFile(t, p, "x")
		}, true},
		{"write after the target of a symlink was replaced", func(t *testing.T, w *writeWatch, _, b string) {
			target := writeFile(t, b, "target", "ALL: 10.0.0.3\n")
			link := filepath.Join(b, "link")
			if err := os.Symlink(target, link); err != nil {
				t.Fatal(err)
			}
			w.add([]string{link})
			drain(t, w, link) // its creation
			renameOver(t, b, "target", "ALL: 10.0.0.4\n")
			drain(t, w, target)
			appendFile(t, target, "x")
		}, true},
		{"a watched name in another directory", func(t *testing.T, w *writeWatch, _, b string) {
			writeFile(t, b, "hosts.deny", "")
		}, false},
		{"another name", func(t *testing.T, w *writeWatch, a, _ string) {
			writeFile(t, a, "other", "")
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := t.TempDir(), t.TempDir()
			paths := []string{writeFile(t, a, "hosts.deny", "ALL: 10.0.0.1\n"), filepath.Join(b, "missing")}
			w := watchWrites(paths)
			if w == nil {
				t.Fatal("no inotify")
			}
			defer w.close()
			tt.do(t, w, a, b)
			if got := w.changed(); got != tt.want {
				t.Errorf("changed() = %v, want %v", got, tt.want)
			}
		})
	}
}

// drain reads the events queued so far, as a settle look does, and
// fails unless they count as a change (of p).
func drain(t *testing.T, w *writeWatch, p string) {
	t.Helper()
	if !w.changed() {
		t.Fatalf("%s: no change seen", p)
	}
}

func appendFile(t *testing.T, p, s string) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

// renameOver replaces dir/name with a new file of data, as an editor
// saves (a temporary file renamed over it), and returns its path.
func renameOver(t *testing.T, dir, name, data string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.Rename(writeFile(t, dir, name+".tmp", data), p); err != nil {
		t.Fatal(err)
	}
	return p
}

// inotifyFDs counts the process's inotify descriptors.
func inotifyFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if l, _ := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); l == "anon_inode:inotify" {
			n++
		}
	}
	return n
}

// TestSettleClosesItsWatch: a reload's inotify descriptor is closed
// when the reload adopts the files and when it is abandoned (Run
// stopped while the files are not quiet).
func TestSettleClosesItsWatch(t *testing.T) {
	before := inotifyFDs(t)
	d := startSettleDaemon(t, "ALL: 10.0.0.1\n")
	// A torn file: the reload waits TornSettleTime for it, watching.
	if err := os.WriteFile(d.deny, []byte("ALL: 10.0.0.2"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the reload's watch", func() bool { return inotifyFDs(t) == before+1 })
	// Completed: adopted after TornSettleTime, the watch closed.
	waitFor(t, "the torn file adopted", func() bool { return count(d.log.String(), "adopting it") == 1 })
	waitFor(t, "the watch closed", func() bool { return inotifyFDs(t) == before })
	// Abandoned: Run stopped while a reload waits.
	if err := os.WriteFile(d.deny, []byte("ALL: 10.0.0.3"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the next reload's watch", func() bool { return inotifyFDs(t) == before+1 })
	d.stop()
	if got := inotifyFDs(t); got != before {
		t.Errorf("%d inotify descriptors after Run returned, want %d", got, before)
	}
}
