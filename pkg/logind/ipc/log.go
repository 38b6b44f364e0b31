package ipc

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// logDelay bounds how long an INFO line waits; maxLogBatch is the
// largest batch in bytes (one atomic pipe write).
const (
	logDelay    = 20 * time.Millisecond
	maxLogBatch = 4096
)

// LineLog writes "LEVEL text" lines to W, as a login process logs
// (LEVEL is DEBUG, INFO, WARN or ERROR; the supervisor logs each at that
// level, see ParseLine), batching INFO lines for up to logDelay. It is safe
// for concurrent use.
type LineLog struct {
	W     io.Writer // stderr
	mu    sync.Mutex
	buf   []byte
	armed bool // a flush is scheduled
}

// Add writes the line "level text" (INFO lines batched).
func (l *LineLog) Add(level, text string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(append(append(append(l.buf, level...), ' '), text...), '\n')
	switch {
	case level != "INFO" || len(l.buf) >= maxLogBatch:
		l.flushLocked()
	case !l.armed:
		l.armed = true
		time.AfterFunc(logDelay, l.Flush)
	}
}

// Flush writes the batched lines.
func (l *LineLog) Flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.flushLocked()
}

func (l *LineLog) flushLocked() {
	l.armed = false
	if len(l.buf) > 0 {
		l.W.Write(l.buf)
		l.buf = l.buf[:0]
	}
}

// ParseLine splits a login process's stderr line "LEVEL text" into its
// level and text; ok is false for any other line (a Go panic, say).
func ParseLine(line string) (level slog.Level, text string, ok bool) {
	lvl, msg, found := strings.Cut(line, " ")
	if !found {
		return slog.LevelError, line, false
	}
	switch lvl {
	case "DEBUG":
		return slog.LevelDebug, msg, true
	case "INFO":
		return slog.LevelInfo, msg, true
	case "WARN":
		return slog.LevelWarn, msg, true
	case "ERROR":
		return slog.LevelError, msg, true
	}
	return slog.LevelError, line, false
}

// Handler returns a slog.Handler that writes records of level INFO and
// above to l as "LEVEL prefix message key=value ..." lines (a library's
// log, such as authclient's, in a login process).
func (l *LineLog) Handler(prefix string) slog.Handler { return &lineHandler{l: l, prefix: prefix} }

type lineHandler struct {
	l      *LineLog
	prefix string
	attrs  []slog.Attr
}

func (h *lineHandler) Enabled(_ context.Context, lv slog.Level) bool { return lv >= slog.LevelInfo }

func (h *lineHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(h.prefix + r.Message)
	add := func(a slog.Attr) bool {
		b.WriteString(" " + a.Key + "=" + a.Value.String())
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	level := "INFO"
	switch {
	case r.Level >= slog.LevelError:
		level = "ERROR"
	case r.Level >= slog.LevelWarn:
		level = "WARN"
	}
	h.l.Add(level, b.String())
	return nil
}

func (h *lineHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &lineHandler{h.l, h.prefix, append(append([]slog.Attr(nil), h.attrs...), as...)}
}

func (h *lineHandler) WithGroup(string) slog.Handler { return h }
