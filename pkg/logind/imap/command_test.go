package imap

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login/input"
)

// trickle is a connection that has received data and nothing more: each
// Read returns at most chunk bytes, then the read deadline passes
// (os.ErrDeadlineExceeded), or with eof the peer has closed (io.EOF).
type trickle struct {
	data  []byte
	chunk int
	eof   bool
	reads int
}

func (s *trickle) Read(p []byte) (int, error) {
	s.reads++
	if len(s.data) == 0 {
		if s.eof {
			return 0, io.EOF
		}
		return 0, os.ErrDeadlineExceeded
	}
	n := copy(p[:min(len(p), s.chunk)], s.data)
	s.data = s.data[n:]
	return n, nil
}

// contFunc is a continuation sender.
type contFunc func() error

func (f contFunc) continueLiteral() error { return f() }

// dumpArgs renders arguments: atoms bare, NIL, quoted strings as Go
// strings, literals as {"octets"}, lists in parentheses.
func dumpArgs(args []imapArg) string {
	var b strings.Builder
	for i, a := range args {
		if i > 0 {
			b.WriteByte(' ')
		}
		switch a.kind {
		case argAtom:
			b.WriteString(a.str)
		case argNIL:
			b.WriteString("NIL")
		case argString:
			fmt.Fprintf(&b, "%q", a.str)
		case argLiteral:
			fmt.Fprintf(&b, "{%q}", a.str)
		case argList:
			b.WriteString("(" + dumpArgs(a.list) + ")")
		}
	}
	return b.String()
}

// dumpCommand renders what the reader made of a command.
func dumpCommand(c imapCommand) string {
	if c.tag == "" {
		return "<invalid tag>"
	}
	s := c.tag + " " + c.name
	switch {
	case c.err != nil && c.err.fatal:
		return s + " BYE " + c.err.msg
	case c.err != nil:
		return s + " BAD " + c.err.msg
	case c.idInvalid:
		return s + " <invalid ID>"
	case strings.EqualFold(c.name, "AUTHENTICATE"):
		return s + fmt.Sprintf(" raw=%q", c.raw)
	case len(c.args) > 0:
		return s + " " + dumpArgs(c.args)
	}
	return s
}

// readAll runs an imapReader over src until it fails; every command, "+
// OK" continuation and the final error are in the result.
func readAll(t testing.TB, src io.Reader, spans *[]literalSpan) (out []string) {
	in := input.New(src, nil)
	p := imapReader{in: in, spans: spans, cont: contFunc(func() error { out = append(out, "+ OK"); return nil })}
	for i := 0; ; i++ {
		before := in.Offset()
		cmd, ok, err := p.read()
		if ok {
			out = append(out, dumpCommand(cmd))
			if in.Offset() == before && err == nil {
				t.Fatalf("a command read without consuming input: %q", out)
			}
		}
		if err != nil {
			return append(out, "error: "+err.Error())
		}
		if cmd.err != nil && cmd.err.fatal {
			return out
		}
		if i > 100000 {
			t.Fatalf("no end: %q", out)
		}
	}
}

