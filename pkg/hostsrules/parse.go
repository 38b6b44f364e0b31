package hostsrules

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"syscall"
)

// lineBufSize is libwrap's logical line buffer (BUFLEN 2048): a logical
// line holds at most 2046 characters plus its newline.
const lineBufSize = 2048

// maxField is libwrap's STRING_LENGTH (128): names, addresses, users and
// daemon names keep at most 127 characters.
const maxField = 127

// listSeparators split daemon and client lists (hosts_access.c "sep").
const listSeparators = ", \t\r\n"

// rule is one parsed rule line.
type rule struct {
	text string // the logical line without its final newline
	// toks holds the daemon list tokens followed by the client list tokens;
	// nd is the number of daemon tokens.
	toks []string
	// opts is the options field including the final newline.
	opts string
	line int32 // physical line number of the rule's last line
	nd   int32
	// hasOpts says whether a second colon made an options field exist
	// (even if blank).
	hasOpts bool
}

func (r *rule) daemons() []string { return r.toks[:r.nd] }
func (r *rule) clients() []string { return r.toks[r.nd:] }

// table is one compiled access table (hosts.allow or hosts.deny).
type table struct {
	name  string
	state FileState
	err   error // open error when state is FileUnreadable
	rules []rule
	// endErr, when not nil, is the error that stops the scan after the
	// last rule (missing newline or line too long); the scan then returns
	// an error result, as Debian's fix_parsing_long_lines makes it.
	endErr *Diagnostic
	index  *tableIndex
}

// lineReader emulates libwrap's xgets over fgets on a 2048-byte buffer,
// including strlen's view of NUL bytes and Debian's stop on a full buffer.
type lineReader struct {
	data []byte
	pos  int
	line int // physical lines read so far (tcpd_context.line)
	// newlines is the count of newline bytes consumed (line counts only
	// those fgets's strlen sees), and pieceLine the true 1-based line of
	// the last piece read: where an unterminated or over-long line is.
	newlines, pieceLine int
}

// next returns the next logical line, or ok=false at the end of the table.
func (r *lineReader) next() (buf []byte, ok bool) {
	room := lineBufSize
	for r.pos < len(r.data) {
		// fgets reads at most room-1 bytes, up to and including a newline.
		limit := room - 1
		if limit <= 0 {
			break
		}
		end := r.pos + limit
		if end > len(r.data) {
			end = len(r.data)
		}
		chunk := r.data[r.pos:end]
		if i := indexByte(chunk, '\n'); i >= 0 {
			chunk = chunk[:i+1]
		}
		r.pos += len(chunk)
		r.pieceLine = r.newlines + 1
		if chunk[len(chunk)-1] == '\n' {
			r.newlines++
		}
		// strlen: a NUL byte ends the string early.
		got := len(chunk)
		if i := indexByte(chunk, 0); i >= 0 {
			got = i
		}
		if got >= 1 && chunk[got-1] == '\n' {
			r.line++
			if got >= 2 && chunk[got-2] == '\\' {
				got -= 2 // continuation: drop backslash-newline, read on
			} else {
				if buf == nil {
					return chunk[:got], true // the common case: no copy
				}
				return append(buf, chunk[:got]...), true
			}
		}
		buf = append(buf, chunk[:got]...)
		room -= got
		if room <= 1 {
			break // buffer full (Debian fix_parsing_long_lines)
		}
	}
	if len(buf) == 0 {
		return nil, false
	}
	return buf, true
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// SplitAt finds the first delim outside brackets, as libwrap's split_at
// (used for the ":" between fields, "/" in net/mask, "." in severity and
// the newline of banner lines): "[" increments and "]" decrements a depth
// counter, and delim only splits at depth zero. It returns the text before
// and after delim and whether there was one; without one, before is s.
func SplitAt(s string, delim byte) (before, after string, ok bool) {
	return splitAt(s, delim)
}

// SplitAtFrom1 is libwrap's split_at(s + 1, delim), how daemon@host and
// user@host tokens are split: the search (and the bracket count) starts at
// the second character, so a leading "@" never splits.
func SplitAtFrom1(s string, delim byte) (before, after string, ok bool) {
	return splitAtFrom1(s, delim)
}

func splitAt(s string, delim byte) (before, after string, ok bool) {
	depth := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '[':
			depth++
		case ']':
			depth--
		default:
			if depth == 0 && s[i] == delim {
				return s[:i], s[i+1:], true
			}
		}
	}
	return s, "", false
}

