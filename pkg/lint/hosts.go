package lint

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"strconv"
	"strings"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
)

// maxFileDepth limits nested /file lists.
const maxFileDepth = 16

// hostToken checks one host pattern (hosts_access(5)). depth counts /file
// nesting; seen guards against loops through l.fileStack.
func (l *linter) hostToken(tok string, p pos, depth int) {
	switch {
	case tok == "" || tok == "\\":
		return
	case strings.HasPrefix(tok, "@"):
		if l.opts.Netgroups != nil && !l.opts.Netgroups.Exists(tok[1:]) {
			l.addf(p.file, p.line, p.col, Warning, "unknown-netgroup", "",
				"%s: unknown or empty netgroup (the pattern matches nothing)", tok[1:])
		}
		return
	case strings.HasPrefix(tok, "/"):
		l.fileList(tok, p, depth)
		return
	}
	for _, kw := range []string{"ALL", "KNOWN", "UNKNOWN", "LOCAL", "PARANOID"} {
		if strings.EqualFold(tok, kw) {
			return
		}
	}
	if strings.EqualFold(tok, "FAIL") {
		l.addf(p.file, p.line, p.col, Error, "fail-keyword", "use EXCEPT or a deny option",
			"FAIL is no longer recognized: it is compared as a literal host name")
		return
	}
	if before, _, ok := hostsrules.SplitAt(tok, '/'); ok {
		i := len(before)
		l.netmask(tok, tok[:i], tok[i+1:], p)
		return
	}
	if strings.HasPrefix(tok, "[") {
		l.bracketed(tok, p)
		return
	}
	if hasWildcard(tok) {
		return
	}
	if isNumeric(tok) {
		l.numeric(tok, p)
		return
	}
	// A name.
	if strings.HasSuffix(tok, ".") {
		l.addf(p.file, p.line, p.col, Warning, "name-ends-in-dot",
			"drop the final dot; a name in DNS form never equals the name libwrap compares",
			"%s: domain or host name ends in dot (a prefix pattern: it matches names that begin with %q)", tok, tok)
		return
	}
	if strings.HasPrefix(tok, ".") {
		return // domain suffix
	}
	if l.spelling(tok, p, "client") {
		return
	}
	l.checkName(tok, p)
}

// isNumeric reports whether s has only digits and dots (libwrap compares
// such patterns with the address only).
func isNumeric(s string) bool {
	for i := 0; i < len(s); i++ {
		if (s[i] < '0' || s[i] > '9') && s[i] != '.' {
			return false
		}
	}
	return true
}

// numeric checks an address, a prefix "a.b." or a suffix ".d".
func (l *linter) numeric(tok string, p pos) {
	if strings.HasPrefix(tok, ".") {
		l.addf(p.file, p.line, p.col, Warning, "numeric-begins-with-dot", "",
			"%s: network number begins with dot (it matches addresses ending in %q)", tok, tok)
		return
	}
	parts := strings.Split(strings.TrimSuffix(tok, "."), ".")
	prefix := strings.HasSuffix(tok, ".")
	for _, part := range parts {
		n, err := strconv.Atoi(part)
		if part == "" || err != nil || n > 255 || (len(part) > 1 && part[0] == '0') {
			l.addf(p.file, p.line, p.col, Error, "bad-address", "write each part in decimal, 0 to 255, without leading zeros",
				"%s is not an address as libwrap prints addresses: it never matches", tok)
			return
		}
	}
	switch {
	case prefix && len(parts) > 3:
		l.addFix(Diagnostic{File: p.file, Line: p.line, Col: p.col, Severity: Error, Code: "bad-address",
			Hint: "remove the final dot", Msg: fmt.Sprintf("%s has four parts and a final dot: it never matches", tok)},
			tok, strings.TrimSuffix(tok, "."))
	case !prefix && len(parts) < 4:
		l.addFix(Diagnostic{File: p.file, Line: p.line, Col: p.col, Severity: Error, Code: "incomplete-address",
			Hint: "write " + tok + ". to match the network", Msg: fmt.Sprintf("%s is compared with the whole client address and never matches", tok)},
			tok, tok+".")
	case !prefix && l.opts.ReverseLookups && l.opts.Resolver != nil:
		a, err := netip.ParseAddr(tok)
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(l.ctx, l.opts.LookupTimeout)
		defer cancel()
		if _, err := l.opts.Resolver.LookupAddr(ctx, a); err != nil {
			l.addf(p.file, p.line, p.col, Info, "no-reverse-name", "",
				"host address %s->name lookup failed", tok)
		}
	}
}

