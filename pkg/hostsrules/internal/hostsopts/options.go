// Package hostsopts is the syntax of a rule's options field
// (hosts_options(5)) as Debian 12's libwrap 7.6.q reads it: fields split
// at unescaped colons, "keyword [=] value", libwrap's option table (which
// options need, permit or forbid a value, must come last, are
// %-expanded) and each option's own value checks. Running the options is
// pkg/hostsrules' and its Effects'.
package hostsopts

import (
	"errors"
	"fmt"
	"os/user"
	"strings"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules/internal/ctext"
)

// Option flags, as libwrap's options.c option_table.
const (
	optNeedArg = 1 << iota
	optPermitArg
	optUseLast
	optExpandArg
)

// optionTable lists Debian libwrap 7.6.q-32's options (hosts_options(5)).
var optionTable = map[string]int{
	"user":      optNeedArg | optPermitArg,
	"group":     optNeedArg | optPermitArg,
	"umask":     optNeedArg | optPermitArg,
	"linger":    optNeedArg | optPermitArg,
	"keepalive": 0,
	"spawn":     optNeedArg | optPermitArg | optExpandArg,
	"twist":     optNeedArg | optPermitArg | optExpandArg | optUseLast,
	"rfc931":    optPermitArg,
	"setenv":    optNeedArg | optPermitArg | optExpandArg,
	"nice":      optPermitArg,
	"severity":  optNeedArg | optPermitArg,
	"allow":     optUseLast,
	"deny":      optUseLast,
	"banners":   optNeedArg | optPermitArg,
	"aclexec":   optNeedArg | optPermitArg | optExpandArg,
}

// Fields splits an options field at ":" ("\:" is a literal colon),
// as libwrap's get_field. Every field is returned, including empty ones.
func Fields(s string) []string {
	var out []string
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && i+1 < len(s) && s[i+1] == ':':
			b.WriteByte(':')
			i++
		case s[i] == ':':
			out = append(out, b.String())
			b.Reset()
		default:
			b.WriteByte(s[i])
		}
	}
	return append(out, b.String())
}

// splitOption separates keyword and value as process_options does.
func splitOption(f string) (key, value string) {
	f = ctext.Chop(f)
	i := strings.IndexAny(f, "= \t\r\n")
	if i < 0 {
		return f, ""
	}
	key, rest := f[:i], f[i:]
	if rest[0] != '=' {
		rest = strings.TrimLeft(rest[1:], " \t\r\n")
	}
	if rest != "" && rest[0] == '=' {
		rest = strings.TrimLeft(rest[1:], " \t\r\n")
	}
	return key, rest
}

// Parse reads one field of an options field (as Fields splits it) as
// libwrap's process_options does before running the option: the keyword
// (returned in lower case) and the value, checked against the option's
// rules and its own value checks. last says whether it is the last field;
// allow, deny and twist must be. The error is libwrap's message.
func Parse(f string, last bool) (name, value string, err error) {
	key, value := splitOption(f)
	if key == "" {
		return "", "", errors.New("missing option name")
	}
	name = strings.ToLower(key)
	flags, ok := optionTable[name]
	if !ok {
		return "", "", fmt.Errorf("bad option name: %q", key)
	}
	if value == "" && flags&optNeedArg != 0 {
		return "", "", fmt.Errorf("option %q requires value", key)
	}
	if value != "" && flags&optPermitArg == 0 {
		return "", "", fmt.Errorf("option %q requires no value", key)
	}
	if !last && flags&optUseLast != 0 {
		return "", "", fmt.Errorf("option %q must be at end", key)
	}
	if err := validateOption(name, value); err != nil {
		return "", "", err
	}
	return name, value, nil
}

// Expands reports whether the value of option name is %-expanded before
// it runs (spawn, twist, setenv, aclexec).
func Expands(name string) bool { return optionTable[name]&optExpandArg != 0 }

