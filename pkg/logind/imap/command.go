package imap

import (
	"bytes"
	"strings"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login/input"
)

// The pre-login IMAP command reader: the syntax and limits of Dovecot
// 2.3's imap-login (its lib-imap parser over the 1026-byte login input
// buffer), as observed with Dovecot 2.3.19.1 (docs/loginsvc.md,
// "IMAP commands"):
//
//	command  = tag SP name [SP args] CRLF   (a bare LF ends a line too)
//	tag      = 1*126 of any byte but CTL, 8-bit, SP ( ) { % * " \ ] +
//	args     = arg *(*SP arg), at most one '(' per command (else
//	           "Too many '('")
//	arg      = atom / NIL / quoted / literal / "(" args ")"
//	literal  = "{" size ["+"] "}" CRLF octets
//
// The command is read piece by piece: each piece (tag, name, atom,
// quoted string, literal octets) must fit in the input buffer, the
// whole command in 8192 bytes (literals included). A synchronizing
// literal gets "+ OK" before its octets are read; a non-synchronizing
// one (LITERAL+) does not. A literal's octets are data, never a command.
//
// Errors in the arguments are answered "TAG BAD <text>" with Dovecot's
// texts and do not count as bad commands; the rest of the line is
// skipped. "Literal size too large" (a literal that cannot fit in the
// 8192 bytes) is fatal: "* BYE Literal size too large" and close. An
// invalid tag is "* BAD Error in IMAP command received by server."
// (counted), the line is skipped unparsed and the tag never echoed.
//
// AUTHENTICATE and ID are read as Dovecot reads them: AUTHENTICATE's
// arguments are raw words (no literals, no quoting) on a line of up to
// 8192 bytes, beyond which the client is dropped without a reply; ID's
// list is read one element at a time, checked as it goes ("Invalid ID
// parameters" for anything but string keys of up to 30 bytes and
// string or NIL values), and whatever follows the list is skipped.

const (
	// imapMaxLine is the longest command, literals included
	// (MAX_IMAP_LINE in imap-login).
	imapMaxLine = 8192
	// imapTagMaxLen is IMAP_TAG_MAX_LEN.
	imapTagMaxLen = 126
	// imapMaxAuthLine is the longest AUTHENTICATE line
	// (LOGIN_MAX_AUTH_BUF_SIZE).
	imapMaxAuthLine = 8192
	// imapIDKeyMaxLen is the longest ID key.
	imapIDKeyMaxLen = 30
	// literalSizeCap saturates a literal size being parsed (anything
	// larger is too large anyway).
	literalSizeCap = 1 << 40
)

type argKind uint8

const (
	argAtom argKind = iota + 1
	argNIL
	argString  // quoted
	argLiteral // {N} or {N+}
	argList
)

// imapArg is one parsed argument.
type imapArg struct {
	kind argKind
	str  string    // atom, string or literal value
	list []imapArg // argList
}

// astring reports whether a is an IMAP astring (LOGIN's arguments:
// Dovecot takes NIL as the atom "NIL" there).
func (a imapArg) astring() bool { return a.kind != argList }

// imapSyntaxError is an error in a command's arguments: answered "TAG
// BAD msg", or if fatal "* BYE msg" and the client is dropped.
type imapSyntaxError struct {
	msg   string
	fatal bool
}

func syntaxErr(msg string) *imapSyntaxError { return &imapSyntaxError{msg: msg} }

// imapCommand is one command as read.
type imapCommand struct {
	tag  string // "" if invalid (never echoed)
	name string
	args []imapArg
	// raw is AUTHENTICATE's arguments, the rest of the line.
	raw string
	// idInvalid: an ID command whose arguments were not an ID list.
	idInvalid bool
	// idPairs: ID's key-value pairs read before the list ended or was
	// found invalid (id.go).
	idPairs []idPair
	// err is a syntax error in the arguments (the rest of the line is
	// skipped, or the client dropped if err.fatal).
	err *imapSyntaxError
	// at is the stream offset of the command's first byte.
	at int64
}

// literalSpan is where a literal's octets were in the stream (tests).
type literalSpan struct{ start, end int64 }

// imapReader reads commands from in. cont sends the continuation of a
// synchronizing literal ("+ OK\r\n"). spans, if set, receives every
// literal's octets span (tests).
type imapReader struct {
	in    *input.Buffer
	cont  interface{ continueLiteral() error }
	spans *[]literalSpan

	line  int // bytes of the current command consumed (Dovecot's line_size)
	lists int // '(' seen in the current unit (Dovecot allows one)
}