// bracketed checks "[ipv6]".
func (l *linter) bracketed(tok string, p pos) {
	inner, ok := strings.CutSuffix(strings.TrimPrefix(tok, "["), "]")
	a, err := netip.ParseAddr(inner)
	if addr, _, net := strings.Cut(inner, "/"); ok && net {
		if a6, err := netip.ParseAddr(addr); err == nil && a6.Is6() {
			l.fixf(p.file, p.line, p.col, Error, "bad-ipv6", tok, bracketIPv6(inner),
				"%s: the prefix length goes after the brackets; written inside them the pattern never matches", tok)
			return
		}
	}
	if ok && err == nil && a.Is4() {
		l.fixf(p.file, p.line, p.col, Error, "bad-ipv6", tok, inner,
			"%s: libwrap writes IPv4 addresses without brackets; this pattern never matches", tok)
		return
	}
	if !ok || err != nil || !a.Is6() {
		l.addf(p.file, p.line, p.col, Error, "bad-ipv6", "write an IPv6 address in brackets, an IPv4 address without",
			"%s is not a bracketed IPv6 address: it never matches", tok)
		return
	}
	l.scope(tok, a, p)
}

// scope reports a %scope that libwrap (glibc's getaddrinfo) does not
// accept on this host: the pattern then never matches.
func (l *linter) scope(tok string, a netip.Addr, p pos) {
	if z := a.Zone(); z != "" && !hostsrules.ValidScope(a, z) {
		l.addf(p.file, p.line, p.col, Error, "bad-ipv6-scope",
			"use a scope only on a link-local address, as the name of an interface of this host, or as its number; or drop it (the scope is not compared)",
			"%s: libwrap does not accept the scope %q here (an interface name is tried only for link-local addresses and must exist on this host; otherwise only a number): the pattern never matches", tok, z)
	}
}

