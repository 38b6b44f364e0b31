package hostsrules

import (
	"fmt"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules/internal/hostsopts"
)

// OptionError is an error in a matched rule's options field. libwrap logs
// it as "error: FILE, line N: MSG" and denies the request at once.
type OptionError struct {
	File string
	Line int
	Msg  string
}

// Error formats the error as "file:line: msg".
func (e *OptionError) Error() string {
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

// ParseOptions parses an options field (the text after a rule's second
// colon) into options, validating each as libwrap's process_options does
// before running it. It stops at the first error, which it returns with the
// options before it.
func ParseOptions(field string) ([]Option, error) {
	fields := hostsopts.Fields(field)
	var out []Option
	for i, f := range fields {
		name, value, err := hostsopts.Parse(f, i+1 == len(fields))
		if err != nil {
			return out, err
		}
		out = append(out, Option{Name: name, Value: value})
	}
	return out, nil
}

// SyslogPriority is the value of a severity option: a syslog facility and
// level, which syslog(3)'s priority combines as facility<<3 | level.
// HasFacility tells whether a facility was given.
type SyslogPriority = hostsopts.SyslogPriority

// ParseSeverity parses a severity option value "[facility.]level" with
// case-insensitive names (hosts_options(5)); an unknown name gives libwrap's
// error `bad syslog facility or severity: "x"`.
func ParseSeverity(value string) (SyslogPriority, error) { return hostsopts.ParseSeverity(value) }
