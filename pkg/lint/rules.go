package lint

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
)

// dovecotNames maps daemon names that admins write but Dovecot's login
// processes never send to the name they do send (README, "Dovecot 2.3
// configuration"; docs/dovecot-managed.md).
var dovecotNames = map[string]string{
	"imaps":             "imap",
	"imap-login":        "imap",
	"pop3s":             "pop3",
	"pop3-login":        "pop3",
	"managesieve":       "sieve",
	"managesieve-login": "sieve",
	"submission-login":  "submission",
	"submissions":       "submission",
	"dovecot":           "",
	"tcpwrap":           "",
}

// pos locates a token for diagnostics.
type pos struct {
	file      string
	line, col int
}

// rule checks one rule and reports whether it always decides when it
// matches (no aclexec), and whether it is broken beyond analysis.
func (l *linter) rule(pt *parsedTable, r *hostsrules.Rule) (decisive, broken bool) {
	line := ruleLine(r)
	at := func(col int) pos { return pos{pt.path, line, col} }
	daemons, clients := r.Daemons, r.Clients

	// "#" not in column 1.
	skip := map[int]bool{} // token columns not to check as patterns
	if len(daemons) > 0 && strings.HasPrefix(daemons[0].Text, "#") && r.Text[0] != '#' && daemons[0].Col > 1 &&
		strings.TrimLeft(r.Text[:daemons[0].Col-1], " \t\r") == "" {
		l.addf(pt.path, line, daemons[0].Col, Error, "indented-comment", "start comments in column 1",
			`"#" starts a comment only in column 1: this indented line is the rule %q`, strings.TrimSpace(r.Text))
		skip[daemons[0].Col] = true
		daemons = daemons[1:]
	}
	for _, list := range [][]hostsrules.Token{daemons, clients} {
		for i, t := range list {
			if !strings.HasPrefix(t.Text, "#") || skip[t.Col] {
				continue
			}
			words := list[i:]
			var texts []string
			sev, extra := Warning, ""
			for _, w := range words {
				skip[w.Col] = true
				texts = append(texts, w.Text)
				if strings.EqualFold(w.Text, "ALL") || strings.EqualFold(w.Text, "KNOWN") {
					sev, extra = Error, fmt.Sprintf("; %q makes the rule match everything", w.Text)
				}
			}
			l.addf(pt.path, line, t.Col, sev, "comment-in-rule", "put comments on their own line, starting in column 1",
				`"#" does not start a comment after a rule: libwrap reads %q as list items%s`, strings.Join(texts, " "), extra)
			break
		}
	}

	// An IPv6 address without brackets is cut at its first colon.
	cut, col, bare := bareIPv6(r)
	if bare {
		const msg = "IPv6 address %s without brackets: libwrap cuts the rule at its first \":\", so the rule does not mean what it says"
		if addr, length, hasLen := strings.Cut(cut, "/"); hasLen && !allDigits(length) {
			// "2001:db8::/255.255.0.0": an IPv6 net takes a prefix length.
			l.addf(pt.path, line, col, Error, "bare-ipv6", "write ["+addr+"]/LENGTH: an IPv6 net takes a prefix length (0 to 128), not a mask", msg, cut)
		} else {
			l.fixf(pt.path, line, col, Error, "bare-ipv6", cut, bracketIPv6(cut), msg, cut)
		}
		broken = true
		skip[col] = true // the piece before the cut
	}

	l.list(pt, r, daemons, "daemon", at)
	if !bare || len(clients) > 0 {
		l.list(pt, r, clients, "client", at)
	}
	for _, t := range positive(daemons) {
		if skip[t.Col] {
			continue
		}
		l.daemonToken(t, at(t.Col))
	}
	for _, t := range positive(clients) {
		if skip[t.Col] {
			continue
		}
		l.clientToken(t, at(t.Col))
	}
	for _, t := range exceptions(daemons) {
		if !skip[t.Col] {
			l.daemonToken(t, at(t.Col))
		}
	}
	for _, t := range exceptions(clients) {
		if !skip[t.Col] {
			l.clientToken(t, at(t.Col))
		}
	}
	decisive = true
	if r.HasOptions && !bare {
		decisive = l.options(pt, r, line)
	}
	return decisive, broken
}

// positive returns the tokens before the first EXCEPT.
func positive(list []hostsrules.Token) []hostsrules.Token {
	for i, t := range list {
		if isExcept(t.Text) {
			return list[:i]
		}
	}
	return list
}

// exceptions returns the tokens after the first EXCEPT, without EXCEPTs.
func exceptions(list []hostsrules.Token) []hostsrules.Token {
	var out []hostsrules.Token
	seen := false
	for _, t := range list {
		if isExcept(t.Text) {
			seen = true
			continue
		}
		if seen {
			out = append(out, t)
		}
	}
	return out
}

func isExcept(s string) bool { return strings.EqualFold(s, "EXCEPT") }

