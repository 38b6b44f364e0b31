package hostsrules

import (
	"bytes"
	"cmp"
	"net/netip"
	"slices"
	"strings"
)

// minIndexedRun is the shortest run of address-only rules worth an index;
// shorter runs are scanned rule by rule.
const minIndexedRun = 4

// A table keeps its rules in segments, in order. Runs of at least
// minIndexedRun consecutive address-only rules (blocklists as DenyHosts and
// fail2ban write them) are indexed by address; every other rule is kept as
// text and evaluated in place, so the first-match order of hosts_access(5)
// is kept exactly.
//
// Memory is what limits the size of a table (tcpwrapd runs under Dovecot's
// vsz_limit), so an address rule is not kept as text: "ALL: 192.0.2.1" is
// its address in a sorted array (8 bytes), its line number (4 bytes) and,
// when a run mixes daemon lists, a byte naming its prefix "ALL: ". The text
// is rebuilt from these when the rule is evaluated or reported.
type segment struct {
	start, end int // rule numbers [start, end)
	// rules are the rules of a scanned segment; run is the index of an
	// indexed one.
	rules []storedRule
	run   *addrRun
}

// addrRun is the index of a run of address-only rules, numbered k = 0, 1,
// ... in rule order.
//
// A compact rule is one whose line is exactly a prefix (the daemon list,
// the ":" and the blanks before the address) followed by one canonical
// address token: dotted decimal IPv4, or a bracketed IPv6 address as
// netip formats it. Its text is rebuilt as prefix + token. Every other
// rule of the run (several tokens, "010.0.0.1", a trailing blank, options)
// is kept as text in stored.
type addrRun struct {
	// lines is the physical line of rule k.
	lines []int32
	// v4 holds address<<32 | k for every canonical IPv4 token, sorted, so
	// the rules listing one address are adjacent and in rule order.
	v4 []uint64
	// v6 holds the bracketed IPv6 tokens (without zone) and text the other
	// all-digits-and-dots tokens ("010.0.0.1"), compared as text; both
	// sorted by key, then k.
	v6   []v6Entry
	text []textEntry
	// prefixes are the distinct prefixes of the compact rules (at most
	// 256); pfx[k] is rule k's, or pfx is nil when all use prefixes[0].
	prefixes []prefix
	pfx      []uint8
	// stored are the rules that are not compact; storedK[i] is the k of
	// stored[i], ascending.
	stored  []storedRule
	storedK []int32
	// v6Rule is the first rule with a bracketed IPv6 token, or -1. libwrap
	// looks the client name up when such a token fails to match the
	// address, so the index does the same to keep %h laziness exact.
	v6Rule int32
}

type v6Entry struct {
	addr [16]byte
	k    int32
}

type textEntry struct {
	text string
	k    int32
}

// prefix is the part of a compact rule's line before its address, with
// the daemon list's tokens.
type prefix struct {
	text    string
	daemons []string
}

// addrToken classifies a client token for the index. It returns the key
// of an exact-address token: an all-digits-and-dots token without a
// leading or trailing dot (string_match compares it for equality with the
// address text and never looks at the name), or a bracketed IPv6 address.
func addrToken(tok string) (addr netip.Addr, text string, v6, ok bool) {
	if len(tok) >= 2 && tok[0] == '[' && tok[len(tok)-1] == ']' {
		if strings.IndexByte(tok, '%') >= 0 {
			// Whether a scope is valid depends on the host's interfaces
			// at check time (validScope): never indexed.
			return netip.Addr{}, "", false, false
		}
		a, ok := parseIPv6(tok[1 : len(tok)-1])
		if !ok {
			return netip.Addr{}, "", false, false
		}
		return a.WithZone(""), "", true, true
	}
	if tok == "" || tok[0] == '.' || tok[len(tok)-1] == '.' {
		return netip.Addr{}, "", false, false
	}
	for i := 0; i < len(tok); i++ {
		if !isDigit(tok[i]) && tok[i] != '.' {
			return netip.Addr{}, "", false, false
		}
	}
	if a, err := netip.ParseAddr(tok); err == nil && a.Is4() && a.String() == tok {
		return a, "", false, true
	}
	return netip.Addr{}, tok, false, true
}

// indexable reports whether a rule can live in an index: its daemon list
// has no daemon@host token (those may look the server name up) and every
// client token is an exact address.
func indexable(daemons, clients []string) bool {
	for _, t := range daemons {
		if asciiEqualFold(t, "EXCEPT") {
			return false
		}
		if _, _, ok := splitAtFrom1(t, '@'); ok {
			return false
		}
	}
	if len(clients) == 0 {
		return false
	}
	for _, t := range clients {
		if _, _, _, ok := addrToken(t); !ok {
			return false
		}
	}
	return true
}

