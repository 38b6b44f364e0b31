package accessd

import (
	"os"
	"path/filepath"
	"strings"
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
	r := NewRules(allow, deny, nil)
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
