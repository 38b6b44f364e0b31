package lint

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
)

// Schema is the schema version of a Report in JSON.
const Schema = "tcpwrapd/lint/v1"

// Severity grades a Diagnostic.
type Severity int

const (
	// Info is worth knowing, not a problem.
	Info Severity = iota
	// Warning is what libwrap warns about, or a rule that probably does not
	// do what its author meant.
	Warning
	// Error means the file does not do what it says: something never
	// matches, is ignored, or makes libwrap deny or stop reading.
	Error
)

// String returns "info", "warning" or "error".
func (s Severity) String() string {
	switch s {
	case Error:
		return "error"
	case Warning:
		return "warning"
	}
	return "info"
}

// MarshalText encodes the severity as its name.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText decodes "info", "warning" or "error".
func (s *Severity) UnmarshalText(b []byte) error {
	switch string(b) {
	case "info":
		*s = Info
	case "warning":
		*s = Warning
	case "error":
		*s = Error
	default:
		return fmt.Errorf("unknown severity %q", b)
	}
	return nil
}

// Diagnostic is one finding, located by file, 1-based line and column
// (column 0: the whole line or file; line 0: the whole file).
type Diagnostic struct {
	File     string   `json:"file"`
	Line     int      `json:"line"`
	Col      int      `json:"col"`
	Severity Severity `json:"severity"`
	// Code is a stable identifier, listed in the package documentation.
	Code string `json:"code"`
	// Msg says what is wrong, with tcpdchk's wording where it has one.
	Msg string `json:"message"`
	// Hint, when not empty, says how to fix it.
	Hint string `json:"hint,omitempty"`
	// Fix, when not nil, is the edit the hint describes, exact enough
	// to apply by program: the rule then means what the admin meant
	// (pkg/lint's tests apply every Fix and check the result again).
	Fix *Fix `json:"fix,omitempty"`
}

// Fix replaces the text Old, which starts at the diagnostic's column of
// its line, by New.
type Fix struct {
	Old string `json:"old"`
	New string `json:"new"`
}

// String formats d as "file:line:col: severity: msg [code]".
func (d Diagnostic) String() string {
	loc := d.File
	if d.Line > 0 {
		loc += fmt.Sprintf(":%d", d.Line)
		if d.Col > 0 {
			loc += fmt.Sprintf(":%d", d.Col)
		}
	}
	return fmt.Sprintf("%s: %s: %s [%s]", loc, d.Severity, d.Msg, d.Code)
}

// Role says how a table is used.
type Role string

const (
	// RoleAllow is hosts.allow: a match grants (unless an option decides).
	RoleAllow Role = "allow"
	// RoleDeny is hosts.deny: a match denies; libwrap reads it after
	// hosts.allow.
	RoleDeny Role = "deny"
	// RoleTable is a table checked on its own.
	RoleTable Role = "table"
)

// Table names one file to check.
type Table struct {
	Path string `json:"path"`
	Role Role   `json:"role"`
	// Explicit marks a file the user named: a missing one is then an
	// error rather than information.
	Explicit bool `json:"-"`
	// Separate analyses the table on its own even when its role is
	// RoleAllow or RoleDeny (the role then only shapes the messages).
	Separate bool `json:"-"`
}

// GuessRole returns RoleDeny for a name containing "deny", RoleAllow for
// one containing "allow", and RoleTable otherwise.
func GuessRole(path string) Role {
	base := strings.ToLower(filepath.Base(path))
	switch {
	case strings.Contains(base, "deny"):
		return RoleDeny
	case strings.Contains(base, "allow"):
		return RoleAllow
	}
	return RoleTable
}

// NetgroupDB tells which netgroups exist and are not empty.
type NetgroupDB interface {
	Exists(group string) bool
}

// Options configures Lint. The zero value makes no lookups and reads files
// from the operating system.
type Options struct {
	// Resolver, if set, is used to check host names (forward lookups); nil
	// skips DNS checks.
	Resolver hostsrules.Resolver
	// ReverseLookups also looks up the name of every literal address, as
	// tcpdchk does (needs Resolver).
	ReverseLookups bool
	// LookupTimeout bounds each lookup; zero means 5 s.
	LookupTimeout time.Duration
	// Netgroups, if set, is asked whether each @group exists.
	Netgroups NetgroupDB
	// ReadFile reads /file lists; nil means os.ReadFile.
	ReadFile func(name string) ([]byte, error)
	// Stat stats banners directories and files for the world-writable
	// check; nil means os.Stat.
	Stat func(name string) (fs.FileInfo, error)
}

// FileReport describes one checked table.
type FileReport struct {
	Path  string `json:"path"`
	Role  Role   `json:"role"`
	State string `json:"state"`
	Rules int    `json:"rules"`
}

