package wrapopts

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckPlainName: the names a request may carry into a path.
func TestCheckPlainName(t *testing.T) {
	for _, tt := range []struct {
		name string
		ok   bool
	}{
		{"imap", true}, {"pop3", true}, {"imap-urlauth", true}, {"x.y", true}, {"...", true},
		{"..a", true}, {"a b", true}, {"\u00e9", true},
		{"", false}, {".", false}, {"..", false}, {"/", false}, {"a/b", false}, {"../x", false},
		{"/etc/passwd", false}, {"imap\x00", false}, {"imap\r", false}, {"imap\n", false},
		{"\t", false}, {"a\x7f", false},
	} {
		err := CheckPlainName(tt.name)
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrNotPlainName)) {
			t.Errorf("CheckPlainName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

// FuzzCheckPlainName: a name CheckPlainName accepts names exactly one
// entry directly inside any directory, and carries no control character.
func FuzzCheckPlainName(f *testing.F) {
	for _, s := range []string{"imap", "../../etc/shadow", "..", ".", "", "a/b", "imap\x00x", "imap\r", "...", "\u00e9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if CheckPlainName(name) != nil {
			return
		}
		const dir = "/banners"
		if p := filepath.Join(dir, name); filepath.Dir(p) != dir || filepath.Base(p) != name {
			t.Fatalf("CheckPlainName(%q) = nil, but it names %q", name, p)
		}
		if strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			t.Fatalf("CheckPlainName(%q) = nil with a control character", name)
		}
	})
}