// TestIMAPCommandReader: what the reader makes of commands, identical
// whether the bytes come at once, one by one or in odd pieces. The
// syntax errors and limits are Dovecot 2.3.19.1's (its replies to the
// same input, docs/loginsvc.md).
func TestIMAPCommandReader(t *testing.T) {
	x := func(n int) string { return strings.Repeat("x", n) }
	deadline := "error: " + os.ErrDeadlineExceeded.Error()
	full := "error: " + input.ErrFull.Error()
	for _, tc := range []struct {
		name string
		in   string
		want []string
	}{
		{"plain", "a NOOP\r\nb LOGOUT\r\n", []string{"a NOOP", "b LOGOUT", deadline}},
		{"bare LF", "a NOOP\nb noop x\n", []string{"a NOOP", "b noop x", deadline}},
		{"atoms, NIL, quoted", `a LOGIN user "p a\"s\\s" nil NIL` + "\r\n", []string{`a LOGIN user "p a\"s\\s" NIL NIL`, deadline}},
		{"synchronizing literal", "a LOGIN {4}\r\nuser {4}\r\npass\r\n", []string{"+ OK", "+ OK", `a LOGIN {"user"} {"pass"}`, deadline}},
		{"LITERAL+", "a LOGIN user {4+}\r\npass\r\nb NOOP\r\n", []string{`a LOGIN user {"pass"}`, "b NOOP", deadline}},
		{"literal octets are data", "a NOOP {10+}\r\nb LOGOUT\r\n\r\n", []string{`a NOOP {"b LOGOUT\r\n"}`, deadline}},
		{"literal with LF only", "a NOOP {3}\nabc\n", []string{"+ OK", `a NOOP {"abc"}`, deadline}},
		{"empty literal", "a NOOP {}\r\n\r\n", []string{"+ OK", `a NOOP {""}`, deadline}},
		{"literal in a list", "a ID ({4+}\r\nname \"x\")\r\n", []string{"a ID", deadline}},
		// The tester's input: the 9-octet literal swallows the CR, the
		// LF ends the command inside the list, ")" is a new command with
		// an invalid tag.
		{"literal across the line", "a ID ({4+}\r\nname {9+}\r\nx LOGOUT\r\n)\r\n", []string{"a ID BAD Missing ')'", "<invalid tag>", deadline}},
		{"literal of 1026 octets", "a NOOP {1026+}\r\n" + x(1026) + "\r\n", []string{"a NOOP {\"" + x(1026) + "\"}", deadline}},
		{"literal of 1027 octets", "a NOOP {1027+}\r\n" + x(1027) + "\r\n", []string{full}},
		{"2000-octet synchronizing literal", "a LOGIN u {2000}\r\n" + x(2000) + "\r\n", []string{"+ OK", full}},
		{"command of 2 KB in literals", "a NOOP {1000+}\r\n" + x(1000) + " {1000+}\r\n" + x(1000) + "\r\n", []string{"a NOOP {\"" + x(1000) + "\"} {\"" + x(1000) + "\"}", deadline}},
		{"literal over 8192", "a LOGIN u {4294967296}\r\n", []string{"a LOGIN BYE Literal size too large"}},
		{"literal over 8192 with +", "a LOGIN u {4294967296+}\r\n", []string{"a LOGIN BYE Literal size too large"}},
		{"literal past the command's 8192", "a NOOP {8180}\r\n", []string{"a NOOP BYE Literal size too large"}},
		{"literal size overflow", "a NOOP {99999999999999999999}\r\n", []string{"a NOOP BYE Literal size too large"}},
		{"nine 1000-octet literals", "a NOOP" + strings.Repeat(" {1000+}\r\n"+x(1000), 9) + "\r\n", []string{"a NOOP BYE Literal size too large"}},
		{"negative literal", "a LOGIN u {-1}\r\nb NOOP\r\n", []string{"a LOGIN BAD Invalid literal size", "b NOOP", deadline}},
		{"junk after +", "a NOOP {4+x}\r\n", []string{"a NOOP BAD Expecting '}' after '+'", deadline}},
		{"no LF after literal size", "a NOOP {4}x\r\n", []string{"+ OK", "a NOOP BAD Missing LF after literal size", deadline}},
		{"literal8", "a NOOP ~{3}\r\n", []string{"a NOOP BAD literal8 not allowed here", deadline}},
		{"tilde atom", "a NOOP ~abc\r\n", []string{"a NOOP ~abc", deadline}},
		{"literal as tag", "{4}\r\nb NOOP\r\n", []string{"<invalid tag>", "b NOOP", deadline}},
		{"literal as name", "a {5}\r\nNOOP\r\n", []string{"a {5}", "NOOP ", deadline}},
		{"invalid tag: line skipped unparsed", "+ NOOP {3}\r\nabc\r\n", []string{"<invalid tag>", "abc ", deadline}},
		{"AUTHENTICATE takes no literal", "a AUTHENTICATE PLAIN {3}\r\nabc\r\n", []string{`a AUTHENTICATE raw="PLAIN {3}"`, "abc ", deadline}},
		{"AUTHENTICATE of 8 KB", "a AUTHENTICATE PLAIN " + x(8000) + "\r\nb NOOP\r\n", []string{`a AUTHENTICATE raw="PLAIN ` + x(8000) + `"`, "b NOOP", deadline}},
		{"AUTHENTICATE over 8 KB", "a AUTHENTICATE PLAIN " + x(9000) + "\r\n", []string{"error: " + input.ErrAuthTooLarge.Error()}},
		{"atom of 2000 bytes", "a LOGIN " + x(2000) + " y\r\n", []string{full}},
		{"command of 1.2 KB in atoms", "a NOOP" + strings.Repeat(" x", 600) + "\r\n", []string{"a NOOP" + strings.Repeat(" x", 600), deadline}},
		{"command over 8192 bytes", "a NOOP" + strings.Repeat(" x", 5000) + "\r\n", []string{"a NOOP BAD IMAP command line too large", full}},
		{"quoted string errors", "a NOOP \"abc\r\nb NOOP \"a\x00b\"\r\nc NOOP \"a\\\r\n", []string{`a NOOP BAD Missing '"'`, "b NOOP BAD NULs not allowed in strings", `c NOOP BAD Missing '"'`, deadline}},
		{"atom errors", "a NOOP a\x01b\r\nb NOOP \xc3\xa9\r\nc NOOP a\"b\r\nd NOOP a(b\r\ne NOOP x\ty\r\nf NOOP a%b]c*d\\e\r\n",
			[]string{"a NOOP BAD Invalid characters in atom", "b NOOP BAD 8bit data in atom", "c NOOP BAD Invalid characters in atom", "d NOOP BAD Invalid characters in atom", "e NOOP BAD Invalid characters in atom", `f NOOP a%b]c*d\e`, deadline}},
		{"lists", "a NOOP (a \"b\") x\r\nb NOOP ()\r\nc NOOP (a) (b)\r\nd NOOP ((\r\ne NOOP (\r\nf NOOP x)\r\n",
			[]string{`a NOOP (a "b") x`, "b NOOP ()", "c NOOP BAD Too many '('", "d NOOP BAD Too many '('", "e NOOP BAD Missing ')'", "f NOOP BAD Unexpected ')'", deadline}},
		{"CR without LF", "a NOOP\rb NOOP\r\nc NOOP\r\n", []string{"a NOOP BAD CR sent without LF", "c NOOP", deadline}},
		{"ID forms", "a ID NIL {5}\r\nb ID (\"name\" \"x\") {5}\r\nc ID x {5}\r\nd ID\r\n", []string{"a ID", "b ID", "c ID <invalid ID>", "d ID", deadline}},
		{"ID keys and values", "a ID (name \"x\")\r\nb ID (\"name\" x)\r\nc ID (\"" + x(31) + "\" \"x\")\r\nd ID (\"" + x(30) + "\" NIL \"k\")\r\ne ID (\"a\" (\"b\"))\r\nf ID (\"a\" ((\"b\")))\r\n",
			[]string{"a ID <invalid ID>", "b ID <invalid ID>", "c ID <invalid ID>", "d ID", "e ID <invalid ID>", "f ID BAD Too many '('", deadline}},
		{"ID with synchronizing literals", "a ID ({4}\r\nname {1}\r\nx)\r\n", []string{"+ OK", "+ OK", "a ID", deadline}},
		{"tags", "+ NOOP\r\na\tb NOOP\r\na\x00b NOOP\r\nc\xffd NOOP\r\na]b NOOP\r\na\x7fb NOOP\r\n" + x(127) + " NOOP\r\n\r\n NOOP\r\n",
			[]string{"<invalid tag>", "<invalid tag>", "<invalid tag>", "<invalid tag>", "<invalid tag>", "<invalid tag>", "<invalid tag>", "<invalid tag>", "<invalid tag>", deadline}},
		{"odd valid tags", "a/b NOOP\r\na[b NOOP\r\na&b!#$'-.:;<=>?@^_`|~ NOOP\r\n" + x(126) + " NOOP\r\nb \r\nc  NOOP\r\n",
			[]string{"a/b NOOP", "a[b NOOP", "a&b!#$'-.:;<=>?@^_`|~ NOOP", x(126) + " NOOP", "b ", "c  NOOP", deadline}},
		{"end of stream in a literal", "a LOGIN u {4+}\r\nab", []string{deadline}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, chunk := range []int{len(tc.in) + 1, 1, 7, 1000} {
				got := readAll(t, &trickle{data: []byte(tc.in), chunk: chunk}, nil)
				if d := cmp.Diff(tc.want, got); d != "" {
					t.Errorf("%d bytes per read: (-want +got)\n%s", chunk, d)
				}
			}
		})
	}
}

