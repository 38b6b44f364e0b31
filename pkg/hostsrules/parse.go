package hostsrules

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"syscall"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules/internal/chunk"
	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules/internal/ctext"
	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules/internal/xgets"
)

// maxField is libwrap's STRING_LENGTH (128): names, addresses, users and
// daemon names keep at most 127 characters.
const maxField = 127

// listSeparators split daemon and client lists (hosts_access.c "sep").
const listSeparators = ", \t\r\n"

// rule is one rule as evaluated: a view built on demand from the compact
// form the table keeps (see storedRule and addrindex.Run). Its strings
// point into the table's text or into the check's token buffer; a rule
// never outlives the check that built it.
type rule struct {
	// text and tail together are the logical line without its final
	// newline; tail is only set for a rule rebuilt from an address index
	// (fullText joins them only when asked).
	text, tail string
	// opts is the options field including the final newline.
	opts string
	line int32 // physical line number of the rule's last line
	// hasOpts says whether a second colon made an options field exist
	// (even if blank).
	hasOpts          bool
	daemons, clients []string
}

// fullText returns the logical line without its newline.
func (r *rule) fullText() string {
	if r.tail == "" {
		return r.text
	}
	return r.text + r.tail
}

// storedRule is a rule kept as text: the logical line with its newline,
// held in the table's text (a chunk.Text), and where its fields
// end. Its tokens are split again when it is evaluated (view), which costs
// less than keeping them. It takes 12 bytes besides the text.
type storedRule struct {
	// off is where the line starts: the block of the table's text in the
	// upper 16 bits, the offset in it in the lower 16. A line never
	// crosses a block and ends at its only newline.
	off  uint32
	line int32
	// c1 is the offset of the ":" that ends the daemon list; c2 that of
	// the ":" that ends the client list, or 0 when there is none.
	c1, c2 uint16
}

// view sets r to the stored rule s, with its tokens split into buf, and
// returns buf.
func (t *table) view(s *storedRule, buf []string, r *rule) []string {
	line := t.text.From(s.off)
	line = line[:strings.IndexByte(line, '\n')+1]
	*r = rule{text: line[:len(line)-1], line: s.line}
	buf = ctext.AppendList(buf[:0], line[:s.c1])
	nd := len(buf)
	clients := line[s.c1+1:]
	if s.c2 > 0 {
		clients = line[s.c1+1 : s.c2]
		r.opts, r.hasOpts = line[s.c2+1:], true
	}
	buf = ctext.AppendList(buf, clients)
	r.daemons, r.clients = buf[:nd:nd], buf[nd:]
	return buf
}

// table is one compiled access table (hosts.allow or hosts.deny).
type table struct {
	name  string
	state FileState
	err   error // open error when state is FileUnreadable
	// n is the number of rules; segs holds them in order (see index.go).
	n    int
	segs []segment
	// stored are the rules kept as text, in rule order; text holds their
	// lines.
	stored chunk.List[storedRule]
	text   chunk.Text
	// endErr, when not nil, is the error that stops the scan after the
	// last rule (missing newline or line too long); the scan then returns
	// an error result, as Debian's fix_parsing_long_lines makes it.
	endErr *Diagnostic
}

// SplitAt finds the first delim outside brackets, as libwrap's split_at
// (used for the ":" between fields, "/" in net/mask, "." in severity and
// the newline of banner lines): "[" increments and "]" decrements a depth
// counter, and delim only splits at depth zero. It returns the text before
// and after delim and whether there was one; without one, before is s.
func SplitAt(s string, delim byte) (before, after string, ok bool) {
	return ctext.SplitAt(s, delim)
}

// SplitAtFrom1 is libwrap's split_at(s + 1, delim), how daemon@host and
// user@host tokens are split: the search (and the bracket count) starts at
// the second character, so a leading "@" never splits.
func SplitAtFrom1(s string, delim byte) (before, after string, ok bool) {
	return ctext.SplitAtFrom1(s, delim)
}

