package filestamp

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestStampChanges: each kind of change gives a different stamp, and
// nothing else does.
func TestStampChanges(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	other := filepath.Join(dir, "g")
	write := func(p, s string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name   string
		change func()
	}{
		{"create", func() { write(path, "a\n") }},
		{"append", func() { write(path, "a\nb\n") }},
		{"chmod", func() { os.Chmod(path, 0o600) }},
		{"touch", func() { os.Chtimes(path, time.Now(), time.Unix(1, 0)) }},
		{"rename over", func() { write(other, "a\nb\n"); os.Rename(other, path) }},
		{"symlink", func() { write(other, "x\n"); os.Remove(path); os.Symlink(other, path) }},
		{"remove", func() { os.Remove(path) }},
	}
	before := Of(path)
	if before.Exists() {
		t.Fatal("Exists before create")
	}
	for _, tt := range tests {
		tt.change()
		after := Of(path)
		if after == before {
			t.Errorf("%s: stamp unchanged", tt.name)
		}
		if again := Of(path); again != after {
			t.Errorf("%s: stamp differs without a change", tt.name)
		}
		before = after
	}
}

// TestSet: Equal, Changed and Newest over several paths, one missing.
func TestSet(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "missing")
	if err := os.WriteFile(a, []byte("x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Unix(1_000_000, 0)
	os.Chtimes(a, old, old)
	s1 := OfAll([]string{a, b})
	if !s1.Equal(OfAll([]string{a, b})) || s1.Equal(OfAll([]string{a})) {
		t.Error("Equal")
	}
	if n := s1.Newest(); n.Before(time.Now().Add(-time.Hour)) {
		t.Errorf("Newest = %v: the missing file's directory changed just now", n)
	}
	os.WriteFile(b, nil, 0o644)
	if diff := cmp.Diff([]string{b}, s1.Changed(OfAll([]string{a, b}))); diff != "" {
		t.Errorf("Changed (-want +got):\n%s", diff)
	}
}
