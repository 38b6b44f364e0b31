// Package libwrapaddr holds the numeric address semantics of Debian 12's
// libwrap 7.6.q and the glibc calls it makes: inet_addr(3) (inet_aton's
// one to four parts in decimal, octal or hex), libwrap's dot_quad_addr,
// numeric IPv6 text as getaddrinfo(AI_NUMERICHOST) reads it with
// inet6_scopeid_pton's scope rules, Debian's unmapping of "::ffff:a.b.c.d"
// and masked_match for IPv4 net/mask and IPv6 [net]/len patterns.
package libwrapaddr

import (
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules/internal/ctext"
)

// InetAddr parses s as glibc's inet_addr(3) does (inet_aton: one to four
// parts, each decimal, octal with a leading 0, or hex with 0x). It returns
// ok=false for invalid text and for 255.255.255.255, inet_addr's error
// value INADDR_NONE.
func InetAddr(s string) (uint32, bool) {
	var parts [4]uint32
	n := 0
	i := 0
	for {
		if i >= len(s) || !ctext.IsDigit(s[i]) {
			return 0, false
		}
		var val uint64
		base := uint64(10)
		digit := false
		if s[i] == '0' {
			i++
			if i < len(s) && (s[i] == 'x' || s[i] == 'X') {
				base = 16
				i++
			} else {
				base = 8
				digit = true
			}
		}
		for i < len(s) {
			c := s[i]
			switch {
			case ctext.IsDigit(c):
				if base == 8 && (c == '8' || c == '9') {
					return 0, false
				}
				val = val*base + uint64(c-'0')
			case base == 16 && isHex(c):
				val = val<<4 | uint64(ctext.Lower(c)-'a'+10)
			default:
				goto endPart
			}
			if val > 0xffffffff {
				return 0, false
			}
			digit = true
			i++
		}
	endPart:
		if !digit {
			return 0, false
		}
		if i < len(s) && s[i] == '.' {
			if n > 2 || val > 0xff {
				return 0, false
			}
			parts[n] = uint32(val)
			n++
			i++
			continue
		}
		parts[n] = uint32(val)
		n++
		break
	}
	if i < len(s) && !ctext.IsSpace(s[i]) {
		return 0, false
	}
	var v uint32
	switch n {
	case 1:
		v = parts[0]
	case 2:
		if parts[1] > 0xffffff {
			return 0, false
		}
		v = parts[0]<<24 | parts[1]
	case 3:
		if parts[2] > 0xffff {
			return 0, false
		}
		v = parts[0]<<24 | parts[1]<<16 | parts[2]
	case 4:
		if parts[3] > 0xff {
			return 0, false
		}
		v = parts[0]<<24 | parts[1]<<16 | parts[2]<<8 | parts[3]
	}
	if v == 0xffffffff {
		return 0, false
	}
	return v, true
}

// DotQuad is libwrap's dot_quad_addr: exactly four runs of non-dot
// characters, accepted by inet_addr.
func DotQuad(s string) (uint32, bool) {
	runs := 0
	inRun := false
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			inRun = false
		} else if !inRun {
			inRun = true
			runs++
		}
	}
	if runs != 4 {
		return 0, false
	}
	return InetAddr(s)
}

// atoi is C's atoi: leading white space, an optional sign, then digits;
// anything after them is ignored, and no digits give 0.
func atoi(s string) int {
	i := 0
	for i < len(s) && ctext.IsSpace(s[i]) {
		i++
	}
	neg := false
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		neg = s[i] == '-'
		i++
	}
	n := 0
	for i < len(s) && ctext.IsDigit(s[i]) {
		if n < 1<<30 {
			n = n*10 + int(s[i]-'0')
		}
		i++
	}
	if neg {
		return -n
	}
	return n
}

