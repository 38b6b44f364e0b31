package master

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// step sends send (as is, nothing appended) and reads as many lines as
// want has ("EOF": the server closed the connection).
type step struct {
	send string
	want []string
}

// converse runs steps on c, stopping at the first difference.
func converse(t *testing.T, c *tclient, steps []step) {
	t.Helper()
	for i, s := range steps {
		if s.send != "" {
			c.c.Write([]byte(s.send))
		}
		got := make([]string, len(s.want))
		for j := range got {
			got[j] = c.line()
		}
		if d := cmp.Diff(s.want, got); d != "" {
			sent := s.send
			if len(sent) > 60 {
				sent = sent[:60] + "..."
			}
			t.Fatalf("step %d, sent %q: (-want +got)\n%s", i, sent, d)
		}
	}
}

// converseIMAP runs steps on a new IMAP connection to l; unless the
// server has closed the connection, a NOOP ends them, to show that the
// connection is in step (nothing left of a literal or of a line).
func converseIMAP(t *testing.T, l *lab, steps []step) {
	t.Helper()
	c := l.dial("")
	c.line()
	converse(t, c, steps)
	if last := steps[len(steps)-1].want; last[len(last)-1] != "EOF" {
		converse(t, c, []step{{"z NOOP\r\n", []string{"z OK NOOP completed."}}})
	}
}

const (
	badCommand  = "* BAD Error in IMAP command received by server."
	tooManyBad  = "* BYE Too many invalid IMAP commands."
	inputFull   = "* BYE Input buffer full, aborting"
	unavailable = " NO [UNAVAILABLE] Authentication is not available yet."
)