// appendList splits a daemon or client list into tokens at runs of space,
// TAB, CR, LF and comma (strtok with hosts_access.c's separators) and
// appends them to toks.
func appendList(toks []string, s string) []string {
	start := -1
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ',' || s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n' {
			if start >= 0 {
				toks = append(toks, s[start:i])
				start = -1
			}
		} else if start < 0 {
			start = i
		}
	}
	return toks
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
	first, last int // physical line numbers
	text        string
	daemons     string
	clients     string
	opts        string
	hasOpts     bool
}

// scanRules reads a table's logical lines as libwrap's table_match does
// and calls fn for each rule line, returning the diagnostics of reading.
// An unterminated or over-long line stops the scan (end is its
// diagnostic) unless lenient, tcpdchk's reading, which goes on.
func scanRules(src Source, lenient bool, fn func(ruleLine)) (diags []Diagnostic, end *Diagnostic) {
	r := lineReader{data: src.Data}
	for {
		first := r.line + 1
		buf, ok := r.next()
		if !ok {
			return diags, nil
		}
		if buf[len(buf)-1] != '\n' {
			// libwrap prints the count of newlines it has read
			// (tcpd_context.line), usually the line before this one.
			d := Diagnostic{File: src.Name, Line: r.pieceLine, LibwrapLine: r.line, Severity: Error,
				Code: "missing-newline", Msg: "missing newline or line too long"}
			diags = append(diags, d)
			if !lenient {
				diags = append(diags, Diagnostic{File: src.Name, Line: r.pieceLine, LibwrapLine: r.line, Severity: Error,
					Code: "rules-ignored", Msg: "all the subsequent rules will be ignored"})
				return diags, &d
			}
		}
		if buf[0] == '#' || isBlankLine(buf) {
			continue
		}
		line := string(buf)
		daemons, rest, ok := splitAt(line, ':')
		if !ok {
			diags = append(diags, Diagnostic{File: src.Name, Line: r.line, Severity: Warning,
				Code: "missing-separator", Msg: `missing ":" separator`})
			continue
		}
		clients, opts, hasOpts := splitAt(rest, ':')
		fn(ruleLine{first: first, last: r.line, text: strings.TrimSuffix(line, "\n"),
			daemons: daemons, clients: clients, opts: opts, hasOpts: hasOpts})
	}
}

// parseTable parses one table the way libwrap's table_match reads it.
func parseTable(src Source) (*table, []Diagnostic) {
	t := &table{name: src.Name, state: src.State, err: src.Err}
	switch src.State {
	case FileMissing, FileDir:
		return t, nil
	case FileUnreadable:
		d := Diagnostic{File: src.Name, Severity: Error, Code: "cannot-open",
			Msg: fmt.Sprintf("cannot open %s: %s", src.Name, strerror(src.Err))}
		t.endErr = &d
		return t, []Diagnostic{d}
	}
	diags, end := scanRules(src, false, func(l ruleLine) {
		toks := appendList(nil, l.daemons)
		nd := len(toks)
		toks = appendList(toks, l.clients)
		t.rules = append(t.rules, rule{
			line:    int32(l.last),
			text:    l.text,
			toks:    toks[:len(toks):len(toks)],
			nd:      int32(nd),
			opts:    l.opts,
			hasOpts: l.hasOpts,
		})
	})
	t.endErr = end
	return t, diags
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