// arenaChunk is the size of the blocks a table's rule texts are kept in.
const arenaChunk = 64 << 10

// arena keeps the texts of a table's stored rules in a few large blocks
// rather than one allocation per line. Strings it returns are never
// modified: a block only grows after them.
type arena struct {
	b    strings.Builder
	size int64 // the table's size, to size the first block
}

func (a *arena) add(s string) string {
	if a.b.Cap()-a.b.Len() < len(s) {
		n := int64(arenaChunk)
		if a.b.Cap() == 0 {
			n = min(n, max(a.size, 256))
		}
		a.b = strings.Builder{}
		a.b.Grow(max(int(n), len(s)))
	}
	start := a.b.Len()
	a.b.WriteString(s)
	return a.b.String()[start:]
}

// tableBuilder compiles a table while its lines are read, so that only
// the compact form is ever held, not the lines.
type tableBuilder struct {
	t     *table
	text  arena
	toks  []string
	lists []string
	seen  map[string]bool
	// pending are address-only rules not yet known to start a run of
	// minIndexedRun; run is the open run.
	pending []ruleLine
	run     *runBuilder
}

func newTableBuilder(t *table, size int64) *tableBuilder {
	return &tableBuilder{t: t, text: arena{size: size}}
}

// add adds the next rule.
func (b *tableBuilder) add(l ruleLine) {
	toks := appendList(b.toks[:0], l.daemons)
	nd := len(toks)
	toks = appendList(toks, l.clients)
	b.toks = toks
	b.noteLists(toks[:nd], true)
	b.noteLists(toks[nd:], false)
	if !indexable(toks[:nd], toks[nd:]) {
		b.endRun()
		b.flushPending()
		b.addScanned(l)
		return
	}
	if b.run != nil {
		b.run.add(l, toks, nd, &b.text)
		b.t.n++
		return
	}
	b.pending = append(b.pending, l)
	if len(b.pending) < minIndexedRun {
		return
	}
	b.run = newRunBuilder(b.t.n)
	for _, p := range b.pending {
		toks := appendList(b.toks[:0], p.daemons)
		nd := len(toks)
		b.toks = appendList(toks, p.clients)
		b.run.add(p, b.toks, nd, &b.text)
		b.t.n++
	}
	clear(b.pending)
	b.pending = b.pending[:0]
}

// noteLists records the /file lists a list's tokens name.
func (b *tableBuilder) noteLists(toks []string, daemonList bool) {
	for _, t := range toks {
		hostPat := t
		if _, h, ok := splitAtFrom1(t, '@'); ok {
			hostPat = h
		} else if daemonList {
			continue
		}
		if !strings.HasPrefix(hostPat, "/") || b.seen[hostPat] {
			continue
		}
		if b.seen == nil {
			b.seen = map[string]bool{}
		}
		hostPat = strings.Clone(hostPat)
		b.seen[hostPat] = true
		b.lists = append(b.lists, hostPat)
	}
}

// addScanned appends l to the scanned segment at the end, starting one if
// needed.
func (b *tableBuilder) addScanned(l ruleLine) {
	t := b.t
	if k := len(t.segs) - 1; k < 0 || t.segs[k].run != nil {
		t.segs = append(t.segs, segment{start: t.n, end: t.n})
	}
	s := &t.segs[len(t.segs)-1]
	s.rules = append(s.rules, store(l, &b.text))
	s.end++
	t.n++
}

func (b *tableBuilder) flushPending() {
	for _, l := range b.pending {
		b.addScanned(l)
	}
	clear(b.pending)
	b.pending = b.pending[:0]
}

func (b *tableBuilder) endRun() {
	if b.run == nil {
		return
	}
	b.t.segs = append(b.t.segs, segment{start: b.run.start, end: b.t.n, run: b.run.finish()})
	b.run = nil
}

// finish ends the table.
func (b *tableBuilder) finish() {
	b.endRun()
	b.flushPending()
	for i := range b.t.segs {
		b.t.segs[i].rules = trim(b.t.segs[i].rules)
	}
	b.t.segs = slices.Clip(b.t.segs)
}

// store keeps l as text.
func store(l ruleLine, text *arena) storedRule {
	s := storedRule{s: text.add(l.line), line: int32(l.last), c1: uint16(len(l.daemons))}
	if l.hasOpts {
		s.c2 = uint16(len(l.daemons) + 1 + len(l.clients))
	}
	return s
}

// trim returns s without spare capacity worth giving back.
func trim[S ~[]E, E any](s S) S {
	if cap(s)-len(s) > len(s)/16 {
		return slices.Clone(s)
	}
	return s
}

// runBuilder builds an addrRun.
type runBuilder struct {
	r     addrRun
	start int // rule number of k = 0
	ids   map[string]uint8
	buf   []byte
}