// TestIMAPCommands: literals, argument syntax, limits and tags over real
// connections. Every expected line but our LOGIN/AUTHENTICATE answer
// (NO [UNAVAILABLE]: no authentication yet) and our "* ID NIL" is what
// Dovecot 2.3.19.1's imap-login sent for the same bytes.
func TestIMAPCommands(t *testing.T) {
	x := func(n int) string { return strings.Repeat("x", n) }
	bad := func(tag string) string { return tag + " BAD Error in IMAP command received by server." }
	l := startLab(t, "imap-login", "", "service_count = 0\nprocess_min_avail = 1")
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"synchronizing literal: + OK, then the octets", []step{
			{"a LOGIN {5}\r\n", []string{"+ OK"}},
			{"bench {9+}\r\nbenchpass\r\n", []string{"a" + unavailable}},
		}},
		{"LITERAL+: no continuation, the password is not a command", []step{
			{"a LOGIN user {4+}\r\npass\r\nb NOOP\r\n", []string{"a" + unavailable, "b OK NOOP completed."}},
		}},
		// The tester's input: the literal "x LOGOUT\r" is data (not run),
		// the LF ends the command inside its list, ")" is an invalid tag.
		// "Missing ')'" is not a bad command, ")" is: the third is b.
		{"literal across the line end", []step{
			{"a ID ({4+}\r\nname {9+}\r\nx LOGOUT\r\n)\r\n", []string{"a BAD Missing ')'", badCommand}},
			{"b BOGUS\r\n", []string{bad("b")}},
			{"c BOGUS\r\n", []string{tooManyBad, "EOF"}},
		}},
		{"unknown command: its literal is read, then it is bad", []step{
			{"a BOGUS {3}\r\n", []string{"+ OK"}},
			{"abc\r\n", []string{bad("a")}},
		}},
		{"literal in a list, bare LF", []step{
			{"a NOOP ({3}\n", []string{"+ OK"}},
			{"abc)\n", []string{"a OK NOOP completed."}},
		}},
		{"literal of 1026 octets (the input buffer)", []step{
			{"a NOOP {1026+}\r\n" + x(1026) + "\r\n", []string{"a OK NOOP completed."}},
		}},
		{"command of 2 KB in two literals", []step{
			{"a LOGIN {1000+}\r\n" + x(1000) + " {1000+}\r\n" + x(1000) + "\r\n", []string{"a" + unavailable}},
		}},
		{"literal of 1027 octets", []step{
			{"a NOOP {1027+}\r\n" + x(1027) + "\r\n", []string{inputFull, "EOF"}},
		}},
		{"synchronizing literal of 2000 octets", []step{
			{"a LOGIN bench {2000}\r\n", []string{"+ OK"}},
			{x(2000) + "\r\n", []string{inputFull, "EOF"}},
		}},
		{"LITERAL+ of 2000 octets", []step{
			{"a LOGIN bench {2000+}\r\n" + x(2000) + "\r\n", []string{inputFull, "EOF"}},
		}},
		{"literal of 4294967296 octets: no + OK", []step{
			{"a LOGIN bench {4294967296}\r\n", []string{"* BYE Literal size too large", "EOF"}},
		}},
		{"literals over the command's 8192 bytes", []step{
			{"a NOOP" + strings.Repeat(" {1000+}\r\n"+x(1000), 9) + "\r\n", []string{"* BYE Literal size too large", "EOF"}},
		}},
		{"literal syntax errors do not count as bad commands", []step{
			{"a LOGIN bench {-1}\r\n", []string{"a BAD Invalid literal size"}},
			{"b NOOP {4+x}\r\n", []string{"b BAD Expecting '}' after '+'"}},
			{"c NOOP {4}x\r\n", []string{"+ OK", "c BAD Missing LF after literal size"}},
			{"d NOOP ~{3}\r\n", []string{"d BAD literal8 not allowed here"}},
			{"e BOGUS\r\nf BOGUS\r\n", []string{bad("e"), bad("f")}},
		}},
		{"argument errors", []step{
			{"a NOOP \"abc\r\n", []string{`a BAD Missing '"'`}},
			{"b NOOP \"a\x00b\"\r\n", []string{"b BAD NULs not allowed in strings"}},
			{"c NOOP a\x01b\r\n", []string{"c BAD Invalid characters in atom"}},
			{"d NOOP \xc3\xa9\r\n", []string{"d BAD 8bit data in atom"}},
			{"e NOOP (a) (b)\r\n", []string{"e BAD Too many '('"}},
			{"f NOOP x)\r\n", []string{"f BAD Unexpected ')'"}},
			{"g NOOP\rh NOOP\r\n", []string{"g BAD CR sent without LF"}},
			{"h NOOP a%b]c \"q\\\"\" (x {0+}\r\n) NIL\r\n", []string{"h OK NOOP completed."}},
		}},
		{"command of 1.2 KB in atoms", []step{
			{"a NOOP" + strings.Repeat(" x", 600) + "\r\n", []string{"a OK NOOP completed."}},
		}},
		{"command over 8192 bytes", []step{
			{"a NOOP" + strings.Repeat(" x", 5000) + "\r\n", []string{"a BAD IMAP command line too large", inputFull, "EOF"}},
		}},
		{"ID: parameters checked, not counted, the rest of the line skipped", []step{
			{"a ID (name \"x\")\r\nb ID (\"name\" x)\r\nc ID x\r\n", []string{"a BAD Invalid ID parameters", "b BAD Invalid ID parameters", "c BAD Invalid ID parameters"}},
			{"d ID (\"name\" \"x\") {5}\r\n", []string{"* ID NIL", "d OK ID completed."}},
			{"e ID ({4}\r\n", []string{"+ OK"}},
			{"name {1}\r\n", []string{"+ OK"}},
			{"x)\r\n", []string{"* ID NIL", "e OK ID completed."}},
		}},
		{"LOGIN: two astrings, else a bad command", []step{
			{"a LOGIN\r\nb LOGIN x\r\n", []string{bad("a"), bad("b")}},
			{"c LOGIN NIL \"p\"\r\n", []string{"c" + unavailable}},
			{"d LOGIN x y z\r\n", []string{tooManyBad, "EOF"}},
		}},
		{"LOGIN as the tag: explained, not counted", []step{
			{"LOGIN bench pass\r\nlogin bench\r\n", []string{
				"LOGIN BAD First parameter in line is IMAP's command tag, not the command name. Add that before the command, like: a login user pass",
				"login BAD First parameter in line is IMAP's command tag, not the command name. Add that before the command, like: a login user pass"}},
			{"a BOGUS\r\nb BOGUS\r\n", []string{bad("a"), bad("b")}},
		}},
		// Dovecot answers these with its authentication results ("NO
		// [ALERT] Unsupported authentication mechanism.", "BAD Invalid
		// base64 data in initial response"); the reading is the same.
		{"AUTHENTICATE takes no literals", []step{
			{"a AUTHENTICATE PLAIN {3}\r\n", []string{"a" + unavailable}},
			{"abc\r\n", []string{bad("abc")}},
			{"b AUTHENTICATE\r\n", []string{bad("b")}},
		}},
		{"AUTHENTICATE line of 8 KB", []step{
			{"a AUTHENTICATE XOAUTH2 " + x(8000) + "\r\n", []string{"a" + unavailable}},
		}},
		{"AUTHENTICATE line over 8 KB: closed without a reply", []step{
			{"a AUTHENTICATE XOAUTH2 " + x(9000) + "\r\n", []string{"EOF"}},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { converseIMAP(t, l, tc.steps) })
	}
}

