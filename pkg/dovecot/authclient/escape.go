package authclient

import "strings"

// MaxLineLength is the longest line either side may send, LF included
// (Dovecot's AUTH_CLIENT_MAX_LINE_LENGTH).
const MaxLineLength = 16384

// TabEscape returns s with the bytes 0x01, TAB, CR and LF replaced by
// 0x01 followed by '1', 't', 'r' and 'n', and NUL by 0x01 '0', so that s
// can be one field of a line (Dovecot's str_tabescape; Dovecot's strings
// never contain NUL, its unescaper maps 0x01 '0' to NUL).
func TabEscape(s string) string {
	if !strings.ContainsAny(s, "\x00\x01\t\r\n") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case 0:
			b.WriteString("\x010")
		case 1:
			b.WriteString("\x011")
		case '\t':
			b.WriteString("\x01t")
		case '\r':
			b.WriteString("\x01r")
		case '\n':
			b.WriteString("\x01n")
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// TabUnescape reverses [TabEscape]. As in Dovecot, 0x01 followed by any
// other byte stands for that byte, and a 0x01 at the end is dropped.
func TabUnescape(s string) string {
	i := strings.IndexByte(s, 1)
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	b.WriteString(s[:i])
	for ; i < len(s); i++ {
		c := s[i]
		if c != 1 {
			b.WriteByte(c)
			continue
		}
		i++
		if i == len(s) {
			break
		}
		switch c = s[i]; c {
		case '0':
			b.WriteByte(0)
		case '1':
			b.WriteByte(1)
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		case 'n':
			b.WriteByte('\n')
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// SplitLine splits one line (without its LF) into unescaped fields, as
// Dovecot's t_strsplit_tabescaped does: an empty line has no fields.
func SplitLine(line string) []string {
	if line == "" {
		return nil
	}
	fs := strings.Split(line, "\t")
	for i, f := range fs {
		fs[i] = TabUnescape(f)
	}
	return fs
}

// JoinLine tab-escapes each field and joins them with TAB (no LF).
func JoinLine(fields ...string) string {
	var b strings.Builder
	for i, f := range fields {
		if i > 0 {
			b.WriteByte('\t')
		}
		b.WriteString(TabEscape(f))
	}
	return b.String()
}
