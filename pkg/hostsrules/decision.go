package hostsrules

import (
	"context"
	"encoding/json"
	"fmt"
)

// Option is one field of a rule's options part (hosts_options(5)), e.g.
// spawn with the value "/bin/echo %a".
type Option struct {
	// Name is the option keyword in lower case ("spawn", "allow", ...).
	Name string `json:"name"`
	// Value is the option value as written in the rule (after \: unescaping
	// and trimming), or empty when the option has none.
	Value string `json:"value,omitempty"`
	// Expanded is Value after %-expansion for the options that expand
	// (spawn, twist, aclexec, setenv); otherwise equal to Value. It is only
	// set in the options of a Decision.
	Expanded string `json:"expanded,omitempty"`
}

// String returns "name value" or "name", as libwrap logs "option:   ..." lines.
func (o Option) String() string {
	v := o.Expanded
	if v == "" {
		v = o.Value
	}
	if v == "" {
		return o.Name
	}
	return o.Name + " " + v
}

// Effects carries out option side effects for a live check. The policy calls
// Apply once per option of the matched rule, left to right, after
// validating it, exactly where libwrap would execute it.
//
// Implementations decide what each option does in their context; the policy
// itself only implements allow and deny. Apply is not called for allow and
// deny.
type Effects interface {
	// Apply runs opt (whose Expanded field holds the %-expanded value).
	// x expands further text (banner files) for the same request.
	// It returns keep=false when an aclexec command failed (the rule then
	// stops matching, hosts_options(5) Debian semantics), and a non-nil
	// error to deny the request at once, like libwrap's tcpd_jump.
	// For twist, Apply should return keep=true and the policy marks the
	// decision as delegated and denied.
	Apply(ctx context.Context, opt Option, x *Expander) (keep bool, err error)
}

// Decision is the answer to one Check.
type Decision struct {
	// Verdict is Granted or Denied.
	Verdict Verdict `json:"verdict"`
	// Delegated is true when a twist option ran: tcpdmatch prints
	// "delegated", and a live service refuses the check (the command owns
	// the client).
	Delegated bool `json:"delegated,omitempty"`
	// File and Line locate the deciding rule ("" and 0 when no rule matched
	// and access was granted by default). For a file-level error (an
	// unreadable hosts.deny, a line that is too long) Line is the line
	// number libwrap reports.
	File string `json:"file,omitempty"`
	Line int    `json:"line,omitempty"`
	// Rule is the text of the deciding logical line, without its newline.
	Rule string `json:"rule,omitempty"`
	// Options are the options of the deciding rule that ran, in order,
	// with their expanded values.
	Options []Option `json:"options,omitempty"`
	// Reason says in a few words why: "matched", "default", "option allow",
	// "option deny", "option error", "table error", "aclexec failed",
	// "twist".
	Reason string `json:"reason"`
	// Err is the error that forced a denial (an option error, an
	// unreadable hosts.deny, an unterminated line), or nil. In JSON it is
	// the string "error".
	Err error `json:"-"`
	// Trace lists each rule considered, in order, when Env.Explain is set.
	Trace []Step `json:"trace,omitempty"`
}

// Step records one rule considered by Check when Env.Explain is set.
type Step struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Rule    string `json:"rule"`
	Matched bool   `json:"matched"`
	// Index marks a step that stands for a run of address-only rules
	// looked up through the address index instead of one by one.
	Index bool `json:"index,omitempty"`
	// Why explains the outcome, e.g. `daemon list: no element matched "imap"`
	// or `client list: "10.0.0.1" matched, EXCEPT "10.0.0.2" did not`.
	Why string `json:"why"`
}

// Severity grades a Diagnostic.
type Severity int

const (
	// Warning: libwrap warns and goes on (the rule may be skipped).
	Warning Severity = iota
	// Error: libwrap denies (option errors) or stops reading the file.
	Error
)

// String returns "warning" or "error".
func (s Severity) String() string {
	if s == Error {
		return "error"
	}
	return "warning"
}

// Diagnostic is one message about a rule file, located by file and its
// true 1-based line.
type Diagnostic struct {
	File string `json:"file"`
	Line int    `json:"line"`
	// LibwrapLine, for "missing newline or line too long" (Codes
	// missing-newline and rules-ignored), is the line number libwrap
	// prints in its own message: the count of newlines it has read
	// (0 for an over-long or unterminated first line, usually Line-1).
	// Only output that reproduces libwrap's bytes uses it.
	LibwrapLine int      `json:"libwrap_line,omitempty"`
	Col         int      `json:"col,omitempty"`
	Severity    Severity `json:"severity"`
	// Code is a stable identifier such as "missing-separator".
	Code string `json:"code"`
	// Msg is libwrap's message text where libwrap has one.
	Msg string `json:"msg"`
}

// Error formats the diagnostic as "file:line: msg".
func (d Diagnostic) Error() string {
	if d.Col > 0 {
		return fmt.Sprintf("%s:%d:%d: %s", d.File, d.Line, d.Col, d.Msg)
	}
	return fmt.Sprintf("%s:%d: %s", d.File, d.Line, d.Msg)
}

// MarshalText encodes the verdict as "granted" or "denied" (in JSON too).
func (v Verdict) MarshalText() ([]byte, error) { return []byte(v.String()), nil }

// UnmarshalText decodes "granted" or "denied".
func (v *Verdict) UnmarshalText(b []byte) error {
	switch string(b) {
	case "granted":
		*v = Granted
	case "denied":
		*v = Denied
	default:
		return fmt.Errorf("unknown verdict %q", b)
	}
	return nil
}

// MarshalText encodes the severity as "warning" or "error".
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText decodes "warning" or "error".
func (s *Severity) UnmarshalText(b []byte) error {
	switch string(b) {
	case "warning":
		*s = Warning
	case "error":
		*s = Error
	default:
		return fmt.Errorf("unknown severity %q", b)
	}
	return nil
}

// MarshalJSON encodes the decision with its fields as tagged and Err as
// the string "error" (omitted when nil).
func (d Decision) MarshalJSON() ([]byte, error) {
	type plain Decision
	var errText string
	if d.Err != nil {
		errText = d.Err.Error()
	}
	return json.Marshal(struct {
		plain
		Error string `json:"error,omitempty"`
	}{plain(d), errText})
}