// read reads one command. The error is an input error (end of stream, a
// deadline, input.ErrFull, input.ErrAuthTooLarge); if it comes after the
// command was read (the rest of its line did not fit in the buffer),
// cmd is returned too and ok is true: answer it, then handle the error.
func (p *imapReader) read() (cmd imapCommand, ok bool, err error) {
	p.line, p.lists = 0, 0
	cmd.at = p.in.Offset()
	tag, err := p.word()
	if err != nil {
		return cmd, false, err
	}
	if !validIMAPTag(tag) {
		return cmd, true, p.skipLine()
	}
	cmd.tag = tag
	if cmd.name, err = p.word(); err != nil {
		return cmd, false, err
	}
	switch {
	case strings.EqualFold(cmd.name, "AUTHENTICATE"):
		cmd.raw, err = p.rawLine()
		return cmd, err == nil, err
	case strings.EqualFold(cmd.name, "ID"):
		cmd.idInvalid, cmd.err, err = p.id(&cmd.idPairs)
	default:
		cmd.args, cmd.err, err = p.args()
	}
	if err != nil {
		return cmd, false, err
	}
	if cmd.err != nil && cmd.err.fatal {
		return cmd, true, nil
	}
	return cmd, true, p.skipLine()
}

// validIMAPTag reports whether tag is valid, and may be echoed: 1 to 126
// bytes of ASTRING-CHAR but '+' (RFC 3501's tag) and but ']' (which
// Dovecot refuses too). Dovecot accepts DEL (0x7f), a CTL in RFC 3501;
// loginsvc refuses it, so that no control byte is ever echoed.
func validIMAPTag(tag string) bool {
	if tag == "" || len(tag) > imapTagMaxLen {
		return false
	}
	for i := 0; i < len(tag); i++ {
		switch c := tag[i]; c {
		case '+', '(', ')', '{', ' ', '%', '*', '"', '\\', ']':
			return false
		default:
			if c < ' ' || c >= 0x7f {
				return false
			}
		}
	}
	return true
}

// word reads a tag or command name: bytes up to SP, CR or LF, consuming
// one SP after it (not CR or LF).
func (p *imapReader) word() (string, error) {
	for i := 0; ; {
		d := p.in.Data()
		if j := bytes.IndexAny(d[i:], " \r\n"); j >= 0 {
			i += j
			w := string(d[:i])
			if d[i] == ' ' {
				i++
			}
			p.consume(i)
			return w, nil
		}
		i = len(d)
		if err := p.in.Fill(); err != nil {
			return "", err
		}
	}
}

func (p *imapReader) consume(n int) {
	p.in.Skip(n)
	p.line += n
}

// skipLine consumes the rest of the line, LF included; it must fit in
// the input buffer (as in Dovecot, where it waits in the buffer).
func (p *imapReader) skipLine() error {
	for {
		if j := bytes.IndexByte(p.in.Data(), '\n'); j >= 0 {
			p.in.Skip(j + 1)
			return nil
		}
		if err := p.in.Fill(); err != nil {
			return err
		}
	}
}

// peek returns the i-th unconsumed byte, reading if needed.
func (p *imapReader) peek(i int) (byte, error) {
	if err := p.in.Need(i + 1); err != nil {
		return 0, err
	}
	return p.in.Data()[i], nil
}

type tokKind uint8

const (
	tokArg tokKind = iota
	tokOpen
	tokClose
	tokEOL // CRLF or LF, not consumed
)

// token reads the next argument, '(' or ')', or finds the end of the
// line. A syntax error is returned as serr, an input error as err.
func (p *imapReader) token() (t tokKind, a imapArg, serr *imapSyntaxError, err error) {
	for {
		d := p.in.Data()
		i := 0
		for i < len(d) && d[i] == ' ' {
			i++
		}
		p.consume(i)
		if i < len(d) {
			break
		}
		if err = p.in.Fill(); err != nil {
			return
		}
	}
	c := p.in.Data()[0]
	switch c {
	case '\r':
		var c1 byte
		if c1, err = p.peek(1); err == nil && c1 != '\n' {
			serr = syntaxErr("CR sent without LF")
		}
		return tokEOL, a, serr, err
	case '\n':
		return tokEOL, a, nil, nil
	case '(':
		if p.lists++; p.lists > 1 {
			return tokOpen, a, syntaxErr("Too many '('"), nil
		}
		p.consume(1)
		return tokOpen, a, nil, nil
	case ')':
		p.consume(1)
		return tokClose, a, nil, nil
	case '"':
		a, serr, err = p.quoted()
	case '{':
		a, serr, err = p.literal()
	case '~':
		var c1 byte
		if c1, err = p.peek(1); err == nil && c1 == '{' {
			return tokArg, a, syntaxErr("literal8 not allowed here"), nil
		}
		fallthrough
	default:
		if err == nil {
			a, serr, err = p.atom()
		}
	}
	if serr == nil && err == nil && p.line > imapMaxLine {
		serr = syntaxErr("IMAP command line too large")
	}
	return tokArg, a, serr, err
}