func newRunBuilder(start int) *runBuilder {
	return &runBuilder{r: addrRun{v6Rule: -1}, start: start, ids: map[string]uint8{}}
}

// add adds rule l, whose tokens are toks (nd of them daemons).
func (b *runBuilder) add(l ruleLine, toks []string, nd int, text *arena) {
	r := &b.r
	k := int32(len(r.lines))
	r.lines = append(r.lines, int32(l.last))
	id, compact := b.compact(l, toks, nd)
	if r.pfx == nil && id != 0 {
		r.pfx = make([]uint8, k, cap(r.lines))
	}
	if r.pfx != nil {
		r.pfx = append(r.pfx, id)
	}
	if !compact {
		r.stored = append(r.stored, store(l, text))
		r.storedK = append(r.storedK, k)
	}
	for _, tok := range toks[nd:] {
		a, key, v6, _ := addrToken(tok)
		switch {
		case key != "":
			r.text = append(r.text, textEntry{strings.Clone(key), k})
		case v6:
			if r.v6Rule < 0 {
				r.v6Rule = k
			}
			r.v6 = append(r.v6, v6Entry{a.As16(), k})
		default:
			r.v4 = append(r.v4, uint64(v4key(a))<<32|uint64(k))
		}
	}
}

// compact reports whether l can be kept as its address, and the number of
// its prefix.
func (b *runBuilder) compact(l ruleLine, toks []string, nd int) (uint8, bool) {
	if l.hasOpts || len(toks)-nd != 1 {
		return 0, false
	}
	tok := toks[nd]
	a, key, v6, _ := addrToken(tok)
	if key != "" {
		return 0, false
	}
	if v6 {
		b.buf = append(a.AppendTo(append(b.buf[:0], '[')), ']')
		if string(b.buf) != tok {
			return 0, false
		}
	}
	c1 := len(l.daemons)
	if !strings.HasSuffix(l.text, tok) || len(l.text)-len(tok) <= c1 {
		return 0, false
	}
	pre := l.text[:len(l.text)-len(tok)]
	id, ok := b.ids[pre]
	if !ok {
		if len(b.r.prefixes) > 255 {
			return 0, false
		}
		pre = strings.Clone(pre)
		id = uint8(len(b.r.prefixes))
		b.ids[pre] = id
		b.r.prefixes = append(b.r.prefixes, prefix{text: pre, daemons: slices.Clip(appendList(nil, pre[:c1]))})
	}
	return id, true
}

// finish sorts the keys and returns the run.
func (b *runBuilder) finish() *addrRun {
	r := &b.r
	slices.Sort(r.v4)
	r.v4 = trim(slices.Compact(r.v4))
	slices.SortFunc(r.v6, func(x, y v6Entry) int {
		if c := bytes.Compare(x.addr[:], y.addr[:]); c != 0 {
			return c
		}
		return cmp.Compare(x.k, y.k)
	})
	r.v6 = trim(slices.Compact(r.v6))
	slices.SortFunc(r.text, func(x, y textEntry) int {
		if c := strings.Compare(x.text, y.text); c != 0 {
			return c
		}
		return cmp.Compare(x.k, y.k)
	})
	r.text = trim(slices.Compact(r.text))
	r.lines, r.pfx = trim(r.lines), trim(r.pfx)
	r.stored, r.storedK = trim(r.stored), trim(r.storedK)
	return r
}

