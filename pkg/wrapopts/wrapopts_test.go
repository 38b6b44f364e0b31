package wrapopts

import (
	"errors"
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