// ParseIPv6 parses numeric IPv6 text as getaddrinfo(AF_INET6,
// AI_NUMERICHOST) would, accepting a %scope suffix only where glibc's
// inet6_scopeid_pton does (ValidScope). IPv4 text is rejected.
func ParseIPv6(s string) (netip.Addr, bool) {
	if strings.IndexByte(s, ':') < 0 {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is6() {
		return netip.Addr{}, false
	}
	if z := a.Zone(); z != "" && !ValidScope(a, z) {
		return netip.Addr{}, false
	}
	return a, true
}

// ValidScope reports whether glibc's getaddrinfo accepts the scope of a
// (inet6_scopeid_pton): the name of an interface this host has, for a
// link-local address (fe80::/10) or a node- or link-local multicast one
// (ffx1::, ffx2::); otherwise, or if there is no such interface, a decimal
// number up to 2^32-1 written with digits only. So "fe80::1%eth0" is an
// address where eth0 exists, "::1%lo" and "fe80::1%nosuch" are not (and
// never match), "::1%1" is. The verdict depends on the host's interfaces
// at the time of the check, as libwrap's does.
func ValidScope(a netip.Addr, scope string) bool {
	b := a.As16()
	linkLocal := b[0] == 0xfe && b[1]&0xc0 == 0x80
	mcLocal := b[0] == 0xff && (b[1]&0x0f == 1 || b[1]&0x0f == 2)
	if (linkLocal || mcLocal) && InterfaceExists(scope) {
		return true
	}
	if scope == "" || !ctext.IsDigit(scope[0]) {
		return false
	}
	// ParseUint refuses a sign and anything but digits (as strtoull
	// with the end check does), and numbers past 32 bits.
	_, err := strconv.ParseUint(scope, 10, 32)
	return err == nil
}

// InterfaceExists is if_nametoindex(name) != 0. Tests replace it.
var InterfaceExists = func(name string) bool {
	_, err := net.InterfaceByName(name)
	return err == nil
}

// UnmapText turns "::ffff:a.b.c.d" (any case) into "a.b.c.d" when the rest
// is a dot_quad, as Debian's string_match does for every subject string.
func UnmapText(s string) (string, bool) {
	if len(s) > 7 && ctext.EqualFold(s[:7], "::ffff:") {
		if _, ok := DotQuad(s[7:]); ok {
			return s[7:], true
		}
	}
	return s, false
}

// MaskedMatch is Debian libwrap's masked_match: the IPv4 test, then the
// IPv6 test. Invalid patterns are simply false.
func MaskedMatch(netTok, maskTok, addr string) bool {
	if maskedMatch4(netTok, maskTok, addr) {
		return true
	}
	if v4, ok := UnmapText(addr); ok {
		return maskedMatch4(netTok, maskTok, v4)
	}
	a, ok := ParseIPv6(addr)
	if !ok {
		return false
	}
	if len(netTok) < 2 || netTok[0] != '[' || netTok[len(netTok)-1] != ']' {
		return false
	}
	n, ok := ParseIPv6(netTok[1 : len(netTok)-1])
	if !ok {
		return false
	}
	bits := atoi(maskTok)
	if bits < 0 || bits > 128 {
		return false
	}
	return prefixEqual(a.WithZone("").As16(), n.WithZone("").As16(), bits)
}

func prefixEqual(a, b [16]byte, bits int) bool {
	for i := 0; bits > 0; i++ {
		m := byte(0xff)
		if bits < 8 {
			m = byte(0xff << (8 - bits))
		}
		if a[i]&m != b[i]&m {
			return false
		}
		bits -= 8
	}
	return true
}

// maskedMatch4 is the IPv4 half: addr, net and mask as dotted quads (or a
// prefix length 1..32 read with atoi), and (addr & mask) == net without
// masking net.
func maskedMatch4(netTok, maskTok, addr string) bool {
	a, ok := DotQuad(addr)
	if !ok {
		return false
	}
	n, ok := DotQuad(netTok)
	if !ok {
		return false
	}
	m, ok := mask4(maskTok)
	if !ok {
		return false
	}
	return a&m == n
}

func mask4(maskTok string) (uint32, bool) {
	if m, ok := DotQuad(maskTok); ok {
		return m, true
	}
	bits := atoi(maskTok)
	if bits < 1 || bits > 32 {
		return 0, false
	}
	return ^uint32(0) << (32 - bits), true
}

func isHex(c byte) bool {
	return ctext.IsDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}
