package hostsrules

import (
	"bytes"
	"cmp"
	"net/netip"
	"slices"
	"strings"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules/internal/chunk"
	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules/internal/ctext"
	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules/internal/libwrapaddr"
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
	// base is the index of a scanned segment's first rule in the table's
	// stored rules; run is the index of an indexed segment.
	base int
	run  *addrRun
}

// addrRun is the index of a run of address-only rules, numbered k = 0, 1,
// ... in rule order. Its lists are chunk.Lists, so neither building nor
// sorting them ever needs a second copy of a list (see chunk.List).
//
// A compact rule is one whose line is exactly a prefix (the daemon list,
// the ":" and the blanks before the first address) followed by one
// canonical address token (dotted decimal IPv4, or a bracketed IPv6
// address as netip formats it), or by two or more canonical IPv4 tokens
// each after one space. Its text is rebuilt as prefix + tokens. Every
// other rule of the run ("010.0.0.1", two blanks, a trailing blank,
// options) is kept as text.
type addrRun struct {
	// lines is the physical line of rule k.
	lines chunk.List[int32]
	// v4 holds address<<32 | k for every canonical IPv4 token, sorted, so
	// the rules listing one address are adjacent and in rule order.
	v4 chunk.List[uint64]
	// v6 holds the bracketed IPv6 tokens (without zone) and text the other
	// all-digits-and-dots tokens ("010.0.0.1"), compared as text; both
	// sorted by key, then k.
	v6   chunk.List[v6Entry]
	text chunk.List[textEntry]
	// prefixes are the distinct prefixes of the compact rules (at most
	// 256); pfx.At(k) is rule k's, or pfx is empty when all use
	// prefixes[0].
	prefixes []prefix
	pfx      chunk.List[uint8]
	// storedK are the k of the rules that are kept as text, ascending;
	// rule storedK.At(i) is the table's stored rule storedBase+i.
	storedK    chunk.List[int32]
	storedBase int
	// multiK are the k of the compact rules with several addresses,
	// ascending; the addresses of rule multiK.At(i) are seq.At(j) for j
	// from multiOff.At(i) to the next one's (or the end of seq), in line
	// order.
	multiK   chunk.List[int32]
	multiOff chunk.List[uint32]
	seq      chunk.List[uint32]
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
			// at check time (libwrapaddr.ValidScope): never indexed.
			return netip.Addr{}, "", false, false
		}
		a, ok := libwrapaddr.ParseIPv6(tok[1 : len(tok)-1])
		if !ok {
			return netip.Addr{}, "", false, false
		}
		return a.WithZone(""), "", true, true
	}
	if tok == "" || tok[0] == '.' || tok[len(tok)-1] == '.' {
		return netip.Addr{}, "", false, false
	}
	for i := 0; i < len(tok); i++ {
		if !ctext.IsDigit(tok[i]) && tok[i] != '.' {
			return netip.Addr{}, "", false, false
		}
	}
	if k, ok := canonicalIPv4(tok); ok {
		return v4Addr(k), "", false, true
	}
	return netip.Addr{}, tok, false, true
}

// canonicalIPv4 parses s if it is an IPv4 address as netip formats one:
// four decimal fields of 0-255 without leading zeros, joined by dots.
func canonicalIPv4(s string) (uint32, bool) {
	var a uint32
	i := 0
	for f := 0; f < 4; f++ {
		if f > 0 {
			if i >= len(s) || s[i] != '.' {
				return 0, false
			}
			i++
		}
		start, n := i, uint32(0)
		for i < len(s) && ctext.IsDigit(s[i]) && i-start < 3 {
			n = n*10 + uint32(s[i]-'0')
			i++
		}
		if i == start || n > 255 || s[start] == '0' && i-start > 1 {
			return 0, false
		}
		a = a<<8 | n
	}
	return a, i == len(s)
}

