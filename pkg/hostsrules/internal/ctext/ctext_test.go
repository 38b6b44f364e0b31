package ctext

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSplitAt(t *testing.T) {
	tests := []struct {
		name, s       string
		from1         bool
		before, after string
		ok            bool
	}{
		{"plain", "a:b:c", false, "a", "b:c", true},
		{"bracketed", "[::1]:x", false, "[::1]", "x", true},
		{"none", "abc", false, "abc", "", false},
		{"leading at", "@group", true, "@group", "", false},
		{"user at host", "u@h@x", true, "u", "h@x", true},
		{"short", "@", true, "@", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			split := SplitAt
			if tt.from1 {
				split = SplitAtFrom1
			}
			delim := byte(':')
			if tt.from1 {
				delim = '@'
			}
			b, a, ok := split(tt.s, delim)
			if b != tt.before || a != tt.after || ok != tt.ok {
				t.Errorf("split(%q) = %q, %q, %v; want %q, %q, %v", tt.s, b, a, ok, tt.before, tt.after, tt.ok)
			}
		})
	}
}

func TestAppendList(t *testing.T) {
	got := AppendList([]string{"x"}, " a,b\t\tc\r\n,, d ")
	if diff := cmp.Diff([]string{"x", "a", "b", "c", "d"}, got); diff != "" {
		t.Errorf("AppendList (-want +got):\n%s", diff)
	}
}

func TestScan(t *testing.T) {
	for s, want := range map[string]int{"5": 5, " -3": -3, "+7": 7, "99999999999999": 1 << 30} {
		if got, ok := ScanInt(s); !ok || got != want {
			t.Errorf("ScanInt(%q) = %d, %v; want %d, true", s, got, ok, want)
		}
	}
	for _, s := range []string{"", "5x", "5 ", "-", "0x1"} {
		if _, ok := ScanInt(s); ok {
			t.Errorf("ScanInt(%q) ok", s)
		}
	}
	if got, ok := ScanOctal("027"); !ok || got != 0o27 {
		t.Errorf("ScanOctal(027) = %o, %v", got, ok)
	}
	if _, ok := ScanOctal("08"); ok {
		t.Error("ScanOctal(08) ok")
	}
}

func TestFold(t *testing.T) {
	if !EqualFold("KnOwN", "known") || EqualFold("\u212Anown", "known") || EqualFold("a", "ab") {
		t.Error("EqualFold is not strcasecmp in the C locale")
	}
	if got := Chop(" \t\v a b \f\r\n"); got != "a b" {
		t.Errorf("Chop = %q", got)
	}
}