// FuzzIMAPCommandReader: the reader never panics, always ends (every
// command consumes input; the stream's end is a deadline), and no
// command starts inside a literal's octets, and no invalid tag is kept.
// The first argument sets how many bytes each read returns and whether
// the stream ends in a deadline or end of stream. Seeds are in
// testdata/fuzz/FuzzIMAPCommandReader.
func FuzzIMAPCommandReader(f *testing.F) {
	f.Fuzz(func(t *testing.T, chunk byte, data []byte) {
		var spans []literalSpan
		src := &trickle{data: data, chunk: 1 + int(chunk)%64, eof: chunk&0x80 != 0}
		in := input.New(src, nil)
		p := imapReader{in: in, spans: &spans, cont: contFunc(func() error { return nil })}
		for n := 0; ; n++ {
			if n > len(data)+1 {
				t.Fatalf("%d commands from %d bytes", n, len(data))
			}
			before := in.Offset()
			cmd, ok, err := p.read()
			if ok && in.Offset() == before && err == nil {
				t.Fatalf("command %d consumed nothing", n)
			}
			for _, s := range spans {
				if cmd.at >= s.start && cmd.at < s.end {
					t.Fatalf("command at %d starts inside the literal %d-%d", cmd.at, s.start, s.end)
				}
			}
			if ok && cmd.tag != "" && !validIMAPTag(cmd.tag) {
				t.Fatalf("invalid tag %q kept", cmd.tag)
			}
			if err != nil {
				if !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, io.EOF) && !errors.Is(err, input.ErrFull) && !errors.Is(err, input.ErrAuthTooLarge) {
					t.Fatalf("error %v", err)
				}
				break
			}
			if cmd.err != nil && cmd.err.fatal {
				break
			}
		}
		if src.reads > len(data)+4 {
			t.Fatalf("%d reads for %d bytes", src.reads, len(data))
		}
	})
}