func v4key(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// first finds the first rule of t for which the check matches and sets r
// to it.
func (t *table) first(c *check, r *rule) bool {
	for k := range t.segs {
		s := &t.segs[k]
		if s.run == nil {
			for i := range s.rules {
				c.toks = s.rules[i].view(c.toks, r)
				if c.ruleMatch(t, r) {
					return true
				}
			}
			continue
		}
		if c.linear {
			if s.run.scan(c, t, r) {
				return true
			}
			continue
		}
		if c.explain {
			first, last := s.run.lines[0], s.run.lines[len(s.run.lines)-1]
			c.trace = append(c.trace, Step{File: t.name, Line: int(first),
				Rule: sprintf("lines %d-%d: %d address-only rules (indexed)", first, last, s.end-s.start),
				Why:  "only the rules listing the client's address are evaluated; they follow", Index: true})
		}
		if s.run.lookup(c, t, r) {
			return true
		}
	}
	return false
}

// storedRule returns rule k if it is kept as text, or nil if it is
// compact.
func (ru *addrRun) storedRule(k int32) *storedRule {
	if i, ok := slices.BinarySearch(ru.storedK, k); ok {
		return &ru.stored[i]
	}
	return nil
}

// rule sets r to rule k; *tok is the address token of a compact rule,
// made from a when first needed.
func (ru *addrRun) rule(c *check, k int32, tok *string, a netip.Addr, r *rule) {
	if s := ru.storedRule(k); s != nil {
		c.toks = s.view(c.toks, r)
		return
	}
	if *tok == "" {
		*tok = addrText(a)
	}
	p := &ru.prefixes[0]
	if ru.pfx != nil {
		p = &ru.prefixes[ru.pfx[k]]
	}
	c.toks = append(c.toks[:0], *tok)
	*r = rule{text: p.text, tail: *tok, line: ru.lines[k], daemons: p.daemons, clients: c.toks[:1:1]}
}

// addrText is the token of a compact rule for address a.
func addrText(a netip.Addr) string {
	if a.Is4() {
		return a.String()
	}
	return "[" + a.String() + "]"
}

// lookup finds the first rule of the run that matches and sets r to it:
// only rules with a token equal to the client address can match, and they
// are tried in rule order.
func (ru *addrRun) lookup(c *check, t *table, r *rule) bool {
	a, text := c.clientKey(len(ru.text) > 0)
	// [i, iEnd) are the entries of a in v4 or v6, [j, jEnd) those of text.
	var i, iEnd, j, jEnd int
	switch {
	case a.Is4():
		key := uint64(v4key(a))
		i = lowerBound(ru.v4, key<<32)
		for iEnd = i; iEnd < len(ru.v4) && ru.v4[iEnd]>>32 == key; iEnd++ {
		}
	case a.Is6():
		key := a.As16()
		i, _ = slices.BinarySearchFunc(ru.v6, key, func(e v6Entry, key [16]byte) int { return bytes.Compare(e.addr[:], key[:]) })
		for iEnd = i; iEnd < len(ru.v6) && ru.v6[iEnd].addr == key; iEnd++ {
		}
	}
	if text != "" {
		j, _ = slices.BinarySearchFunc(ru.text, text, func(e textEntry, key string) int { return strings.Compare(e.text, key) })
		for jEnd = j; jEnd < len(ru.text) && ru.text[jEnd].text == text; jEnd++ {
		}
	}
	var tok string
	found := int32(-1)
	for i < iEnd || j < jEnd {
		var k int32
		if i < iEnd {
			if a.Is4() {
				k = int32(uint32(ru.v4[i]))
			} else {
				k = ru.v6[i].k
			}
		}
		if i >= iEnd || (j < jEnd && ru.text[j].k < k) {
			k = ru.text[j].k
			j++
		} else {
			i++
		}
		if ru.rule(c, k, &tok, a, r); c.ruleMatch(t, r) {
			found = k
			break
		}
	}
	if ru.v6Rule >= 0 && (found < 0 || ru.v6Rule < found) {
		c.hostName(&c.client)
	}
	return found >= 0
}

// lowerBound returns the first position in the sorted a whose value is at
// least x: a binary search without branches in its loop, which is faster
// than slices.BinarySearch over the large arrays of a blocklist.
func lowerBound(a []uint64, x uint64) int {
	base, n := 0, len(a)
	for n > 1 {
		half := n / 2
		if a[base+half-1] < x {
			base += half
		}
		n -= half
	}
	if n == 1 && a[base] < x {
		base++
	}
	return base
}

// scan evaluates every rule of the run in order, without the index (for
// tests that compare both paths).
func (ru *addrRun) scan(c *check, t *table, r *rule) bool {
	addrs := make([]netip.Addr, len(ru.lines))
	for _, e := range ru.v4 {
		addrs[uint32(e)] = netip.AddrFrom4([4]byte{byte(e >> 56), byte(e >> 48), byte(e >> 40), byte(e >> 32)})
	}
	for _, e := range ru.v6 {
		addrs[e.k] = netip.AddrFrom16(e.addr)
	}
	for k := range ru.lines {
		var tok string
		ru.rule(c, int32(k), &tok, addrs[k], r)
		if c.ruleMatch(t, r) {
			return true
		}
	}
	return false
}

// clientKey returns the client address as index keys: the canonical
// address (unmapped, without zone) and, when wantText, the address text.
// For a live connection it does not allocate.
func (c *check) clientKey(wantText bool) (netip.Addr, string) {
	ep := c.client.ep
	if ep.AddrText == "" && !c.client.addrDone {
		if !ep.Addr.IsValid() {
			return netip.Addr{}, ""
		}
		a := ep.Addr.Addr().Unmap().WithZone("")
		if wantText {
			return a, a.String()
		}
		return a, ""
	}
	text, _ := unmapText(c.hostAddr(&c.client))
	var a netip.Addr
	if p, err := netip.ParseAddr(text); err == nil {
		if p.Is4() && p.String() == text {
			a = p
		} else if p.Is6() {
			a = p.WithZone("")
		}
	}
	return a, text
}