// netmask checks net/mask patterns.
func (l *linter) netmask(tok, net, mask string, p pos) {
	bad := func(hint string) {
		l.addf(p.file, p.line, p.col, Error, "bad-netmask", hint, "%s: bad net/mask pattern (it never matches)", tok)
	}
	if strings.HasPrefix(net, "[") {
		inner, ok := strings.CutSuffix(net[1:], "]")
		a, err := netip.ParseAddr(inner)
		if !ok && err == nil && a.Is6() && strings.HasSuffix(mask, "]") {
			// "[2001:db8::/32]": the prefix length inside the brackets.
			l.fixf(p.file, p.line, p.col, Error, "bad-netmask", tok, bracketIPv6(inner+"/"+strings.TrimSuffix(mask, "]")),
				"%s: bad net/mask pattern (it never matches): the prefix length goes after the brackets", tok)
			return
		}
		if !ok || err != nil || !a.Is6() {
			bad("write [IPv6-net]/prefix")
			return
		}
		n, clean := atoi(mask)
		if n < 0 || n > 128 {
			bad("the prefix length of an IPv6 net is 0 to 128")
			return
		}
		l.scope(tok, a, p)
		if !clean {
			l.fixf(p.file, p.line, p.col, Warning, "netmask-atoi", tok, fmt.Sprintf("%s/%d", net, n),
				"%s: libwrap reads the prefix length %q as %d", tok, mask, n)
		}
		return
	}
	nv, nok, ndec := dotQuad(net)
	if !nok {
		hint := ""
		if isNumeric(net) && strings.HasSuffix(net, ".") {
			parts := strings.Split(strings.TrimSuffix(net, "."), ".")
			bits := 8 * len(parts)
			for len(parts) < 4 {
				parts = append(parts, "0")
			}
			hint = fmt.Sprintf("write %s/%d, or just %s", strings.Join(parts, "."), bits, net)
		} else if isNumeric(net) {
			parts := strings.Split(strings.TrimSuffix(net, "."), ".")
			for len(parts) < 4 {
				parts = append(parts, "0")
			}
			hint = "write the net as four parts: " + strings.Join(parts, ".") + "/" + mask
		}
		bad(hint)
		return
	}
	if !ndec {
		l.addf(p.file, p.line, p.col, Warning, "nondecimal-address", "write the net in decimal",
			"%s: the net %s has octal or hex parts and means %s", tok, net, quad(nv))
	}
	var mv uint32
	if v, ok, dec := dotQuad(mask); ok {
		mv = v
		if !dec {
			l.addf(p.file, p.line, p.col, Warning, "nondecimal-address", "write the mask in decimal",
				"%s: the mask %s has octal or hex parts and means %s", tok, mask, quad(v))
		}
		if inv := ^mv; inv&(inv+1) != 0 {
			l.addf(p.file, p.line, p.col, Warning, "netmask-noncontiguous", "",
				"%s: the mask %s is not contiguous", tok, mask)
		}
	} else {
		if strings.TrimSpace(mask) == "255.255.255.255" {
			l.addFix(Diagnostic{File: p.file, Line: p.line, Col: p.col, Severity: Error, Code: "netmask-all-ones",
				Hint: "write " + net + "/32 or just " + net, Msg: fmt.Sprintf("%s: libwrap rejects the mask 255.255.255.255, so this never matches", tok)},
				tok, net)
			return
		}
		n, clean := atoi(mask)
		switch {
		case n == 0 && clean:
			l.addf(p.file, p.line, p.col, Error, "netmask-zero", "write ALL, or 0.0.0.0/0.0.0.0",
				"%s: libwrap rejects the prefix length /0, so this never matches", tok)
			return
		case n < 1 || n > 32:
			bad("the prefix length of an IPv4 net is 1 to 32")
			return
		case !clean:
			l.fixf(p.file, p.line, p.col, Warning, "netmask-atoi", tok, fmt.Sprintf("%s/%d", net, n),
				"%s: libwrap reads the prefix length %q as %d", tok, mask, n)
		}
		mv = ^uint32(0) << (32 - n)
	}
	if nv&^mv != 0 {
		l.fixf(p.file, p.line, p.col, Error, "netmask-host-bits", tok, quad(nv&mv)+"/"+mask,
			"%s: the net has host bits set; libwrap compares (address & mask) with the unmasked net, so this never matches", tok)
	}
}

// atoi is C atoi: leading blanks, a sign, digits. clean says the text was
// only decimal digits (leading zeros allowed).
func atoi(s string) (int, bool) {
	i := 0
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	neg := false
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		neg = s[i] == '-'
		i++
	}
	start := i
	n := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		if n < 1<<20 {
			n = n*10 + int(s[i]-'0')
		}
		i++
	}
	clean := start == 0 && i == len(s) && i > 0
	if neg {
		n = -n
	}
	return n, clean
}

// dotQuad parses exactly four dot-separated parts as inet_addr does
// (decimal, octal with a leading 0, hex with 0x) and rejects
// 255.255.255.255 (INADDR_NONE). decimal says every part was plain decimal.
func dotQuad(s string) (v uint32, ok, decimal bool) {
	parts := strings.Split(s, ".")
	if len(parts) != 4 {
		return 0, false, false
	}
	decimal = true
	for _, part := range parts {
		if part == "" {
			return 0, false, false
		}
		base := 10
		digits := part
		switch {
		case len(part) > 1 && (part[:2] == "0x" || part[:2] == "0X"):
			base, digits, decimal = 16, part[2:], false
		case len(part) > 1 && part[0] == '0':
			base, digits, decimal = 8, part[1:], false
		}
		n, err := strconv.ParseUint(digits, base, 32)
		if err != nil || n > 255 {
			return 0, false, false
		}
		v = v<<8 | uint32(n)
	}
	if v == 0xffffffff {
		return 0, false, false
	}
	return v, true, decimal
}

