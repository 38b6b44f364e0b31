package service

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Dovecot log-pipe type bytes (src/lib/failures.c: log type + 1).
const (
	logDebug = 1 + iota
	logInfo
	logWarning
	logError
	logFatal
	logPanic
)

// LogHandler is a slog.Handler that writes the format a Dovecot
// master expects on a service's fd 2 when LOG_SERVICE=1 (docs/dovecot-managed.md):
// one line per record, "\x01" + type byte + pid + " " + text + "\n",
// where the type byte is 1 for Debug, 2 Info, 3 Warning and 4 Error (and
// higher slog levels). The master prefixes the text with the service
// name and level, so a record appears in Dovecot's log as
//
//	tcpwrap: Info: access refused: daemon=imap client_addr=127.0.0.2 ...
//
// The text is the message followed by ": " and the attributes as
// key=value pairs (groups joined with "."; values quoted with
// strconv.Quote when they contain spaces, quotes, '=' or control
// characters), so it never contains a newline. There is no time stamp:
// Dovecot adds its own. Each record is one Write, so lines from
// concurrent goroutines never interleave (a pipe write of up to 4096
// bytes is atomic).
//
// It is safe for concurrent use.
type LogHandler struct {
	w     io.Writer
	mu    *sync.Mutex
	level slog.Leveler
	pid   string
	attrs string // preformatted " k=v" pairs from WithAttrs
	group string // "a.b." prefix from WithGroup
}

// NewLogHandler returns a handler writing to w (os.Stderr for a
// Dovecot service) records at or above level (nil means Info), with this
// process's pid.
func NewLogHandler(w io.Writer, level slog.Leveler) *LogHandler {
	if level == nil {
		level = slog.LevelInfo
	}
	return &LogHandler{w: w, mu: new(sync.Mutex), level: level, pid: strconv.Itoa(os.Getpid())}
}

// Enabled reports whether level is at or above the handler's level.
func (h *LogHandler) Enabled(_ context.Context, level slog.Level) bool {
	return level >= h.level.Level()
}

// logType maps a slog level to the log-pipe type byte.
func logType(l slog.Level) byte {
	switch {
	case l < slog.LevelInfo:
		return logDebug
	case l < slog.LevelWarn:
		return logInfo
	case l < slog.LevelError:
		return logWarning
	}
	return logError
}

// Handle writes one record.
func (h *LogHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteByte(1)
	b.WriteByte(logType(r.Level))
	b.WriteString(h.pid)
	b.WriteByte(' ')
	b.WriteString(oneLine(r.Message))
	var attrs strings.Builder
	attrs.WriteString(h.attrs)
	r.Attrs(func(a slog.Attr) bool {
		appendAttr(&attrs, h.group, a)
		return true
	})
	if attrs.Len() > 0 {
		b.WriteByte(':')
		b.WriteString(attrs.String())
	}
	b.WriteByte('\n')
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := io.WriteString(h.w, b.String())
	return err
}

// WithAttrs returns a handler that adds attrs to every record.
func (h *LogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	h2 := *h
	var b strings.Builder
	b.WriteString(h.attrs)
	for _, a := range attrs {
		appendAttr(&b, h.group, a)
	}
	h2.attrs = b.String()
	return &h2
}

// WithGroup returns a handler that qualifies later attribute keys with
// name.
func (h *LogHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.group = h.group + name + "."
	return &h2
}

// appendAttr writes " key=value" for a (recursively for groups).
func appendAttr(b *strings.Builder, prefix string, a slog.Attr) {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return
	}
	if a.Value.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += a.Key + "."
		}
		for _, g := range a.Value.Group() {
			appendAttr(b, p, g)
		}
		return
	}
	b.WriteByte(' ')
	b.WriteString(quoteIfNeeded(prefix + a.Key))
	b.WriteByte('=')
	var v string
	switch a.Value.Kind() {
	case slog.KindDuration:
		v = a.Value.Duration().String()
	case slog.KindTime:
		v = a.Value.Time().Format(time.RFC3339Nano)
	default:
		v = fmt.Sprint(a.Value.Any())
	}
	b.WriteString(quoteIfNeeded(v))
}

// quoteIfNeeded quotes s when it is empty or holds characters that would
// make key=value pairs ambiguous or break the line.
func quoteIfNeeded(s string) string {
	if s == "" {
		return `""`
	}
	for _, r := range s {
		if r <= ' ' || r == '=' || r == '"' || r == '\\' || r == 0x7f || r == utf8.RuneError {
			return strconv.Quote(s)
		}
	}
	return s
}

// oneLine replaces line breaks in a message so one record stays one line.
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n\x00") {
		return s
	}
	return strings.NewReplacer("\r", `\r`, "\n", `\n`, "\x00", `\0`).Replace(s)
}

// Fatal writes msg to w as one Fatal line of the log-pipe format,
// for errors that end the process in Dovecot-managed mode.
func Fatal(w io.Writer, msg string) {
	fmt.Fprintf(w, "\x01%c%d %s\n", logFatal, os.Getpid(), oneLine(msg))
}
