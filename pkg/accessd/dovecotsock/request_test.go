package dovecotsock

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestDecodeRequest(t *testing.T) {
	tests := []struct {
		name    string
		msg     string
		want    string
		wantErr error
	}{
		{"imap", "imap\n", "imap", nil},
		{"pop3", "pop3\n", "pop3", nil},
		{"sieve", "sieve\n", "sieve", nil},
		{"imap-urlauth", "imap-urlauth\n", "imap-urlauth", nil},
		{"one char", "x\n", "x", nil},
		{"CR kept", "imap\r\n", "imap\r", nil},
		{"inner newline kept", "im\nap\n", "im\nap", nil},
		{"NUL cuts name", "im\x00ap\n", "im", nil},
		{"longest", strings.Repeat("a", 1022) + "\n", strings.Repeat("a", 1022), nil},
		{"empty", "", "", ErrRequestTooShort},
		{"newline only", "\n", "", ErrRequestTooShort},
		{"one byte", "i", "", ErrRequestTooShort},
		{"no newline", "imap", "", ErrNoNewline},
		{"first half of split write", "im", "", ErrNoNewline},
		{"trailing data", "imap\nextra", "", ErrNoNewline},
		{"1024 bytes", strings.Repeat("a", 1023) + "\n", "", ErrRequestTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeRequest([]byte(tt.msg))
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("DecodeRequest(%q) error = %v, want %v", tt.msg, err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("DecodeRequest(%q) = %q, want %q", tt.msg, got, tt.want)
			}
		})
	}
}

// FuzzDecodeRequest checks DecodeRequest against the rule of Dovecot's
// tcpwrap: valid iff 1 < len < 1024 and the last byte is '\n', the name
// being what precedes it, up to the first NUL.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{"imap\n", "\n", "", "imap", "imap\nextra", "im\x00ap\n", "imap\r\n",
		strings.Repeat("a", 1023) + "\n", strings.Repeat("a", 1022) + "\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		name, err := DecodeRequest(msg)
		valid := len(msg) > 1 && len(msg) < MaxRequest && msg[len(msg)-1] == '\n'
		if valid != (err == nil) {
			t.Fatalf("DecodeRequest(%q): err = %v, valid = %v", msg, err, valid)
		}
		if err != nil {
			if name != "" {
				t.Fatalf("DecodeRequest(%q) = %q with error %v", msg, name, err)
			}
			if !errors.Is(err, ErrRequestTooShort) && !errors.Is(err, ErrRequestTooLong) && !errors.Is(err, ErrNoNewline) {
				t.Fatalf("DecodeRequest(%q): unexpected error %v", msg, err)
			}
			return
		}
		want := msg[:len(msg)-1]
		if i := bytes.IndexByte(want, 0); i >= 0 {
			want = want[:i]
		}
		if name != string(want) {
			t.Fatalf("DecodeRequest(%q) = %q, want %q", msg, name, want)
		}
	})
}