// Report is the result of Lint, and the JSON output of `loginctl rules lint`.
type Report struct {
	Schema      string       `json:"schema"`
	Files       []FileReport `json:"files"`
	Diagnostics []Diagnostic `json:"diagnostics"`
	Errors      int          `json:"errors"`
	Warnings    int          `json:"warnings"`
	Infos       int          `json:"infos"`
}

// Lint checks tables and returns every diagnostic, sorted by the order of
// tables, then line, then column. Tables with roles RoleAllow and RoleDeny
// (at most one of each) that are not Separate are analysed together as libwrap reads them:
// hosts.allow first, then hosts.deny, so a catch-all rule in hosts.allow
// also makes hosts.deny unreachable. Tables with RoleTable are analysed
// alone. Lint never fails: unreadable files are diagnostics. ctx bounds
// DNS lookups.
func Lint(ctx context.Context, tables []Table, opts Options) *Report {
	if ctx == nil {
		ctx = context.Background()
	}
	if opts.ReadFile == nil {
		opts.ReadFile = os.ReadFile
	}
	if opts.Stat == nil {
		opts.Stat = os.Stat
	}
	if opts.LookupTimeout <= 0 {
		opts.LookupTimeout = 5 * time.Second
	}
	l := &linter{ctx: ctx, opts: opts, lookups: map[string]lookupResult{}}
	rep := &Report{Schema: Schema, Files: []FileReport{}}
	var pair []*parsedTable
	order := map[string]int{}
	for i, t := range tables {
		order[t.Path] = i
		pt := l.table(t)
		rep.Files = append(rep.Files, FileReport{Path: t.Path, Role: t.Role, State: pt.state, Rules: len(pt.rules)})
		if (t.Role == RoleAllow || t.Role == RoleDeny) && !t.Separate {
			pair = append(pair, pt)
		} else {
			l.shadows([]*parsedTable{pt})
		}
	}
	slices.SortStableFunc(pair, func(a, b *parsedTable) int {
		return cmp.Compare(roleOrder(a.role), roleOrder(b.role))
	})
	if len(pair) > 0 {
		l.shadows(pair)
	}
	diags := l.diags
	slices.SortStableFunc(diags, func(a, b Diagnostic) int {
		oa, ok := order[a.File]
		if !ok {
			oa = len(tables)
		}
		ob, ok := order[b.File]
		if !ok {
			ob = len(tables)
		}
		return cmp.Or(cmp.Compare(oa, ob), cmp.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col))
	})
	diags = slices.CompactFunc(diags, func(a, b Diagnostic) bool { return a == b })
	rep.Diagnostics = append([]Diagnostic{}, diags...)
	for _, d := range rep.Diagnostics {
		switch d.Severity {
		case Error:
			rep.Errors++
		case Warning:
			rep.Warnings++
		default:
			rep.Infos++
		}
	}
	return rep
}

func roleOrder(r Role) int {
	if r == RoleAllow {
		return 0
	}
	return 1
}

type linter struct {
	ctx     context.Context
	opts    Options
	diags   []Diagnostic
	lookups map[string]lookupResult
}

type lookupResult struct {
	canon string
	found bool
}

func (l *linter) add(d Diagnostic) { l.diags = append(l.diags, d) }

func (l *linter) addf(file string, line, col int, sev Severity, code, hint, format string, args ...any) {
	l.add(Diagnostic{File: file, Line: line, Col: col, Severity: sev, Code: code, Msg: fmt.Sprintf(format, args...), Hint: hint})
}

// addFix adds d with a Fix replacing old, at d's column, by new.
func (l *linter) addFix(d Diagnostic, old, new string) {
	d.Fix = &Fix{Old: old, New: new}
	l.add(d)
}

// fixf adds a diagnostic whose hint is "write NEW" and whose Fix replaces
// old, at col, by new.
func (l *linter) fixf(file string, line, col int, sev Severity, code, old, new, format string, args ...any) {
	l.add(Diagnostic{File: file, Line: line, Col: col, Severity: sev, Code: code, Msg: fmt.Sprintf(format, args...),
		Hint: "write " + new, Fix: &Fix{Old: old, New: new}})
}

// parsedTable is one table with its rules and per-rule facts used by the
// shadowing analysis.
type parsedTable struct {
	path  string
	role  Role
	state string
	rules []hostsrules.Rule
	// decisive[i] is false for rules that may fall through (aclexec).
	decisive []bool
	// broken[i] marks rules whose meaning is already reported as an error
	// (cut IPv6 addresses): they are left out of shadowing.
	broken []bool
}