// list checks the shape of a daemon or client list.
func (l *linter) list(pt *parsedTable, r *hostsrules.Rule, list []hostsrules.Token, what string, at func(int) pos) {
	if len(list) == 0 {
		p := at(0)
		l.addf(p.file, p.line, 0, Error, "empty-list", "",
			"%s list is empty: the rule never matches", what)
		return
	}
	if isExcept(list[0].Text) {
		p := at(list[0].Col)
		l.addf(p.file, p.line, p.col, Error, "leading-except", "",
			"%s list starts with EXCEPT: the rule never matches", what)
		return
	}
	if last := list[len(list)-1]; isExcept(last.Text) {
		p := at(last.Col)
		l.addf(p.file, p.line, p.col, Warning, "trailing-except", "remove the EXCEPT, or add what it should exclude",
			"%s list ends in EXCEPT: the EXCEPT excludes nothing", what)
	}
}

func (l *linter) daemonToken(t hostsrules.Token, p pos) {
	name, host, hasHost := hostsrules.SplitAtFrom1(t.Text, '@')
	l.nameChecks(name, p, "daemon")
	l.spelling(name, p, "daemon")
	if to, ok := dovecotNames[strings.ToLower(name)]; ok {
		hint := "use " + to
		if to == "" {
			hint = "use imap, pop3, submission or sieve"
		}
		l.addf(p.file, p.line, p.col, Warning, "dovecot-daemon-name", hint,
			"daemon name %q: no Dovecot login process sends it (they send the protocol name: imap, pop3, submission, sieve), so this never matches a Dovecot check", name)
	}
	if hasHost {
		l.hostToken(host, pos{p.file, p.line, p.col + len(name) + 1}, 0)
	}
}

// nameChecks are tcpdchk's checks of a daemon or user name.
func (l *linter) nameChecks(name string, p pos, what string) {
	code := what + "-name"
	switch {
	case strings.EqualFold(name, "FAIL"):
		l.addf(p.file, p.line, p.col, Error, "fail-keyword", "use EXCEPT or a deny option",
			"FAIL is no longer recognized: it is compared as a literal name")
		return
	case strings.HasPrefix(name, "@"):
		l.addf(p.file, p.line, p.col, Warning, code, "", `%s: %s name begins with "@" (netgroups are only host patterns)`, name, what)
	case strings.HasPrefix(name, "/"):
		l.addf(p.file, p.line, p.col, Warning, code, "", `%s: %s name begins with "/"`, name, what)
	case strings.HasPrefix(name, ".") && !hasWildcard(name):
		l.addf(p.file, p.line, p.col, Warning, code, "", "%s: %s name begins with dot", name, what)
	case strings.HasSuffix(name, ".") && !hasWildcard(name):
		l.addf(p.file, p.line, p.col, Warning, code, "", "%s: %s name ends in dot", name, what)
	}
	reserved := []string{"KNOWN", "LOCAL", "PARANOID"}
	if what == "user" {
		reserved = reserved[1:]
	}
	for _, w := range reserved {
		if strings.EqualFold(name, w) {
			l.addf(p.file, p.line, p.col, Warning, "reserved-word", "",
				"%s: %s name may be reserved word (%s is literal in this position)", name, what, w)
		}
	}
}

func hasWildcard(s string) bool { return strings.ContainsAny(s, "*?") }

func (l *linter) clientToken(t hostsrules.Token, p pos) {
	user, host, hasUser := hostsrules.SplitAtFrom1(t.Text, '@')
	if !hasUser {
		l.hostToken(t.Text, p, 0)
		return
	}
	if !strings.EqualFold(user, "ALL") {
		l.nameChecks(user, p, "user")
	}
	if host == "" {
		l.fixf(p.file, p.line, p.col, Error, "empty-host", t.Text, user+"@ALL",
			"%s has an empty host part: it never matches", t.Text)
		return
	}
	l.hostToken(host, pos{p.file, p.line, p.col + len(user) + 1}, 0)
}

// bareIPv6 finds an IPv6 address written without brackets in the client
// list, which libwrap's field splitter cuts at its first colon. It returns
// the address as written and its column.
func bareIPv6(r *hostsrules.Rule) (string, int, bool) {
	if !r.HasOptions {
		return "", 0, false
	}
	// The client field ends at OptionsCol-2 (the colon before options).
	end := r.OptionsCol - 2 // 0-based index of that colon
	if end < 0 || end > len(r.Text) {
		return "", 0, false
	}
	start := end
	for start > 0 && isAddrChar(r.Text[start-1]) {
		start--
	}
	stop := end + 1
	scoped := false // after "%": an interface name or number
	for stop < len(r.Text) {
		c := r.Text[stop]
		if !(isAddrChar(c) || c == ':' || c == '/' || c == '%' || c == '.' || scoped && isScopeChar(c)) {
			break
		}
		scoped = scoped || c == '%'
		stop++
	}
	cand := r.Text[start:stop]
	s := cand
	if i := strings.IndexByte(s, '/'); i >= 0 {
		s = s[:i]
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is6() {
		return "", 0, false
	}
	return cand, start + 1, true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigitByte(s[i]) {
			return false
		}
	}
	return s != ""
}

func isDigitByte(c byte) bool { return c >= '0' && c <= '9' }

// bracketIPv6 writes an IPv6 address, or an IPv6 net with its prefix
// length, as libwrap reads it: "2001:db8::/32" -> "[2001:db8::]/32".
func bracketIPv6(s string) string {
	addr, length, hasLen := strings.Cut(s, "/")
	if hasLen {
		return "[" + addr + "]/" + length
	}
	return "[" + addr + "]"
}

// isScopeChar: a character of an interface name after "%".
func isScopeChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

func isAddrChar(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == '.'
}