// indexable reports whether a rule can live in an index: its daemon list
// has no daemon@host token (those may look the server name up) and every
// client token is an exact address.
func indexable(daemons, clients []string) bool {
	for _, t := range daemons {
		if ctext.EqualFold(t, "EXCEPT") {
			return false
		}
		if _, _, ok := ctext.SplitAtFrom1(t, '@'); ok {
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

// tableBuilder compiles a table while its lines are read, so that only
// the compact form is ever held, not the lines.
type tableBuilder struct {
	t     *table
	toks  []string
	lists []string
	seen  map[string]bool
	// pending are address-only rules not yet known to start a run of
	// minIndexedRun; run is the open run.
	pending []ruleLine
	run     *runBuilder
	// full is the error of a table too large to keep; the rules after it
	// are dropped and it ends the table as endErr.
	full *Diagnostic
}

func newTableBuilder(t *table, size int64) *tableBuilder {
	t.text.SizeHint = size
	return &tableBuilder{t: t}
}

// add adds the next rule.
func (b *tableBuilder) add(l ruleLine) {
	if b.full != nil {
		return
	}
	toks := ctext.AppendList(b.toks[:0], l.daemons)
	nd := len(toks)
	toks = ctext.AppendList(toks, l.clients)
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
		b.run.add(b, l, toks, nd)
		return
	}
	b.pending = append(b.pending, l)
	if len(b.pending) < minIndexedRun {
		return
	}
	b.run = newRunBuilder(b.t.n, b.t.stored.Len())
	for _, p := range b.pending {
		toks := ctext.AppendList(b.toks[:0], p.daemons)
		nd := len(toks)
		b.toks = ctext.AppendList(toks, p.clients)
		b.run.add(b, p, b.toks, nd)
	}
	clear(b.pending)
	b.pending = b.pending[:0]
}

// noteLists records the /file lists a list's tokens name.
func (b *tableBuilder) noteLists(toks []string, daemonList bool) {
	for _, t := range toks {
		hostPat := t
		if _, h, ok := ctext.SplitAtFrom1(t, '@'); ok {
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
	if b.full != nil {
		return
	}
	t := b.t
	if k := len(t.segs) - 1; k < 0 || t.segs[k].run != nil {
		t.segs = append(t.segs, segment{start: t.n, end: t.n, base: t.stored.Len()})
	}
	if !b.store(l) {
		return
	}
	t.segs[len(t.segs)-1].end++
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
	if b.run.r.lines.Len() > 0 {
		b.t.segs = append(b.t.segs, segment{start: b.run.start, end: b.t.n, run: b.run.finish()})
	}
	b.run = nil
}

// finish ends the table.
func (b *tableBuilder) finish() {
	b.endRun()
	b.flushPending()
	b.t.stored.Clip()
	b.t.segs = slices.Clip(b.t.segs)
	b.t.text.Finish()
}

// store keeps l as text, as the table's next stored rule. It reports
// false, and sets full, when the table's text is full.
func (b *tableBuilder) store(l ruleLine) bool {
	off, ok := b.t.text.Add(l.line)
	if !ok {
		b.full = &Diagnostic{File: b.t.name, Line: l.last, Severity: Error, Code: "table-too-large",
			Msg: "table too large: more than 4 GiB of rules kept as text; this and all the subsequent rules are ignored"}
		return false
	}
	s := storedRule{off: off, line: int32(l.last), c1: uint16(len(l.daemons))}
	if l.hasOpts {
		s.c2 = uint16(len(l.daemons) + 1 + len(l.clients))
	}
	b.t.stored.Push(s)
	return true
}

// runBuilder builds an addrRun.
type runBuilder struct {
	r     addrRun
	start int // rule number of k = 0
	ids   map[string]uint8
	buf   []byte
}

func newRunBuilder(start, storedBase int) *runBuilder {
	return &runBuilder{r: addrRun{v6Rule: -1, storedBase: storedBase}, start: start, ids: map[string]uint8{}}
}

// add adds rule l, whose tokens are toks (nd of them daemons), as the
// table's next rule.
func (b *runBuilder) add(tb *tableBuilder, l ruleLine, toks []string, nd int) {
	r := &b.r
	k := int32(r.lines.Len())
	id, compact := b.compact(l, toks, nd)
	if !compact {
		if !tb.store(l) {
			return
		}
		r.storedK.Push(k)
	}
	r.lines.Push(int32(l.last))
	if r.pfx.Len() == 0 && id != 0 {
		for range k {
			r.pfx.Push(0)
		}
	}
	if r.pfx.Len() > 0 {
		r.pfx.Push(id)
	}
	if compact && len(toks)-nd > 1 {
		r.multiK.Push(k)
		r.multiOff.Push(uint32(r.seq.Len()))
	}
	for _, tok := range toks[nd:] {
		a, key, v6, _ := addrToken(tok)
		switch {
		case key != "":
			r.text.Push(textEntry{strings.Clone(key), k})
		case v6:
			if r.v6Rule < 0 {
				r.v6Rule = k
			}
			r.v6.Push(v6Entry{a.As16(), k})
		default:
			r.v4.Push(uint64(v4key(a))<<32 | uint64(k))
			if compact && len(toks)-nd > 1 {
				r.seq.Push(v4key(a))
			}
		}
	}
	tb.t.n++
}

// compact reports whether l can be kept as its addresses, and the number
// of its prefix.
func (b *runBuilder) compact(l ruleLine, toks []string, nd int) (uint8, bool) {
	if l.hasOpts || len(toks) == nd {
		return 0, false
	}
	// tail is the text the tokens make: one canonical token, or several
	// canonical IPv4 tokens joined by single spaces.
	b.buf = b.buf[:0]
	for i, tok := range toks[nd:] {
		a, key, v6, _ := addrToken(tok)
		if key != "" || v6 && len(toks)-nd > 1 {
			return 0, false
		}
		if i > 0 {
			b.buf = append(b.buf, ' ')
		}
		if v6 {
			b.buf = append(a.AppendTo(append(b.buf, '[')), ']')
		} else {
			b.buf = append(b.buf, tok...) // canonical: addrToken checked
		}
	}
	c1 := len(l.daemons)
	if len(l.text)-len(b.buf) <= c1 || l.text[len(l.text)-len(b.buf):] != string(b.buf) {
		return 0, false
	}
	pre := l.text[:len(l.text)-len(b.buf)]
	id, ok := b.ids[pre]
	if !ok {
		if len(b.r.prefixes) > 255 {
			return 0, false
		}
		pre = strings.Clone(pre)
		id = uint8(len(b.r.prefixes))
		b.ids[pre] = id
		b.r.prefixes = append(b.r.prefixes, prefix{text: pre, daemons: slices.Clip(ctext.AppendList(nil, pre[:c1]))})
	}
	return id, true
}

// finish sorts the keys and returns the run.
func (b *runBuilder) finish() *addrRun {
	r := &b.r
	r.v4.SortCompact(cmp.Compare[uint64])
	r.v6.SortCompact(func(x, y v6Entry) int {
		if c := bytes.Compare(x.addr[:], y.addr[:]); c != 0 {
			return c
		}
		return cmp.Compare(x.k, y.k)
	})
	r.text.SortCompact(func(x, y textEntry) int {
		if c := strings.Compare(x.text, y.text); c != 0 {
			return c
		}
		return cmp.Compare(x.k, y.k)
	})
	for _, c := range []interface{ Clip() }{&r.lines, &r.pfx, &r.storedK, &r.multiK, &r.multiOff, &r.seq} {
		c.Clip()
	}
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
			for i := s.base; i < s.base+s.end-s.start; i++ {
				c.toks = t.view(t.stored.Ref(i), c.toks, r)
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
			first, last := s.run.lines.At(0), s.run.lines.At(s.run.lines.Len()-1)
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

// findK returns the position of k in the ascending list ks.
func findK(ks *chunk.List[int32], k int32) (int, bool) {
	if ks.Len() == 0 {
		return 0, false
	}
	i := ks.Search(func(e int32) bool { return e < k })
	return i, i < ks.Len() && ks.At(i) == k
}

// rule sets r to rule k; *tok is the address token of a compact rule,
// made from a when first needed.
func (ru *addrRun) rule(c *check, t *table, k int32, tok *string, a netip.Addr, r *rule) {
	if i, ok := findK(&ru.storedK, k); ok {
		c.toks = t.view(t.stored.Ref(ru.storedBase+i), c.toks, r)
		return
	}
	p := &ru.prefixes[0]
	if ru.pfx.Len() > 0 {
		p = &ru.prefixes[ru.pfx.At(int(k))]
	}
	if i, ok := findK(&ru.multiK, k); ok {
		end := ru.seq.Len()
		if i+1 < ru.multiK.Len() {
			end = int(ru.multiOff.At(i + 1))
		}
		c.toks = c.toks[:0]
		for j := int(ru.multiOff.At(i)); j < end; j++ {
			c.toks = append(c.toks, v4Addr(ru.seq.At(j)).String())
		}
		n := len(c.toks)
		*r = rule{text: p.text, tail: strings.Join(c.toks, " "), line: ru.lines.At(int(k)), daemons: p.daemons, clients: c.toks[:n:n]}
		return
	}
	if *tok == "" {
		*tok = addrText(a)
	}
	c.toks = append(c.toks[:0], *tok)
	*r = rule{text: p.text, tail: *tok, line: ru.lines.At(int(k)), daemons: p.daemons, clients: c.toks[:1:1]}
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
	a, text := c.clientKey(ru.text.Len() > 0)
	// [i, iEnd) are the entries of a in v4 or v6, [j, jEnd) those of text.
	var i, iEnd, j, jEnd int
	switch {
	case a.Is4():
		key := uint64(v4key(a))
		i = chunk.LowerBound(&ru.v4, key<<32)
		for iEnd = i; iEnd < ru.v4.Len() && ru.v4.At(iEnd)>>32 == key; iEnd++ {
		}
	case a.Is6():
		key := a.As16()
		i = ru.v6.Search(func(e v6Entry) bool { return bytes.Compare(e.addr[:], key[:]) < 0 })
		for iEnd = i; iEnd < ru.v6.Len() && ru.v6.Ref(iEnd).addr == key; iEnd++ {
		}
	}
	if text != "" {
		j = ru.text.Search(func(e textEntry) bool { return e.text < text })
		for jEnd = j; jEnd < ru.text.Len() && ru.text.Ref(jEnd).text == text; jEnd++ {
		}
	}
	var tok string
	found := int32(-1)
	for i < iEnd || j < jEnd {
		var k int32
		if i < iEnd {
			if a.Is4() {
				k = int32(uint32(ru.v4.At(i)))
			} else {
				k = ru.v6.Ref(i).k
			}
		}
		if i >= iEnd || (j < jEnd && ru.text.Ref(j).k < k) {
			k = ru.text.Ref(j).k
			j++
		} else {
			i++
		}
		if ru.rule(c, t, k, &tok, a, r); c.ruleMatch(t, r) {
			found = k
			break
		}
	}
	if ru.v6Rule >= 0 && (found < 0 || ru.v6Rule < found) {
		c.hostName(&c.client)
	}
	return found >= 0
}

// scan evaluates every rule of the run in order, without the index (for
// tests that compare both paths).
func (ru *addrRun) scan(c *check, t *table, r *rule) bool {
	addrs := make([]netip.Addr, ru.lines.Len())
	for i := range ru.v4.Len() {
		e := ru.v4.At(i)
		addrs[uint32(e)] = v4Addr(uint32(e >> 32))
	}
	for i := range ru.v6.Len() {
		e := ru.v6.Ref(i)
		addrs[e.k] = netip.AddrFrom16(e.addr)
	}
	for k := range ru.lines.Len() {
		var tok string
		ru.rule(c, t, int32(k), &tok, addrs[k], r)
		if c.ruleMatch(t, r) {
			return true
		}
	}
	return false
}

// v4Addr is the address of a v4key.
func v4Addr(k uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(k >> 24), byte(k >> 16), byte(k >> 8), byte(k)})
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
	text, _ := libwrapaddr.UnmapText(c.hostAddr(&c.client))
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