// atomError is Dovecot's error for byte c in an atom, "" if allowed.
func atomError(c byte) string {
	switch {
	case c >= 0x80:
		return "8bit data in atom"
	case c < ' ' || c == 0x7f || c == '(' || c == '{' || c == '"':
		return "Invalid characters in atom"
	}
	return ""
}

func (p *imapReader) atom() (imapArg, *imapSyntaxError, error) {
	for i := 0; ; {
		d := p.in.Data()
		for ; i < len(d); i++ {
			switch c := d[i]; c {
			case ' ', ')', '\r', '\n':
				a := imapArg{kind: argAtom, str: string(d[:i])}
				if strings.EqualFold(a.str, "NIL") {
					a = imapArg{kind: argNIL}
				}
				p.consume(i)
				return a, nil, nil
			default:
				if msg := atomError(c); msg != "" {
					return imapArg{}, syntaxErr(msg), nil
				}
			}
		}
		if err := p.in.Fill(); err != nil {
			return imapArg{}, nil, err
		}
	}
}

func (p *imapReader) quoted() (imapArg, *imapSyntaxError, error) {
	escaped := false
	for i := 1; ; {
		d := p.in.Data()
	scan:
		for ; i < len(d); i++ {
			switch d[i] {
			case '"':
				s := d[1:i]
				a := imapArg{kind: argString}
				if escaped {
					a.str = unescapeQuoted(s)
				} else {
					a.str = string(s)
				}
				p.consume(i + 1)
				return a, nil, nil
			case '\\':
				if i+1 == len(d) {
					break scan // the escaped byte is not here yet
				}
				escaped = true
				i++
				if d[i] == '\r' || d[i] == '\n' {
					return imapArg{}, syntaxErr(`Missing '"'`), nil
				}
				if d[i] == 0 {
					return imapArg{}, syntaxErr("NULs not allowed in strings"), nil
				}
			case '\r', '\n':
				return imapArg{}, syntaxErr(`Missing '"'`), nil
			case 0:
				return imapArg{}, syntaxErr("NULs not allowed in strings"), nil
			}
		}
		if err := p.in.Fill(); err != nil {
			return imapArg{}, nil, err
		}
	}
}

func unescapeQuoted(s []byte) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// literal reads "{N}" or "{N+}", CRLF and the N octets. The octets must
// fit in the input buffer (else input.ErrFull, after "+ OK" for a
// synchronizing literal, as in Dovecot) and in what is left of the
// command's 8192 bytes (else the fatal "Literal size too large", before
// any "+ OK").
func (p *imapReader) literal() (imapArg, *imapSyntaxError, error) {
	var size uint64
	nonsync := false
	for i := 1; ; {
		d := p.in.Data()
		for ; i < len(d); i++ {
			c := d[i]
			if c == '}' {
				p.consume(i + 1)
				return p.literalOctets(size, nonsync)
			}
			if nonsync {
				return imapArg{}, syntaxErr("Expecting '}' after '+'"), nil
			}
			if c == '+' {
				nonsync = true
				continue
			}
			if c < '0' || c > '9' {
				return imapArg{}, syntaxErr("Invalid literal size"), nil
			}
			size = min(size*10+uint64(c-'0'), literalSizeCap)
		}
		if err := p.in.Fill(); err != nil {
			return imapArg{}, nil, err
		}
	}
}

