// Package ctext holds the C library's text semantics that libwrap's
// behaviour rests on, for the C locale: the ctype classes, strcasecmp
// equality, sscanf's one-number conversions, and libwrap's own chop_string,
// split_at and strtok list splitting. Nothing here folds or classifies
// beyond ASCII, as glibc does not in the C locale.
package ctext

// IsDigit is C's isdigit.
func IsDigit(c byte) bool { return c >= '0' && c <= '9' }

// Lower is C's tolower in the C locale: only ASCII letters change.
func Lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// IsSpace is C's isspace in the C locale.
func IsSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

// EqualFold is strcasecmp(3) equality in the C locale: only ASCII
// letters fold.
func EqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if Lower(a[i]) != Lower(b[i]) {
			return false
		}
	}
	return true
}

// Chop trims C isspace characters at both ends (libwrap chop_string).
func Chop(s string) string {
	i, j := 0, len(s)
	for i < j && IsSpace(s[i]) {
		i++
	}
	for j > i && IsSpace(s[j-1]) {
		j--
	}
	return s[i:j]
}

// ScanNumber reads what sscanf("%d%c"), ("%o%c") and ("%u%c") accept
// with exactly one conversion: optional blanks, an optional sign, at least
// one digit of the base, and nothing after. The magnitude saturates at
// 2^40, far beyond any value the callers accept.
func ScanNumber(s string, base uint64) (neg bool, mag uint64, ok bool) {
	i := 0
	for i < len(s) && IsSpace(s[i]) {
		i++
	}
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		neg = s[i] == '-'
		i++
	}
	start := i
	for ; i < len(s) && IsDigit(s[i]) && uint64(s[i]-'0') < base; i++ {
		mag = min(mag*base+uint64(s[i]-'0'), 1<<40)
	}
	return neg, mag, i > start && i == len(s)
}

// ScanInt is sscanf("%d%c") == 1: optional blanks and sign, decimal
// digits, nothing after.
func ScanInt(s string) (int, bool) {
	neg, mag, ok := ScanNumber(s, 10)
	if !ok {
		return 0, false
	}
	n := int(min(mag, 1<<30))
	if neg {
		n = -n
	}
	return n, true
}

// ScanOctal is sscanf("%o%c") == 1 (the value as an unsigned 32-bit int).
func ScanOctal(s string) (uint32, bool) {
	neg, mag, ok := ScanNumber(s, 8)
	if !ok {
		return 0, false
	}
	n := uint32(mag)
	if mag > 0xffffffff {
		n = 0xffffffff
	}
	if neg {
		n = -n
	}
	return n, true
}

// SplitAt finds the first delim outside brackets, as libwrap's split_at
// (used for the ":" between fields, "/" in net/mask, "." in severity and
// the newline of banner lines): "[" increments and "]" decrements a depth
// counter, and delim only splits at depth zero. It returns the text before
// and after delim and whether there was one; without one, before is s.
func SplitAt(s string, delim byte) (before, after string, ok bool) {
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

// SplitAtFrom1 splits tok at its first unbracketed delim searched from
// the second character (libwrap's split_at(tok + 1, '@')).
func SplitAtFrom1(tok string, delim byte) (before, after string, ok bool) {
	if len(tok) < 2 {
		return tok, "", false
	}
	b, a, ok := SplitAt(tok[1:], delim)
	if !ok {
		return tok, "", false
	}
	return tok[:1] + b, a, true
}

// AppendList splits a daemon or client list into tokens at runs of space,
// TAB, CR, LF and comma (strtok with hosts_access.c's separators) and
// appends them to toks.
func AppendList(toks []string, s string) []string {
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
