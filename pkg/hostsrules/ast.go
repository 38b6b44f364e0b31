package hostsrules

import (
	"strings"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules/internal/xgets"
)

// Rule is one rule of a table as written, for tools such as linters and
// explainers: "daemon_list : client_list [ : options ]" (hosts_access(5)).
type Rule struct {
	// File is the table's name; FirstLine and Line are the physical lines
	// where the logical line starts and ends (they differ for backslash
	// continuations). Line is the number libwrap reports.
	File      string `json:"file"`
	FirstLine int    `json:"first_line"`
	Line      int    `json:"line"`
	// Text is the logical line without its newline.
	Text string `json:"text"`
	// Daemons and Clients are the list tokens, with EXCEPT kept as a token.
	Daemons []Token `json:"daemons"`
	Clients []Token `json:"clients"`
	// HasOptions says whether a second ":" made an options field exist
	// (even an empty one, which libwrap rejects when the rule matches).
	HasOptions bool `json:"has_options"`
	// Options is the options field without the final newline; OptionsCol
	// is its 1-based column in Text.
	Options    string `json:"options,omitempty"`
	OptionsCol int    `json:"options_col,omitempty"`
}

// Token is one list element with its 1-based column in the logical line.
type Token struct {
	Text string `json:"text"`
	Col  int    `json:"col"`
}

// ParseRules reads a table and returns its rules and the diagnostics of
// reading it. With lenient false it reads exactly as hosts_access does
// (the scan stops at an unterminated or over-long line); with lenient true
// it reads as tcpdchk(8) does: such a line only gives a warning and the
// rest of the file is read too.
func ParseRules(src Source, lenient bool) ([]Rule, []Diagnostic) {
	if src.State != FileOK {
		_, d, _ := parseTable(src)
		return nil, d
	}
	var rules []Rule
	diags, _ := scanRules(src.Name, xgets.FromBytes(src.Data), lenient, func(l ruleLine) {
		rule := Rule{
			File: src.Name, FirstLine: l.first, Line: l.last, Text: l.text,
			Daemons:    tokens(l.daemons, 0),
			Clients:    tokens(l.clients, len(l.daemons)+1),
			HasOptions: l.hasOpts,
		}
		if l.hasOpts {
			rule.Options = strings.TrimSuffix(l.opts, "\n")
			rule.OptionsCol = len(l.daemons) + 1 + len(l.clients) + 1 + 1
		}
		rules = append(rules, rule)
	})
	return rules, diags
}

// tokens splits a list like ctext.AppendList and records 1-based columns, given
// the list's 0-based offset in the line.
func tokens(s string, off int) []Token {
	var out []Token
	start := -1
	for i := 0; i <= len(s); i++ {
		sep := i == len(s) || strings.IndexByte(listSeparators, s[i]) >= 0
		if sep {
			if start >= 0 {
				out = append(out, Token{Text: s[start:i], Col: off + start + 1})
				start = -1
			}
		} else if start < 0 {
			start = i
		}
	}
	return out
}