func (p *imapReader) literalOctets(size uint64, nonsync bool) (imapArg, *imapSyntaxError, error) {
	if p.line >= imapMaxLine || size > uint64(imapMaxLine-p.line) {
		return imapArg{}, &imapSyntaxError{msg: "Literal size too large", fatal: true}, nil
	}
	if !nonsync {
		if err := p.cont.continueLiteral(); err != nil {
			return imapArg{}, nil, err
		}
	}
	c, err := p.peek(0)
	if err != nil {
		return imapArg{}, nil, err
	}
	if c == '\r' {
		p.consume(1)
		if c, err = p.peek(0); err != nil {
			return imapArg{}, nil, err
		}
	}
	if c != '\n' {
		return imapArg{}, syntaxErr("Missing LF after literal size"), nil
	}
	p.consume(1)
	n := int(size)
	if err := p.in.Need(n); err != nil {
		return imapArg{}, nil, err
	}
	a := imapArg{kind: argLiteral, str: string(p.in.Data()[:n])}
	if p.spans != nil {
		*p.spans = append(*p.spans, literalSpan{p.in.Offset(), p.in.Offset() + int64(n)})
	}
	p.consume(n)
	return a, nil, nil
}

// args reads the arguments up to the end of the line (not consumed).
func (p *imapReader) args() ([]imapArg, *imapSyntaxError, error) {
	var root, list []imapArg
	inList := false
	for {
		t, a, serr, err := p.token()
		if serr != nil || err != nil {
			return nil, serr, err
		}
		switch t {
		case tokEOL:
			if inList {
				return nil, syntaxErr("Missing ')'"), nil
			}
			return root, nil, nil
		case tokOpen:
			inList, list = true, []imapArg{}
		case tokClose:
			if !inList {
				return nil, syntaxErr("Unexpected ')'"), nil
			}
			root = append(root, imapArg{kind: argList, list: list})
			inList = false
		case tokArg:
			if inList {
				list = append(list, a)
			} else {
				root = append(root, a)
			}
		}
	}
}

// id reads ID's arguments as Dovecot does: NIL (or nothing), or a list
// read one element at a time (each with its own '(' and size budget)
// whose keys are strings of at most 30 bytes and values strings or NIL.
// It stops at the first invalid element (invalid) or at the list's end;
// the rest of the line is the caller's to skip. Each key-value pair read
// is appended to pairs.
func (p *imapReader) id(pairs *[]idPair) (invalid bool, serr *imapSyntaxError, err error) {
	p.line = 0 // ID's own parser
	t, a, serr, err := p.token()
	switch {
	case serr != nil || err != nil:
		return false, serr, err
	case t == tokEOL || t == tokArg && a.kind == argNIL:
		return false, nil, nil
	case t == tokClose:
		return false, syntaxErr("Unexpected ')'"), nil
	case t != tokOpen:
		return true, nil, nil
	}
	var k string
	for key := true; ; key = !key {
		p.line, p.lists = 0, 0
		t, a, serr, err = p.token()
		if serr != nil || err != nil {
			return false, serr, err
		}
		switch t {
		case tokEOL:
			return false, syntaxErr("Missing ')'"), nil
		case tokClose:
			return false, nil, nil
		case tokOpen:
			// A list element is read whole, then refused.
			serr, err = p.listRest()
			return serr == nil && err == nil, serr, err
		}
		isString := a.kind == argString || a.kind == argLiteral
		if key && (!isString || len(a.str) > imapIDKeyMaxLen) || !key && !isString && a.kind != argNIL {
			return true, nil, nil
		}
		if key {
			k = a.str
		} else {
			*pairs = append(*pairs, idPair{k, a.str, a.kind == argNIL})
		}
	}
}

// listRest reads the rest of a list up to its ')'.
func (p *imapReader) listRest() (*imapSyntaxError, error) {
	for {
		switch t, _, serr, err := p.token(); {
		case serr != nil || err != nil:
			return serr, err
		case t == tokEOL:
			return syntaxErr("Missing ')'"), nil
		case t == tokClose:
			return nil, nil
		}
	}
}

// rawLine reads AUTHENTICATE's arguments: the rest of the line, without
// its CRLF, the whole line being at most imapMaxAuthLine bytes.
func (p *imapReader) rawLine() (string, error) {
	defer p.in.Shrink()
	for i := 0; ; {
		d := p.in.Data()
		if j := bytes.IndexByte(d[i:], '\n'); j >= 0 {
			i += j
			if p.line+i+1 > imapMaxAuthLine {
				return "", input.ErrAuthTooLarge
			}
			s := string(bytes.TrimSuffix(d[:i], []byte{'\r'}))
			p.in.Skip(i + 1)
			return s, nil
		}
		i = len(d)
		if p.line+i >= imapMaxAuthLine {
			return "", input.ErrAuthTooLarge
		}
		if p.in.Full() {
			p.in.Grow(imapMaxAuthLine)
		}
		if err := p.in.Fill(); err != nil {
			return "", err
		}
	}
}
