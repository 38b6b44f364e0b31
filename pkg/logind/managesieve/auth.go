package managesieve

import (
	"bytes"
	"unicode/utf8"

	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login/input"
)

// authWindow is the input window while AUTHENTICATE's strings are read:
// a SASL response (MaxAuthLine) with its quotes or literal header.
const authWindow = input.MaxAuthLine + 32

// authenticate runs AUTHENTICATE "<mech>" ["<initial response>"], its
// name consumed, as managesieve-login's cmd_authenticate: the mechanism
// must be a string (quoted or literal; an atom is a bad command); a
// malformed initial response is answered NO with the parser's text and
// is not a bad command; the continuations go through the session as a
// login.AuthIO.
func (s *session) authenticate(in *input.Buffer) (string, login.Ending, error) {
	in.Grow(authWindow)
	defer in.Shrink()
	mech, kind, bad, err := readString(in, false)
	if err != nil {
		return "", login.Ending{}, err
	}
	if bad == "" && (kind != strOK || len(mech) == 0) {
		if err := skipLine(in); err != nil {
			return "", login.Ending{}, err
		}
		r, end := s.badCommand()
		return r, end, nil
	}
	var ir []byte
	if bad == "" {
		ir, kind, bad, err = readString(in, true)
		if err != nil {
			return "", login.Ending{}, err
		}
		if bad == "" && kind == strNone {
			bad = "Invalid AUTHENTICATE initial response."
		}
	}
	// What follows a string is not read, as in Pigeonhole.
	if err := skipLine(in); err != nil {
		return "", login.Ending{}, err
	}
	if bad != "" {
		return "NO " + quote(bad) + "\r\n", login.Ending{}, nil
	}
	s.respErr = ""
	r, end := s.reply(s.a.Authenticate(string(mech), string(ir), kind == strOK, s, nil))
	return r, end, nil
}

// Challenge is the challenge as a quoted string.
func (s *session) Challenge(data string) string { return quote(data) + "\r\n" }

// Response reads the client's answer, a string on a line of its own;
// "*" cancels. A malformed one cancels too, its text kept for the reply
// (Dovecot fails the authentication with it: NO "Invalid AUTHENTICATE
// client response." and the like).
func (s *session) Response(in *input.Buffer) (string, bool, error) {
	in.Grow(authWindow)
	defer in.Shrink()
	resp, kind, bad, err := readString(in, true)
	if err != nil {
		return "", false, err
	}
	switch {
	case kind == strEOL:
		bad = "Received empty AUTHENTICATE client response line."
	case bad == "" && kind == strNone:
		bad = "Invalid AUTHENTICATE client response."
	}
	if err := skipLine(in); err != nil {
		return "", false, err
	}
	if bad != "" {
		s.respErr = bad
		return "", true, nil
	}
	return string(resp), string(resp) == "*", nil
}

// reply words an authentication's outcome as managesieve-login's
// auth_result does: nothing when handed off (Dovecot's managesieve says
// OK "Logged in.") or when the client is gone or was told why it is
// closed (AuthOutcome.NoReply), NO (TRYLATER) for a temporary failure, NO
// (ENCRYPT-NEEDED) before TLS with ssl = required, NO with the text
// otherwise.
func (s *session) reply(o login.AuthOutcome) (string, login.Ending) {
	if o.NoReply() {
		return "", o.End
	}
	text := quote(o.Text)
	switch o.Result {
	case login.AuthReferralSuccess:
		return "OK " + text + "\r\n", o.End
	case login.AuthTempFail:
		return "NO (TRYLATER) " + text + "\r\n", o.End
	case login.AuthSSLRequired:
		return "NO (ENCRYPT-NEEDED) " + text + "\r\n", o.End
	case login.AuthAborted:
		if s.respErr != "" {
			text = quote(s.respErr)
		}
	}
	return "NO " + text + "\r\n", o.End
}

// streamError prefixes the errors of a SASL response's quoted string.
const streamError = "Error in AUTHENTICATE response string: "

// What readString found at the input.
const (
	strOK   = iota // a string
	strEOL         // the line's end (nothing consumed)
	strNone        // something else (an atom)
)

