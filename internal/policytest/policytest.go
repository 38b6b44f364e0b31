// Package policytest holds what the tests of tcpwrapd's policy front
// ends (pkg/dovecot/authpolicy, pkg/postfix/smtpdpolicy) share: rules
// compiled from texts, and a log sink.
package policytest

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"sync"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
)

// Compile returns a check over hosts.allow and hosts.deny texts, as
// tcpwrapd makes one: the compiled policy, options in dry-run mode. It is
// safe for concurrent use.
func Compile(allow, deny string) func(ctx context.Context, req *hostsrules.Request) hostsrules.Decision {
	p := hostsrules.Compile(
		hostsrules.Source{Name: "hosts.allow", Data: []byte(allow)},
		hostsrules.Source{Name: "hosts.deny", Data: []byte(deny)})
	return func(ctx context.Context, req *hostsrules.Request) hostsrules.Decision {
		return p.Check(ctx, req, nil)
	}
}

// LogBuffer is a log sink that is safe for concurrent use.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Logger returns a text logger at Debug level writing to w.
func Logger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
