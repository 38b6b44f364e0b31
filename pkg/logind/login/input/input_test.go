package input

import (
	"errors"
	"strings"
	"testing"
)

// TestInputAuthLine checks Dovecot's LOGIN_MAX_AUTH_BUF_SIZE rule: a SASL
// response of 8192 bytes (its CR counted) is read whole, one byte more is
// ErrAuthTooLarge; CRLF and bare LF end it, the rest stays buffered.
func TestInputAuthLine(t *testing.T) {
	long := strings.Repeat("A", MaxAuthLine)
	tests := []struct {
		name, in, want, rest string
		err                  error
	}{
		{"crlf", "abc\r\nNEXT\r\n", "abc", "NEXT\r\n", nil},
		{"lf", "abc\nNEXT\r\n", "abc", "NEXT\r\n", nil},
		{"empty", "\r\n", "", "", nil},
		{"8192 bytes", long + "\n", long, "", nil},
		{"8191 bytes and CR", long[1:] + "\r\n", long[1:], "", nil},
		{"8192 bytes and CR", long + "\r\n", "", "", ErrAuthTooLarge},
		{"8193 bytes", long + "A\n", "", "", ErrAuthTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := New(strings.NewReader(tt.in), nil)
			got, err := in.AuthLine()
			if !errors.Is(err, tt.err) || got != tt.want {
				t.Fatalf("AuthLine = %d bytes, %v; want %d bytes, %v", len(got), err, len(tt.want), tt.err)
			}
			if err == nil && string(in.Data()) != tt.rest {
				t.Errorf("left %q, want %q", in.Data(), tt.rest)
			}
		})
	}
}
