package dovecotlab

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"
)

// Log returns the whole Dovecot log so far ("" if it does not exist yet).
func (d *Dovecot) Log() string {
	b, _ := os.ReadFile(d.LogPath)
	return string(b)
}

// LogMark returns the current length of the log in bytes, to be passed to
// [Dovecot.LogSince] or [Dovecot.WaitLog] to look only at newer lines.
func (d *Dovecot) LogMark() int64 {
	st, err := os.Stat(d.LogPath)
	if err != nil {
		return 0
	}
	return st.Size()
}

// LogSince returns the log text written after mark (a [Dovecot.LogMark]
// result).
func (d *Dovecot) LogSince(mark int64) string {
	s := d.Log()
	if mark > int64(len(s)) {
		return ""
	}
	return s[mark:]
}

// WaitLog polls the log until a complete line written after mark
// contains substr, and returns that line (without its newline). It
// returns an error when ctx is done first; the error quotes the new log
// text.
func (d *Dovecot) WaitLog(ctx context.Context, mark int64, substr string) (string, error) {
	for {
		text := d.LogSince(mark)
		if i := strings.LastIndexByte(text, '\n'); i >= 0 {
			for _, line := range strings.Split(text[:i], "\n") {
				if strings.Contains(line, substr) {
					return line, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("no log line containing %q: %w; log since mark:\n%s", substr, ctx.Err(), text)
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// RefusedLine returns the exact Info line a login process logs when
// access socket entry refuses a client from ip (docs/dovecot-managed.md, "The login access-check protocol"), without the
// timestamp: e.g. `imap-login: Info: access(tcpwrapd/access): Client
// refused (rip=127.0.0.2)`.
func RefusedLine(proto, entry, ip string) string {
	return fmt.Sprintf("%s: Info: access(%s): Client refused (rip=%s)", loginServices[proto][0], entry, ip)
}
