package worker

import (
	"context"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/config"
)

// With login_log_path set, every line a login process logs is written
// as Dovecot 2.3 writes its login processes' lines to syslog (its
// log_path = syslog, failures.c's syslog handler), so that the tools
// that read Dovecot's log (fail2ban's filter.d/dovecot.conf, CrowdSec's
// Dovecot parser) read loginsvc's unchanged:
//
//	<PRI>Dec  7 13:48:18 dovecot: imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<alice>, method=PLAIN, rip=192.0.2.1, lip=192.0.2.25, session=<...>
//
// one datagram per line, as glibc's syslog(3) formats it for a process
// that called openlog(instance_name, LOG_NDELAY, syslog_facility) (no
// pid: Dovecot does not ask for LOG_PID); the message is the service
// name, ": ", and for other levels than info "Warning: ", "Error: " or
// "Debug: " (Dovecot's prefixes), then the line. PRI is the facility
// and the level (info, warning, err, debug). Debug lines are not
// written (Dovecot's login processes log none unless asked to). The
// relay's own lines about the process (crash output, lines suppressed)
// go the same way, as Dovecot's log process writes what a login process
// left on its stderr, with their attributes as " key=value".

// DefaultSyslogSocket is where "login_log_path = syslog" sends the
// lines: the system logger's socket, as syslog(3) uses it.
const DefaultSyslogSocket = "/dev/log"

// dovecotSyslog sends syslog datagrams to one socket, reconnecting after
// a failed write (the logger restarted). Safe for concurrent use.
type dovecotSyslog struct {
	path     string
	ident    string
	facility int
	mu       sync.Mutex
	c        net.Conn
}

// send writes msg at level (a syslog severity); errors drop the line
// (a logger that is down must not block a login process's relay).
func (w *dovecotSyslog) send(severity int, msg string) {
	b := make([]byte, 0, 64+len(w.ident)+len(msg))
	b = append(b, '<')
	b = strconv.AppendInt(b, int64(w.facility|severity), 10)
	b = append(b, '>')
	b = time.Now().AppendFormat(b, time.Stamp)
	b = append(append(append(append(b, ' '), w.ident...), ": "...), msg...)
	w.mu.Lock()
	defer w.mu.Unlock()
	for try := 0; try < 2; try++ {
		if w.c == nil {
			c, err := net.Dial("unixgram", w.path)
			if err != nil {
				return
			}
			w.c = c
		}
		w.c.SetWriteDeadline(time.Now().Add(time.Second))
		if _, err := w.c.Write(b); err == nil {
			return
		}
		w.c.Close()
		w.c = nil
	}
}

// dovecotLogs are the writers by (path, ident, facility): processes of
// the generation before a reload keep theirs, so one is never closed
// (there are as many as the distinct settings the supervisor has run
// with).
var dovecotLogs sync.Map

// dovecotLog is the writer for cfg's login_log_path, nil when it is not
// set.
func dovecotLog(cfg *config.Config) *dovecotSyslog {
	if cfg == nil || cfg.LoginLogPath == "" {
		return nil
	}
	path := cfg.LoginLogPath
	if path == "syslog" {
		path = DefaultSyslogSocket
	}
	key := path + "\x00" + cfg.InstanceName + "\x00" + strconv.Itoa(cfg.SyslogFacility)
	w, _ := dovecotLogs.LoadOrStore(key, &dovecotSyslog{path: path, ident: cfg.InstanceName, facility: cfg.SyslogFacility})
	return w.(*dovecotSyslog)
}

// dovecotHandler is a slog.Handler writing each record as the service's
// Dovecot syslog line (attributes are not written).
type dovecotHandler struct {
	w       *dovecotSyslog
	service string // "imap-login"
}

func (h dovecotHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (h dovecotHandler) Handle(_ context.Context, r slog.Record) error {
	severity, prefix := 6, "" // LOG_INFO
	switch {
	case r.Level >= slog.LevelError:
		severity, prefix = 3, "Error: " // LOG_ERR
	case r.Level >= slog.LevelWarn:
		severity, prefix = 4, "Warning: " // LOG_WARNING
	case r.Level < slog.LevelInfo:
		severity, prefix = 7, "Debug: " // LOG_DEBUG
	}
	msg := h.service + ": " + prefix + r.Message
	r.Attrs(func(a slog.Attr) bool { // the relay's own notices have some
		msg += " " + a.Key + "=" + a.Value.String()
		return true
	})
	h.w.send(severity, msg)
	return nil
}

func (h dovecotHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h dovecotHandler) WithGroup(string) slog.Handler      { return h }