func (l *linter) table(t Table) *parsedTable {
	src := hostsrules.ReadSource(t.Path)
	pt := &parsedTable{path: t.Path, role: t.Role, state: src.State.String()}
	switch src.State {
	case hostsrules.FileMissing:
		if t.Explicit {
			l.addf(t.Path, 0, 0, Error, "cannot-open", "", "%s does not exist", t.Path)
		} else {
			l.addf(t.Path, 0, 0, Info, "file-missing", "", "%s does not exist: it counts as an empty table", t.Path)
		}
		return pt
	case hostsrules.FileDir:
		l.addf(t.Path, 0, 0, Warning, "not-a-file", "", "%s is a directory: it counts as an empty table", t.Path)
		return pt
	case hostsrules.FileUnreadable:
		what := "libwrap skips it"
		if t.Role == RoleDeny {
			what = "libwrap denies every client"
		}
		l.addf(t.Path, 0, 0, Error, "cannot-open", "", "cannot open %s: %s (%s)", t.Path, errText(src.Err), what)
		return pt
	}
	l.worldWritable(t.Path)
	rules, rdiags := hostsrules.ParseRules(src, true)
	pt.rules = rules
	pt.decisive = make([]bool, len(rules))
	pt.broken = make([]bool, len(rules))
	lines := physicalLines(src.Data)
	logical := logicalLines(src.Data)
	var longs []logicalLine // over-long logical lines
	for _, d := range rdiags {
		switch d.Code {
		case "missing-newline":
			if ll, ok := l.lineEnd(pt, src.Data, lines, logical, d); ok {
				longs = append(longs, ll)
			}
		case "missing-separator":
			if slices.ContainsFunc(longs, func(ll logicalLine) bool { return d.Line >= ll.first-1 && d.Line <= ll.last }) {
				continue // a piece of an over-long line
			}
			text := ""
			if d.Line >= 1 && d.Line <= len(lines) {
				text = lines[d.Line-1]
			}
			if trimmed := strings.TrimLeft(text, " \t\r"); strings.HasPrefix(trimmed, "#") && !strings.HasPrefix(text, "#") {
				l.addf(t.Path, d.Line, len(text)-len(trimmed)+1, Warning, "indented-comment",
					`start comments in column 1`,
					`"#" starts a comment only in column 1: this line is read as a rule without ":" and skipped (harmless until someone adds a ":")`)
				continue
			}
			l.addf(t.Path, d.Line, 0, Error, "missing-separator", `a rule is "daemons : clients [: options]"`,
				`missing ":" separator: libwrap skips this line`)
		default:
			l.add(Diagnostic{File: d.File, Line: d.Line, Col: d.Col, Severity: Error, Code: d.Code, Msg: d.Msg})
		}
	}
	l.continuations(pt, lines, logical)
	dead := false // after an over-long line libwrap reads nothing more
	for i := range pt.rules {
		r := &pt.rules[i]
		if slices.ContainsFunc(longs, func(ll logicalLine) bool { return r.FirstLine >= ll.first && r.FirstLine <= ll.last }) {
			dead = true
			pt.broken[i] = true
			continue
		}
		pt.decisive[i], pt.broken[i] = l.rule(pt, r)
		pt.broken[i] = pt.broken[i] || dead
	}
	return pt
}

// ruleLine is the line reported for a rule: libwrap's (the last physical
// line of a continued rule).
func ruleLine(r *hostsrules.Rule) int { return max(r.Line, r.FirstLine) }

