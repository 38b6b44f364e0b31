package lint

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/tcpwrapd/tcpwrapd/pkg/dovecot/authpolicy"
	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
)

// optField is one ":"-separated options field with its offset in the
// options text.
type optField struct {
	text string
	off  int
}

// optionFields splits an options field as libwrap does ("\:" is a colon).
func optionFields(s string) []optField {
	var out []optField
	var b strings.Builder
	start := 0
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && i+1 < len(s) && s[i+1] == ':':
			b.WriteByte(':')
			i++
		case s[i] == ':':
			out = append(out, optField{b.String(), start})
			b.Reset()
			start = i + 1
		default:
			b.WriteByte(s[i])
		}
	}
	return append(out, optField{b.String(), start})
}

// expanding lists the options whose value is %-expanded.
var expanding = map[string]bool{"spawn": true, "twist": true, "aclexec": true, "setenv": true}

// percentLetters are the valid %-expansions (hosts_access(5)).
const percentLetters = "aAcdhHnNprRsu%"

// options validates a rule's options as libwrap would when the rule
// matches, and reports whether the rule always decides (no aclexec).
func (l *linter) options(pt *parsedTable, r *hostsrules.Rule, line int) (decisive bool) {
	fields := optionFields(r.Options)
	opts, err := hostsrules.ParseOptions(r.Options)
	decisive = true
	aclexec := false
	for i, o := range opts {
		f := fields[i]
		col := r.OptionsCol + f.off + leadingBlanks(f.text)
		switch o.Name {
		case "aclexec":
			aclexec = true
			decisive = false
		case "allow", "deny", "twist":
			// libwrap runs the options in order whatever aclexec
			// returned: these end the check, so the rule decides.
			decisive = true
			if aclexec && o.Name != "twist" {
				l.addf(pt.path, line, col, Warning, "aclexec-decided", fmt.Sprintf("remove %q to let a failed aclexec fall through to the next rules", o.Name),
					"%q after aclexec decides whatever the aclexec command returns: a failed aclexec does not make this rule fall through", o.Name)
			}
		}
		if expanding[o.Name] {
			v := o.Value
			for j := 0; j+1 < len(v); j++ {
				if v[j] != '%' {
					continue
				}
				j++
				if !strings.ContainsRune(percentLetters, rune(v[j])) {
					l.addf(pt.path, line, col, Warning, "unknown-percent", "write %% for a literal percent sign",
						"unrecognized %%%c in %s (it expands to nothing)", v[j], o.Name)
				}
			}
		}
		switch o.Name {
		case "setenv":
			name := strings.Fields(o.Value)
			if len(name) == 0 || strings.Contains(name[0], "=") {
				l.addf(pt.path, line, col, Error, "bad-option", "write setenv NAME VALUE",
					"setenv %s: memory allocation failure (the variable name may not contain \"=\"; libwrap denies every client this rule matches)", o.Value)
			}
			l.policyStatus(pt, line, col, o, opts)
		case "banners":
			if _, err := l.opts.Stat(o.Value); errors.Is(err, fs.ErrNotExist) {
				l.addf(pt.path, line, col, Warning, "banners-missing", "",
					"%s: No such file or directory (banners directory)", o.Value)
			}
		case "user", "group":
			l.addf(pt.path, line, col, Info, "privilege-option", "",
				"%s option: Debian's tcpd ignores it, tcpdmatch and tcpdchk really change their ids", o.Name)
		}
	}
	if err == nil {
		return decisive
	}
	k := min(len(opts), len(fields)-1)
	f := fields[k]
	col := r.OptionsCol + f.off + leadingBlanks(f.text)
	msg := err.Error()
	hint := ""
	key := ""
	if w := strings.Fields(f.text); len(w) > 0 {
		key = w[0]
	}
	switch {
	case strings.HasPrefix(msg, "missing option name") && k == len(fields)-1 && strings.TrimSpace(f.text) == "":
		hint = `remove the trailing ":"`
	case strings.HasPrefix(msg, "bad option name") && strings.HasPrefix(key, "/"):
		hint = "to run a command write spawn " + strings.TrimSpace(f.text) + " (or twist, to replace the service)"
	case strings.HasPrefix(msg, "bad option name") && k > 0 && expanding[opts[k-1].Name]:
		hint = `write "\:" for a colon inside an option value`
	case strings.HasPrefix(msg, "bad option name") && strings.HasPrefix(key, "#"):
		hint = `"#" does not start a comment after a rule; put comments on their own line`
	case strings.Contains(msg, "requires no value") && strings.Contains(f.text, "#"):
		hint = `"#" does not start a comment after a rule; put comments on their own line`
	case strings.Contains(msg, "must be at end"):
		hint = "move it to the end of the options"
	}
	l.addf(pt.path, line, col, Error, "bad-option", hint,
		"%s (libwrap denies every client this rule matches)", msg)
	return decisive
}

// policyStatus reports the auth policy front end's tarpit extension
// (authpolicy.StatusOption, docs/authpolicy.md): what a valid one does, a
// bad value (the rule then grants without a tarpit), and one in a rule
// that denies (a denial never tarpits).
func (l *linter) policyStatus(pt *parsedTable, line, col int, o hostsrules.Option, opts []hostsrules.Option) {
	n, ok, err := authpolicy.StatusOption(o)
	switch {
	case !ok:
		return
	case err != nil:
		l.addf(pt.path, line, col, Warning, "bad-policy-status", "write setenv "+authpolicy.StatusVariable+" N, N a whole number of seconds from 1",
			"%v: the auth policy front end grants without a tarpit", err)
		return
	}
	last := ""
	if len(opts) > 0 {
		last = opts[len(opts)-1].Name
	}
	if (pt.role == RoleAllow && last == "deny") || (pt.role == RoleDeny && last != "allow") {
		l.addf(pt.path, line, col, Warning, "policy-tarpit-denied", "move it to a rule that grants, or end this rule with \"allow\"",
			"setenv %s %d in a rule that denies: a denial never tarpits (the auth policy answers {\"status\":-1})", authpolicy.StatusVariable, n)
		return
	}
	msg := fmt.Sprintf("auth policy tarpit: Dovecot logins this rule grants wait %d s before the passdb ({\"status\":%d})", n, n)
	if n > authpolicy.DefaultMaxStatus {
		msg = fmt.Sprintf("auth policy tarpit: %d s is capped at %d s ({\"status\":%d}) by the front end", n, authpolicy.DefaultMaxStatus, authpolicy.DefaultMaxStatus)
	}
	l.addf(pt.path, line, col, Info, "policy-tarpit", "", "%s", msg)
}

func leadingBlanks(s string) int {
	return len(s) - len(strings.TrimLeft(s, " \t\r\n\v\f"))
}