// readString reads a ManageSieve string at the input, spaces before it
// skipped: a quoted string or a literal ({n} or {n+}, CRLF, n octets).
// stream: it is a SASL response, which Pigeonhole reads as a string
// stream (other error texts, no UTF-8 check). bad is the parser's text
// for a malformed string (the caller skips the line); err an input
// error, or ErrAuthTooLarge for a string longer than a SASL response may
// be (the client is dropped, as Dovecot does).
func readString(in *input.Buffer, stream bool) (val []byte, kind int, bad string, err error) {
	for {
		d := in.Data()
		sp := 0
		for sp < len(d) && d[sp] == ' ' {
			sp++
		}
		in.Skip(sp)
		d = d[sp:]
		if len(d) > 0 {
			if d[0] == '\r' || d[0] == '\n' {
				return nil, strEOL, "", nil
			}
			v, n, bad, more, tooLarge := parseString(d, stream)
			switch {
			case tooLarge:
				return nil, 0, "", input.ErrAuthTooLarge
			case bad != "":
				return nil, 0, bad, nil
			case n > 0:
				in.Skip(n)
				return v, strOK, "", nil
			case !more:
				return nil, strNone, "", nil
			case in.Full():
				return nil, 0, "", input.ErrAuthTooLarge
			}
		}
		if err := in.Fill(); err != nil {
			return nil, 0, "", err
		}
	}
}

// parseString parses the string at the start of d (for stream, see
// readString): its value and the bytes it takes (n > 0), or bad
// (Pigeonhole's parser texts), or more: d ends inside it, or tooLarge: a
// literal longer than a SASL response may be. None of them: d does not
// start with a string.
func parseString(d []byte, stream bool) (v []byte, n int, bad string, more, tooLarge bool) {
	switch d[0] {
	case '"':
		for i := 1; i < len(d); i++ {
			switch ch := d[i]; {
			case ch == '"':
				if !stream && !utf8.Valid(v) {
					return nil, 0, "Invalid UTF-8 character in quoted-string.", false, false
				}
				return v, i + 1, "", false, false
			case ch == 0 && !stream:
				return nil, 0, "NULs not allowed in strings", false, false
			case ch == '\\':
				if i+1 == len(d) {
					return nil, 0, "", true, false
				}
				i++
				if d[i] != '"' && d[i] != '\\' {
					if stream {
						return nil, 0, streamError + "Escaped quoted-string character is not a QUOTED-SPECIAL", false, false
					}
					return nil, 0, "Escaped quoted-string character is not a QUOTED-SPECIAL.", false, false
				}
				v = append(v, d[i])
			case ch == '\r' || ch == '\n':
				if stream {
					return nil, 0, streamError + "Quoted string contains an invalid character", false, false
				}
				return nil, 0, "String contains invalid character.", false, false
			default:
				v = append(v, ch)
			}
		}
		return nil, 0, "", true, false
	case '{':
		size, nonsync := 0, false
		i := 1
		for ; i < len(d) && d[i] != '}'; i++ {
			switch {
			case nonsync:
				return nil, 0, "Expecting '}' after '+'", false, false
			case d[i] == '+':
				nonsync = true
			case d[i] < '0' || d[i] > '9':
				return nil, 0, "Invalid literal size", false, false
			default:
				if size = size*10 + int(d[i]-'0'); size > input.MaxAuthLine {
					return nil, 0, "", false, true
				}
			}
		}
		if i == len(d) {
			return nil, 0, "", true, false
		}
		i++
		if i < len(d) && d[i] == '\r' {
			i++
		}
		if i == len(d) {
			return nil, 0, "", true, false
		}
		if d[i] != '\n' {
			return nil, 0, "Missing LF after literal size", false, false
		}
		i++
		if len(d)-i < size {
			return nil, 0, "", true, false
		}
		return d[i : i+size], i + size, "", false, false
	}
	return nil, 0, "", false, false
}

// skipLine consumes the input through the next LF.
func skipLine(in *input.Buffer) error {
	for {
		if i := bytes.IndexByte(in.Data(), '\n'); i >= 0 {
			in.Skip(i + 1)
			return nil
		}
		in.Skip(len(in.Data()))
		if err := in.Fill(); err != nil {
			return err
		}
	}
}

// quoted parses a line's quoted or literal string argument (NOOP's tag)
// and returns what follows it.
func quoted(args string) (string, string, bool) {
	if args == "" {
		return "", "", false
	}
	v, n, bad, _, _ := parseString([]byte(args), false)
	if bad != "" || n == 0 {
		return "", "", false
	}
	return string(v), args[n:], true
}