// TestIMAPTags: an invalid tag gets "* BAD Error in IMAP command
// received by server." (a bad command), its line is skipped unparsed
// (no "+ OK" for a literal in it), and it is never echoed; valid tags
// are. As Dovecot 2.3.19.1, except DEL (0x7f), which Dovecot accepts and
// echoes and loginsvc refuses (RFC 3501: a CTL).
func TestIMAPTags(t *testing.T) {
	l := startLab(t, "imap-login", "", "service_count = 0\nprocess_min_avail = 1")
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"+", []step{{"+ NOOP\r\n", []string{badCommand}}}},
		{"TAB", []step{{"a\tb NOOP\r\n", []string{badCommand}}}},
		{"NUL", []step{{"a\x00b NOOP\r\n", []string{badCommand}}}},
		{"0xff", []step{{"c\xffd NOOP\r\n", []string{badCommand}}}},
		{"UTF-8", []step{{"\xc3\xa9 NOOP\r\n", []string{badCommand}}}},
		{"DEL", []step{{"a\x7fb NOOP\r\n", []string{badCommand}}}},
		{"]", []step{{"a]b NOOP\r\n", []string{badCommand}}}},
		{"127 bytes", []step{{strings.Repeat("t", 127) + " NOOP\r\n", []string{badCommand}}}},
		{"empty line", []step{{"\r\n", []string{badCommand}}}},
		{"empty tag", []step{{" NOOP\r\n", []string{badCommand}}}},
		{"the line is skipped, its literal not read", []step{
			{"+ NOOP {3}\r\n", []string{badCommand}},
			{"abc\r\n", []string{"abc BAD Error in IMAP command received by server."}},
		}},
		{"invalid tags count", []step{{"+ NOOP\r\n(\r\n*\r\n", []string{badCommand, badCommand, tooManyBad, "EOF"}}}},
		{"valid tags are echoed", []step{{"a/b NOOP\r\na[b NOOP\r\na&b!#$'-.:;<=>?@^_`|~ NOOP\r\n" + strings.Repeat("t", 126) + " NOOP\r\n", []string{
			"a/b OK NOOP completed.", "a[b OK NOOP completed.", "a&b!#$'-.:;<=>?@^_`|~ OK NOOP completed.", strings.Repeat("t", 126) + " OK NOOP completed."}}}},
	} {
		t.Run(tc.name, func(t *testing.T) { converseIMAP(t, l, tc.steps) })
	}
}

// TestIMAPLiteralDeadline: the absolute pre-login deadline also ends a
// client that leaves a literal unfinished.
func TestIMAPLiteralDeadline(t *testing.T) {
	l := startLab(t, "imap-login", "login_prelogin_timeout = 1s", "service_count = 0\nprocess_min_avail = 1")
	for _, tc := range []struct{ name, send, cont string }{
		{"synchronizing, no octets", "a LOGIN {5}\r\n", "+ OK"},
		{"LITERAL+, some octets", "a LOGIN bench {9+}\r\nbench", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := l.dial("")
			start := time.Now()
			c.line()
			c.c.Write([]byte(tc.send))
			want := []string{"* BYE Disconnected for inactivity.", "EOF"}
			if tc.cont != "" {
				want = append([]string{tc.cont}, want...)
			}
			converse(t, c, []step{{"", want}})
			if e := time.Since(start); e > 1900*time.Millisecond {
				t.Errorf("closed %v after connecting, the deadline is 1s", e)
			}
		})
	}
}

// TestPOP3ControlBytes: POP3 never echoes what the client sent; control
// bytes make unknown commands (3 in a row end the session). Expected
// lines as Dovecot 2.3.19.1's pop3-login, but USER (Dovecot: "+OK"; no
// authentication here).
func TestPOP3ControlBytes(t *testing.T) {
	l := startLab(t, "pop3-login", "", "service_count = 0\nprocess_min_avail = 1")
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"NUL, TAB, SOH", []step{
			{"QU\x00IT\r\n\tQUIT\r\n", []string{"-ERR Unknown command.", "-ERR Unknown command."}},
			{"quit\x01\r\n", []string{"-ERR Unknown command.", "-ERR Too many invalid bad commands.", "EOF"}},
		}},
		{"8-bit", []step{
			{"\xff\xfe\r\nQUITTTTTTTTTTT\r\nUSER a\x00b\r\n", []string{"-ERR Unknown command.", "-ERR Unknown command.", "-ERR [SYS/TEMP] Authentication is not available yet."}},
			{"quit extra\r\n", []string{"+OK Logging out", "EOF"}},
		}},
		{"line of 2 KB", []step{{"USER " + strings.Repeat("x", 2000) + "\r\n", []string{"-ERR Input buffer full, aborting", "EOF"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := l.dial("")
			c.line()
			converse(t, c, tc.steps)
		})
	}
}