// physicalLines splits data into lines without their newlines.
func physicalLines(data []byte) []string {
	s := strings.TrimSuffix(string(data), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// logicalLine is a line as libwrap assembles it from physical lines
// joined by backslash-newline.
type logicalLine struct {
	first, last int // physical lines, 1-based
	length      int // characters, without the newline and the joins
	comment     bool
}

func logicalLines(data []byte) []logicalLine {
	var out []logicalLine
	cur := logicalLine{first: 1}
	line := 1
	start := true
	for i := 0; i < len(data); i++ {
		if start {
			cur = logicalLine{first: line, comment: data[i] == '#'}
			start = false
		}
		if data[i] != '\n' {
			cur.length++
			continue
		}
		if i > 0 && data[i-1] == '\\' {
			cur.length-- // the backslash goes, the line goes on
			line++
			continue
		}
		cur.last = line
		out = append(out, cur)
		line++
		start = true
	}
	if !start {
		cur.last = line
		out = append(out, cur)
	}
	return out
}

// maxLogical is the longest logical line libwrap reads whole (its 2048-byte
// buffer holds the line, its newline and a NUL).
const maxLogical = 2046

// lineEnd reports hostsrules' "missing newline or line too long" as one of
// missing-newline and line-too-long. It returns the over-long logical line.
func (l *linter) lineEnd(pt *parsedTable, data []byte, lines []string, logical []logicalLine, d hostsrules.Diagnostic) (logicalLine, bool) {
	consequence := "libwrap stops reading the file here: this line and every line after it are ignored"
	if pt.role == RoleDeny {
		consequence += ", and every client that no earlier rule matched is denied"
	} else if pt.role == RoleAllow {
		consequence += " (hosts.deny is consulted as if nothing matched)"
	}
	nlines := strings.Count(string(data), "\n")
	if len(data) > 0 && data[len(data)-1] != '\n' && d.LibwrapLine == nlines {
		l.addf(pt.path, d.Line, 0, Error, "missing-newline", "end the file with a newline",
			"missing newline at end of file: %s", consequence)
		return logicalLine{}, false
	}
	if last := len(logical) - 1; last >= 0 && bytes.HasSuffix(data, []byte("\\\n")) &&
		logical[last].last > nlines && logical[last].length <= maxLogical && d.LibwrapLine == nlines {
		// The last line ends in backslash-newline: xgets looks for the
		// rest of the line, finds the end of the file and returns the
		// line without a newline (not an over-long one).
		text := lines[nlines-1]
		l.addf(pt.path, nlines, len(text), Error, "continuation-at-end", fmt.Sprintf("remove the backslash at the end of line %d", nlines),
			"the last line ends in a backslash, which continues it past the end of the file: libwrap reads it as a line without newline (\"line %d: missing newline or line too long\"): %s",
			d.LibwrapLine, consequence)
		return logicalLine{}, false
	}
	n := d.Line
	if n <= len(lines) && strings.IndexByte(lines[n-1], 0) >= 0 {
		l.addf(pt.path, n, 0, Error, "missing-newline", "remove the NUL byte",
			"a NUL byte ends this line early (libwrap: missing newline or line too long): %s", consequence)
		return logicalLine{first: n, last: n}, true
	}
	ll := logicalLine{first: n, last: n}
	for _, x := range logical {
		if n >= x.first && n <= x.last {
			ll = x
		}
	}
	if slices.ContainsFunc(l.diags, func(x Diagnostic) bool {
		return x.File == pt.path && x.Line == ll.first && x.Code == "line-too-long"
	}) {
		return ll, true // a later piece of the same logical line
	}
	span := ""
	if ll.last > ll.first {
		span = fmt.Sprintf(", lines %d-%d joined by backslashes", ll.first, ll.last)
	}
	l.addf(pt.path, ll.first, 0, Error, "line-too-long", "split the list over several rules, or use a /file list",
		"line too long (%d characters%s; libwrap reads at most 2046 and says \"line %d: missing newline or line too long\"): %s",
		ll.length, span, d.LibwrapLine, consequence)
	return ll, true
}

// continuations reports comments that swallow the next line with a final
// backslash, and backslashes that do not continue a line because blanks
// follow them.
func (l *linter) continuations(pt *parsedTable, lines []string, logical []logicalLine) {
	for _, ll := range logical {
		if !ll.comment || ll.last == ll.first {
			continue
		}
		for n := ll.first + 1; n <= min(ll.last, len(lines)); n++ { // a comment continued at the end of the file runs past the last line
			text := lines[n-1]
			if strings.TrimSpace(strings.TrimSuffix(text, "\\")) == "" || strings.HasPrefix(text, "#") {
				continue
			}
			l.addf(pt.path, n, 0, Error, "comment-continuation", fmt.Sprintf("remove the backslash at the end of line %d", n-1),
				"this line is part of the comment on line %d, which ends in a backslash: libwrap ignores it", ll.first)
		}
	}
	for i, text := range lines {
		trimmed := strings.TrimRight(text, " \t\r")
		if strings.HasSuffix(text, "\\\r") && !strings.HasPrefix(text, "#") {
			// The CR-LF trap: the line looks continued in an editor
			// that hides the CR, but the backslash is not before the
			// newline. Plain CR-LF lines are fine (CR separates list
			// items like a blank).
			l.addf(pt.path, i+1, len(trimmed), Error, "crlf-continuation", "convert the file to LF line endings (dos2unix), or join the lines",
				"CRLF line endings: a backslash before CR-LF does not continue the line: the \"\\\" is a list item and line %d is read on its own", i+2)
			continue
		}
		if trimmed != text && strings.HasSuffix(trimmed, "\\") && !strings.HasPrefix(text, "#") {
			l.addf(pt.path, i+1, len(trimmed), Error, "broken-continuation", "remove the blanks after the backslash",
				"a backslash followed by blanks does not continue the line: the \"\\\" is a list item and line %d is read on its own", i+2)
		}
	}
}

func (l *linter) worldWritable(path string) {
	st, err := l.opts.Stat(path)
	if err == nil && st.Mode().Perm()&0o002 != 0 {
		l.addf(path, 0, 0, Warning, "world-writable", "chmod o-w "+path, "%s: world writable", path)
	}
}

func errText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	if err == nil {
		return "unknown error"
	}
	s := err.Error()
	return strings.ToUpper(s[:1]) + s[1:]
}
