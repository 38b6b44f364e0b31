package strmatch

import "testing"

func TestStringMatch(t *testing.T) {
	tests := []struct {
		pat, s string
		want   bool
	}{
		{"ALL", "anything", true},
		{"all", "x", true},
		{".example.com", "a.example.com", true},
		{".example.com", "example.com", false},
		{".1", "10.0.0.1", true},
		{"10.0.0.", "10.0.0.1", true},
		{"10.0.0.1.", "10.0.0.1", false},
		{"www.", "WWW.x.org", true},
		{"KNOWN", "unknown", false},
		{"KNOWN", "sshd", true},
		{"*.EXAMPLE.com", "a.example.COM", true},
		{".example.*", "good.example.com", false}, // a wildcard makes the whole token a glob
		{".example.*", ".example.com", true},
		{"s?hd", "sshd", true},
		{"s?hd", "shd", false},
		{"g[o]od", "g[o]od", true},
		{"[0:0::1]", "::1", true},
		{"[10.0.0.1]", "10.0.0.1", false},
		{"10.1.2.3", "::ffff:10.1.2.3", true},
		{"10.1.2.3", "::FFFF:10.1.2.3", true},
		{"[::ffff:10.1.2.3]", "::ffff:10.1.2.3", false},
		{"[fe80::1]", "fe80::1%lo", true},
		{"UNKNOWN", "unknown", true},
		{"sshd", "SSHD", true},
	}
	for _, tt := range tests {
		if got := Match(tt.pat, tt.s); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.pat, tt.s, got, tt.want)
		}
	}
}

// TestASCIIFolding: keywords and names compare like strcasecmp in the C
// locale, so the Kelvin sign (U+212A), which Unicode folds to "k", is not
// KNOWN's K.
func TestASCIIFolding(t *testing.T) {
	if Match("\u212ANOWN", "sshd") {
		t.Error(`"\u212ANOWN" treated as KNOWN`)
	}
	if !Match("known", "sshd") {
		t.Error(`"known" not treated as KNOWN`)
	}
}
