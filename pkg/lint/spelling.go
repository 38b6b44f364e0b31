package lint

import (
	"context"
	"strings"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
	"github.com/xrash/smetrics"
)

// The words libwrap gives a meaning of their own (hosts_access(5), compared
// without regard to case), by position.
var (
	daemonWildcards = []string{"ALL", "EXCEPT"}
	clientWildcards = []string{"ALL", "KNOWN", "UNKNOWN", "LOCAL", "PARANOID", "EXCEPT"}
	// dovecotDaemons are the daemon names Dovecot's login processes send.
	dovecotDaemons = []string{"imap", "pop3", "submission", "sieve"}
)

// nearest returns the word of words closest to w (edit distance, case
// folded), if it is close enough to be a slip of the keyboard: one edit
// for words of up to five letters, two for longer ones.
func nearest(w string, words []string) (string, bool) {
	best, bestD := "", 3
	for _, c := range words {
		d := smetrics.WagnerFischer(strings.ToUpper(w), strings.ToUpper(c), 1, 1, 1)
		if d < bestD {
			best, bestD = c, d
		}
	}
	limit := 1
	if len(w) > 5 {
		limit = 2
	}
	return best, best != "" && bestD > 0 && bestD <= limit
}

// isUpperWord reports whether w is an all-capitals word of letters (the
// way wildcards are written).
func isUpperWord(w string) bool {
	if len(w) < 3 {
		return false
	}
	for i := 0; i < len(w); i++ {
		if w[i] < 'A' || w[i] > 'Z' {
			return false
		}
	}
	return true
}

// spelling reports a word in a daemon or client list that looks like a
// misspelt wildcard or (for daemons) a misspelt Dovecot daemon name: libwrap
// compares it as a literal name, so the rule quietly matches less than it
// says. It reports whether it said something (the caller then skips the
// name's DNS checks). what is "daemon" or "client".
func (l *linter) spelling(word string, p pos, what string) bool {
	wild := clientWildcards
	if what == "daemon" {
		wild = daemonWildcards
	}
	for _, w := range wild {
		if strings.EqualFold(word, w) {
			return false
		}
	}
	if what == "daemon" {
		for _, w := range dovecotDaemons {
			if strings.EqualFold(word, w) {
				return false
			}
		}
		if _, ok := dovecotNames[strings.ToLower(word)]; ok {
			return false // dovecot-daemon-name says it
		}
	}
	if strings.ContainsAny(word, ".*?/[]@:") {
		return false // an address, a pattern, a domain: not a word
	}
	for _, w := range []string{"KNOWN", "UNKNOWN", "LOCAL", "PARANOID", "FAIL"} {
		if strings.EqualFold(word, w) {
			return false // a wildcard out of place: reserved-word or fail-keyword says it
		}
	}
	if w, ok := nearest(word, wild); ok {
		l.fixf(p.file, p.line, p.col, Warning, "misspelt-wildcard", word, w,
			"%s: did you mean %s? libwrap compares %q as a literal %s name, so it is no wildcard", word, w, word, what)
		return true
	}
	// One slip from a Dovecot name; classic inetd names (imapd, ipop3d,
	// pop3d) end in "d" and are left alone.
	if what == "daemon" && len(word) >= 3 && !strings.HasSuffix(strings.ToLower(word), "d") {
		if w, ok := nearest(word, dovecotDaemons); ok && smetrics.WagnerFischer(strings.ToLower(word), w, 1, 1, 1) == 1 {
			l.fixf(p.file, p.line, p.col, Warning, "misspelt-daemon", word, w,
				"%s: did you mean %s? Dovecot's login processes send imap, pop3, submission or sieve", word, w)
			return true
		}
	}
	if isUpperWord(word) {
		l.addf(p.file, p.line, p.col, Warning, "unknown-wildcard", "the wildcards are "+strings.Join(wild, ", "),
			"%s: not a wildcard; libwrap compares it as a literal %s name", word, what)
		return true
	}
	return false
}

// DaemonNotes returns what lint would say about name as a daemon name (a
// name no Dovecot login process sends, a misspelt wildcard or Dovecot
// name), one "message (hint)" string each, for tools that take a daemon
// name on the command line (loginctl check-host). nil when lint has
// nothing to say.
func DaemonNotes(name string) []string {
	l := &linter{ctx: context.Background(), lookups: map[string]lookupResult{}}
	l.daemonToken(hostsrules.Token{Text: name, Col: 1}, pos{})
	var notes []string
	for _, d := range l.diags {
		n := d.Msg
		if d.Hint != "" {
			n += " (" + d.Hint + ")"
		}
		notes = append(notes, n)
	}
	return notes
}
