package authclient

import (
	"fmt"
	"log/slog"
)

// Secret is a password or a SASL response (base64 text as the client
// sent it). It never shows its value when logged or formatted: LogValue,
// String, GoString and every fmt verb give "REDACTED". Use [Secret.Reveal]
// where the value must go on the wire.
type Secret string

const redacted = "REDACTED"

// LogValue implements slog.LogValuer.
func (Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// String returns "REDACTED".
func (Secret) String() string { return redacted }

// GoString returns "REDACTED".
func (Secret) GoString() string { return redacted }

// Format writes "REDACTED" for every verb.
func (Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// Reveal returns the value.
func (s Secret) Reveal() string { return string(s) }
