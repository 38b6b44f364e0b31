// Package strmatch is libwrap's string_match, how a pattern token is
// compared with a daemon name, a host name, an address text or a user
// name, with Debian 12's changes (7.6.q): "*" and "?" wildcards, IPv6
// "[addr]" tokens and the unmapping of "::ffff:a.b.c.d" subjects.
package strmatch

import (
	"strings"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules/internal/ctext"
	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules/internal/libwrapaddr"
)

// unknown is the value of a name, address or user that could not be found
// (hostsrules.Unknown): KNOWN matches anything else.
const unknown = "unknown"

// Match is libwrap's string_match with Debian's IPv6, wildcard and
// mapped-address changes.
func Match(pat, s string) bool {
	s, _ = libwrapaddr.UnmapText(s)
	if strings.ContainsAny(pat, "*?") {
		return globMatch(pat, s)
	}
	if strings.HasPrefix(pat, ".") {
		n := len(s) - len(pat)
		return n > 0 && ctext.EqualFold(s[n:], pat)
	}
	if ctext.EqualFold(pat, "ALL") {
		return true
	}
	if ctext.EqualFold(pat, "KNOWN") {
		return !ctext.EqualFold(s, unknown)
	}
	if strings.HasSuffix(pat, ".") {
		return len(s) >= len(pat) && ctext.EqualFold(s[:len(pat)], pat)
	}
	if len(pat) >= 2 && pat[0] == '[' && pat[len(pat)-1] == ']' {
		pa, ok := libwrapaddr.ParseIPv6(pat[1 : len(pat)-1])
		if !ok {
			return false
		}
		sa, ok := libwrapaddr.ParseIPv6(s)
		if !ok {
			return false
		}
		return pa.WithZone("") == sa.WithZone("")
	}
	return ctext.EqualFold(pat, s)
}

// globMatch matches s against a pattern of literal characters, "*" (any
// run) and "?" (one character), case-insensitively, as Debian's
// 05_wildcard_matching patch does.
func globMatch(pat, s string) bool {
	px, sx := 0, 0
	nextPx, nextSx := -1, -1
	for px < len(pat) || sx < len(s) {
		if px < len(pat) {
			switch pat[px] {
			case '*':
				nextPx, nextSx = px, sx+1
				px++
				continue
			case '?':
				if sx < len(s) {
					px++
					sx++
					continue
				}
			default:
				if sx < len(s) && ctext.Lower(pat[px]) == ctext.Lower(s[sx]) {
					px++
					sx++
					continue
				}
			}
		}
		if nextSx > 0 && nextSx <= len(s) {
			px, sx = nextPx, nextSx
			continue
		}
		return false
	}
	return true
}
