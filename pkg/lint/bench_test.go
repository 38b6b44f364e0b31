package lint

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// blocklist returns n "ALL: a.b.c.d" lines with distinct addresses, as
// fail2ban and DenyHosts write them.
func blocklist(n int) string {
	var b strings.Builder
	for i := range n {
		v := uint32(0x0a000000 + i + 1)
		fmt.Fprintf(&b, "ALL: %d.%d.%d.%d\n", v>>24, v>>16&0xff, v>>8&0xff, v&0xff)
	}
	return b.String()
}

func benchLint(b *testing.B, n int) {
	p := filepath.Join(b.TempDir(), "hosts.deny")
	if err := os.WriteFile(p, []byte(blocklist(n)), 0o644); err != nil {
		b.Fatal(err)
	}
	tables := []Table{{Path: p, Role: RoleDeny, Explicit: true}}
	b.ReportAllocs()
	for b.Loop() {
		rep := Lint(context.Background(), tables, Options{})
		if len(rep.Diagnostics) != 0 {
			b.Fatalf("diagnostics: %v", rep.Diagnostics[:1])
		}
	}
}

// BenchmarkLint100k lints a 100,000-line blocklist (--no-resolve).
func BenchmarkLint100k(b *testing.B) { benchLint(b, 100_000) }