// isBlankLine reports whether s consists only of space, TAB, CR and LF.
func isBlankLine(s []byte) bool {
	for _, c := range s {
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			return false
		}
	}
	return true
}

// ruleLine is one logical line split into its fields, as table_match
// splits it: the daemon list, the client list and the options field
// (including the final newline) if a second colon made one exist.
type ruleLine struct {
	first, last int    // physical line numbers
	line        string // the logical line with its newline
	text        string // the logical line without its newline
	daemons     string
	clients     string
	opts        string
	hasOpts     bool
}

// scanRules reads a table's logical lines from r as libwrap's table_match
// does and calls fn for each rule line, returning the diagnostics of
// reading. An unterminated or over-long line stops the scan (end is its
// diagnostic) unless lenient, tcpdchk's reading, which goes on. A read
// error of r's source ends the scan early; the caller checks r.Err().
func scanRules(name string, r *xgets.Reader, lenient bool, fn func(ruleLine)) (diags []Diagnostic, end *Diagnostic) {
	for {
		first := r.Line() + 1
		buf, ok := r.Next()
		if !ok {
			return diags, nil
		}
		if buf[len(buf)-1] != '\n' {
			// libwrap prints the count of newlines it has read
			// (tcpd_context.line), usually the line before this one.
			d := Diagnostic{File: name, Line: r.PieceLine(), LibwrapLine: r.Line(), Severity: Error,
				Code: "missing-newline", Msg: "missing newline or line too long"}
			diags = append(diags, d)
			if !lenient {
				diags = append(diags, Diagnostic{File: name, Line: r.PieceLine(), LibwrapLine: r.Line(), Severity: Error,
					Code: "rules-ignored", Msg: "all the subsequent rules will be ignored"})
				return diags, &d
			}
		}
		if buf[0] == '#' || isBlankLine(buf) {
			continue
		}
		line := string(buf)
		daemons, rest, ok := ctext.SplitAt(line, ':')
		if !ok {
			diags = append(diags, Diagnostic{File: name, Line: r.Line(), Severity: Warning,
				Code: "missing-separator", Msg: `missing ":" separator`})
			continue
		}
		clients, opts, hasOpts := ctext.SplitAt(rest, ':')
		fn(ruleLine{first: first, last: r.Line(), line: line, text: strings.TrimSuffix(line, "\n"),
			daemons: daemons, clients: clients, opts: opts, hasOpts: hasOpts})
	}
}

// parseTable parses one table the way libwrap's table_match reads it and
// returns the /file paths its rules name.
func parseTable(src Source) (*table, []Diagnostic, []string) {
	t := &table{name: src.Name, state: src.State, err: src.Err}
	switch src.State {
	case FileMissing, FileDir:
		return t, nil, nil
	case FileUnreadable:
		d := Diagnostic{File: src.Name, Severity: Error, Code: "cannot-open",
			Msg: fmt.Sprintf("cannot open %s: %s", src.Name, strerror(src.Err))}
		t.endErr = &d
		return t, []Diagnostic{d}, nil
	}
	diags, lists := t.build(xgets.FromBytes(src.Data), int64(len(src.Data)))
	return t, diags, lists
}

// build reads t's rules from r (size is the table's size if known, a
// hint) and returns the diagnostics and the /file paths the rules name.
func (t *table) build(r *xgets.Reader, size int64) ([]Diagnostic, []string) {
	b := newTableBuilder(t, size)
	diags, end := scanRules(t.name, r, false, b.add)
	b.finish()
	t.endErr = end
	if b.full != nil {
		diags = append(diags, *b.full)
		t.endErr = b.full
	}
	return diags, b.lists
}

// strerror renders err like C's strerror: "Permission denied".
func strerror(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		s := errno.Error()
		if s != "" {
			return strings.ToUpper(s[:1]) + s[1:]
		}
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	if err == nil {
		return "unknown error"
	}
	return err.Error()
}