func quad(v uint32) string {
	return fmt.Sprintf("%d.%d.%d.%d", v>>24, v>>16&0xff, v>>8&0xff, v&0xff)
}

// checkName looks a host name up (forward), as tcpdchk does.
func (l *linter) checkName(name string, p pos) {
	if l.opts.Resolver == nil {
		return
	}
	key := strings.ToLower(name)
	res, ok := l.lookups[key]
	if !ok {
		ctx, cancel := context.WithTimeout(l.ctx, l.opts.LookupTimeout)
		for _, network := range []string{"ip4", "ip6"} {
			canon, addrs, err := l.opts.Resolver.LookupHost(ctx, network, name)
			if err == nil && len(addrs) > 0 {
				res = lookupResult{canon: canon, found: true}
				break
			}
		}
		cancel()
		l.lookups[key] = res
	}
	switch {
	case !res.found:
		l.addf(p.file, p.line, p.col, Warning, "host-not-found",
			"a name pattern only matches clients whose reverse name resolves back to their address",
			"%s: host not found", name)
	case res.canon != "" && !strings.EqualFold(strings.TrimSuffix(res.canon, "."), name):
		l.fixf(p.file, p.line, p.col, Warning, "host-alias", name, strings.TrimSuffix(res.canon, "."),
			"%s: hostname alias (official name: %s); libwrap compares the verified name, which is the official one", name, res.canon)
	}
}

// fileList checks a /file list and the words in it.
func (l *linter) fileList(path string, p pos, depth int) {
	if depth >= maxFileDepth {
		l.addf(p.file, p.line, p.col, Error, "file-list-loop", "",
			"%s: /file lists nested more than %d deep (a list that names itself makes libwrap recurse until it crashes)", path, maxFileDepth)
		return
	}
	if path == p.file {
		l.addf(p.file, p.line, p.col, Error, "file-list-loop", "",
			"%s names itself: libwrap recurses until it crashes", path)
		return
	}
	data, err := l.opts.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			l.addf(p.file, p.line, p.col, Warning, "missing-file-list", "",
				"%s does not exist: the pattern matches nothing", path)
		} else {
			l.addf(p.file, p.line, p.col, Warning, "cannot-open", "",
				"open %s: %s (the pattern matches nothing)", path, errText(err))
		}
		return
	}
	l.worldWritable(path)
	line, col := 1, 1
	start := -1
	commentLine := 0 // a line with a "#" word: its later words are not looked up
	for i := 0; i <= len(data); i++ {
		blank := i == len(data) || data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\v' || data[i] == '\f' || data[i] == '\r'
		if !blank && start < 0 {
			start = i
			col = i - lineStart(data, i) + 1
		}
		if blank && start >= 0 {
			word := string(data[start:i])
			wp := pos{path, line, col}
			switch {
			case commentLine == line:
			case strings.HasPrefix(word, "/"):
				l.fileList(word, wp, depth+1)
			case isExcept(word) || strings.ContainsRune(word, '@') && !strings.HasPrefix(word, "@"):
				l.addf(path, line, col, Warning, "file-list-word", "", "%q in a /file list is a plain host name and matches nothing", word)
			case strings.Contains(word, ","):
				l.addf(path, line, col, Warning, "file-list-word", "separate patterns with blanks",
					"%q: commas do not separate patterns in a /file list", word)
			case strings.HasPrefix(word, "#"):
				commentLine = line
				l.addf(path, line, col, Warning, "file-list-word", "remove comments from /file lists",
					"%q: a /file list has no comments; every word on this line is a host pattern", word)
			default:
				l.hostToken(word, wp, depth+1)
			}
			start = -1
		}
		if i < len(data) && data[i] == '\n' {
			line++
		}
	}
}

func lineStart(data []byte, i int) int {
	for i > 0 && data[i-1] != '\n' {
		i--
	}
	return i
}
