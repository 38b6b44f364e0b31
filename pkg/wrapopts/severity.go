package wrapopts

import (
	"log/slog"
	"strconv"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
)

// SlogLevel maps a syslog level (0 emerg … 7 debug, as in
// hostsrules.SyslogPriority.Level) to a slog level: debug → Debug,
// info → Info, notice → Info+2, warning → Warn, err → Error, and crit,
// alert, emerg above Error (Error+2, +4, +6). Out-of-range values give
// Info.
func SlogLevel(level int) slog.Level {
	switch level {
	case 0:
		return slog.LevelError + 6
	case 1:
		return slog.LevelError + 4
	case 2:
		return slog.LevelError + 2
	case 3:
		return slog.LevelError
	case 4:
		return slog.LevelWarn
	case 5:
		return slog.LevelInfo + 2
	case 7:
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

var (
	levelNames    = []string{"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"}
	facilityNames = map[int]string{
		0: "kern", 1: "user", 2: "mail", 3: "daemon", 4: "auth", 6: "lpr", 7: "news", 8: "uucp", 9: "cron",
		16: "local0", 17: "local1", 18: "local2", 19: "local3", 20: "local4", 21: "local5", 22: "local6", 23: "local7",
	}
)

// FormatPriority returns p as the severity option writes it: "level" or
// "facility.level" (e.g. "local0.notice"), with numbers for values that
// have no name.
func FormatPriority(p hostsrules.SyslogPriority) string {
	lvl := strconv.Itoa(p.Level)
	if p.Level >= 0 && p.Level < len(levelNames) {
		lvl = levelNames[p.Level]
	}
	if !p.HasFacility {
		return lvl
	}
	fac, ok := facilityNames[p.Facility>>3]
	if !ok {
		fac = strconv.Itoa(p.Facility >> 3)
	}
	return fac + "." + lvl
}