// validateOption performs each option's own value checks,
// without side effects other than user and group database lookups.
func validateOption(name, value string) error {
	switch name {
	case "umask":
		m, ok := ctext.ScanOctal(value)
		if !ok || m&0o777 != m {
			return errors.New("bad umask value")
		}
	case "linger":
		v, ok := ctext.ScanInt(value)
		if !ok || v < 0 {
			return errors.New("bad linger value")
		}
	case "nice":
		if value != "" {
			if _, ok := ctext.ScanInt(value); !ok {
				return errors.New("bad nice value")
			}
		}
	case "rfc931":
		if value != "" {
			v, ok := ctext.ScanInt(value)
			if !ok || v <= 0 {
				return errors.New("bad rfc931 timeout")
			}
		}
	case "severity":
		if _, err := ParseSeverity(value); err != nil {
			return err
		}
	case "user":
		u, g, hasGroup := ctext.SplitAt(value, '.')
		if hasGroup {
			if _, err := user.LookupGroup(g); err != nil {
				return fmt.Errorf("unknown group: %q", g)
			}
		}
		if _, err := user.Lookup(u); err != nil {
			return fmt.Errorf("unknown user: %q", u)
		}
	case "group":
		if _, err := user.LookupGroup(value); err != nil {
			return fmt.Errorf("unknown group: %q", value)
		}
	}
	return nil
}

// ValidSetenv checks a setenv value after expansion: the variable name is
// the text up to the first blank and must be non-empty without "=", else
// glibc's setenv fails and libwrap reports "memory allocation failure".
func ValidSetenv(value string) (name, val string, err error) {
	i := strings.IndexAny(value, " \t\r\n")
	name, val = value, ""
	if i >= 0 {
		name, val = value[:i], value[i+1:]
	}
	name, val = ctext.Chop(name), ctext.Chop(val)
	if name == "" || strings.Contains(name, "=") {
		return "", "", errors.New("memory allocation failure")
	}
	return name, val, nil
}

// Syslog facilities and levels accepted by the severity option.
var (
	syslogFacilities = map[string]int{
		"kern": 0 << 3, "user": 1 << 3, "mail": 2 << 3, "daemon": 3 << 3, "auth": 4 << 3,
		"lpr": 6 << 3, "news": 7 << 3, "uucp": 8 << 3, "cron": 9 << 3,
		"local0": 16 << 3, "local1": 17 << 3, "local2": 18 << 3, "local3": 19 << 3,
		"local4": 20 << 3, "local5": 21 << 3, "local6": 22 << 3, "local7": 23 << 3,
	}
	syslogLevels = map[string]int{
		"emerg": 0, "alert": 1, "crit": 2, "err": 3, "warning": 4, "notice": 5, "info": 6, "debug": 7,
	}
)

// SyslogPriority is the value of a severity option: a syslog facility and
// level, which syslog(3)'s priority combines as facility<<3 | level.
// HasFacility tells whether a facility was given.
type SyslogPriority struct {
	Facility    int
	Level       int
	HasFacility bool
}

// ParseSeverity parses a severity option value "[facility.]level" with
// case-insensitive names (hosts_options(5)); an unknown name gives libwrap's
// error `bad syslog facility or severity: "x"`.
func ParseSeverity(value string) (SyslogPriority, error) {
	fac, lvl, hasFac := ctext.SplitAt(value, '.')
	var p SyslogPriority
	if hasFac {
		f, ok := syslogFacilities[strings.ToLower(fac)]
		if !ok {
			return p, fmt.Errorf("bad syslog facility or severity: %q", fac)
		}
		p.Facility, p.HasFacility = f, true
	} else {
		lvl = value
	}
	l, ok := syslogLevels[strings.ToLower(lvl)]
	if !ok {
		return p, fmt.Errorf("bad syslog facility or severity: %q", lvl)
	}
	p.Level = l
	return p, nil
}
