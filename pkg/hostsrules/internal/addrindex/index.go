// Package addrindex is the compact index of a run of address-only rules
// ("ALL: 192.0.2.1", "sshd: [2001:db8::1]", blocklists as DenyHosts and
// fail2ban write them): which rules list an address, in rule order, and
// the rules themselves rebuilt from their addresses.
//
// Memory is what limits the size of a table (tcpwrapd runs under
// Dovecot's vsz_limit), so an address rule is not kept as text: "ALL:
// 192.0.2.1" is its address in a sorted list (8 bytes), its line number
// (4 bytes) and, when a run mixes daemon lists, a byte naming its prefix
// "ALL: ". The text is rebuilt from these when the rule is evaluated or
// reported. The package knows which rules it can keep so and finds the
// candidates for an address; evaluating them is the caller's.
package addrindex

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

// Run is the index of a run of address-only rules, numbered k = 0, 1,
// ... in rule order. Its lists are chunk.Lists, so neither building nor
// sorting them ever needs a second copy of a list.
//
// A compact rule is one whose line is exactly a prefix (the daemon list,
// the ":" and the blanks before the first address) followed by one
// canonical address token (dotted decimal IPv4, or a bracketed IPv6
// address as netip formats it), or by two or more canonical IPv4 tokens
// each after one space. Its text is rebuilt as prefix + tokens. Every
// other rule of the run ("010.0.0.1", two blanks, a trailing blank,
// options) is kept as text by the caller (Stored).
//
// A Run never changes once built and is safe for concurrent use.
type Run struct {
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
	prefixes []Prefix
	pfx      chunk.List[uint8]
	// storedK are the k of the rules that are kept as text, ascending.
	storedK chunk.List[int32]
	// multiK are the k of the compact rules with several addresses,
	// ascending; the addresses of rule multiK.At(i) are seq.At(j) for j
	// from multiOff.At(i) to the next one's (or the end of seq), in line
	// order.
	multiK   chunk.List[int32]
	multiOff chunk.List[uint32]
	seq      chunk.List[uint32]
	// v6Rule is the first rule with a bracketed IPv6 token, or -1.
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

// Prefix is the part of a compact rule's line before its addresses, with
// the daemon list's tokens.
type Prefix struct {
	Text    string
	Daemons []string
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

// Indexable reports whether a rule, given as its daemon and client list
// tokens, can live in an index: its daemon list has no EXCEPT and no
// daemon@host token (those may look the server name up) and every client
// token is an exact address.
func Indexable(daemons, clients []string) bool {
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

// Builder builds a Run, rule by rule.
type Builder struct {
	r   Run
	ids map[string]uint8
	buf []byte
}

// NewBuilder returns a Builder of an empty run.
func NewBuilder() *Builder {
	return &Builder{r: Run{v6Rule: -1}, ids: map[string]uint8{}}
}

// Len returns the number of rules added.
func (b *Builder) Len() int { return b.r.lines.Len() }

// Compact reports whether an Indexable rule can be kept as its addresses,
// and the number of its prefix. text is the logical line without its
// newline, c1 the offset of the ":" that ends its daemon list, hasOpts
// whether it has an options field, and clients its client tokens.
func (b *Builder) Compact(text string, c1 int, hasOpts bool, clients []string) (uint8, bool) {
	if hasOpts || len(clients) == 0 {
		return 0, false
	}
	// tail is the text the tokens make: one canonical token, or several
	// canonical IPv4 tokens joined by single spaces.
	b.buf = b.buf[:0]
	for i, tok := range clients {
		a, key, v6, _ := addrToken(tok)
		if key != "" || v6 && len(clients) > 1 {
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
	if len(text)-len(b.buf) <= c1 || text[len(text)-len(b.buf):] != string(b.buf) {
		return 0, false
	}
	pre := text[:len(text)-len(b.buf)]
	id, ok := b.ids[pre]
	if !ok {
		if len(b.r.prefixes) > 255 {
			return 0, false
		}
		pre = strings.Clone(pre)
		id = uint8(len(b.r.prefixes))
		b.ids[pre] = id
		b.r.prefixes = append(b.r.prefixes, Prefix{Text: pre, Daemons: slices.Clip(ctext.AppendList(nil, pre[:c1]))})
	}
	return id, true
}

// Add adds an Indexable rule as the run's next rule k = Len(): line is its
// physical line, clients its client tokens, and id and compact what
// Compact said of it. A rule that is not compact is kept as text by the
// caller, as the run's next stored rule.
func (b *Builder) Add(line int32, id uint8, compact bool, clients []string) {
	r := &b.r
	k := int32(r.lines.Len())
	if !compact {
		r.storedK.Push(k)
	}
	r.lines.Push(line)
	if r.pfx.Len() == 0 && id != 0 {
		for range k {
			r.pfx.Push(0)
		}
	}
	if r.pfx.Len() > 0 {
		r.pfx.Push(id)
	}
	if compact && len(clients) > 1 {
		r.multiK.Push(k)
		r.multiOff.Push(uint32(r.seq.Len()))
	}
	for _, tok := range clients {
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
			if compact && len(clients) > 1 {
				r.seq.Push(v4key(a))
			}
		}
	}
}

// Finish sorts the keys and returns the run. The Builder must not be used
// after it.
func (b *Builder) Finish() *Run {
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

// v4Addr is the address of a v4key.
func v4Addr(k uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(k >> 24), byte(k >> 16), byte(k >> 8), byte(k)})
}

// Len returns the number of rules in the run.
func (r *Run) Len() int { return r.lines.Len() }

// Line returns the physical line of rule k.
func (r *Run) Line(k int32) int32 { return r.lines.At(int(k)) }

// HasText reports whether a rule lists an address in a form other than
// netip's ("010.0.0.1"), compared with the client address's text.
func (r *Run) HasText() bool { return r.text.Len() > 0 }

// V6Rule returns the first rule with a bracketed IPv6 token, or -1.
// libwrap looks the client name up when such a token fails to match the
// address, so a caller does the same to keep %h laziness exact.
func (r *Run) V6Rule() int32 { return r.v6Rule }

// Multi returns the number of compact rules with several addresses.
func (r *Run) Multi() int { return r.multiK.Len() }

// V4Blocks returns the number of blocks the IPv4 keys take.
func (r *Run) V4Blocks() int { return r.v4.Blocks() }

// findK returns the position of k in the ascending list ks.
func findK(ks *chunk.List[int32], k int32) (int, bool) {
	if ks.Len() == 0 {
		return 0, false
	}
	i := ks.Search(func(e int32) bool { return e < k })
	return i, i < ks.Len() && ks.At(i) == k
}

// Stored reports whether rule k is kept as text, and if so which of the
// run's rules kept as text it is (0 for the first).
func (r *Run) Stored(k int32) (int, bool) { return findK(&r.storedK, k) }

// Rebuild rebuilds compact rule k (not Stored): its prefix, the text after
// the prefix, and its client tokens, appended to toks[:0]. *tok is the
// token of a rule with the one address a, made from a when first needed.
func (r *Run) Rebuild(k int32, a netip.Addr, tok *string, toks []string) (p *Prefix, tail string, clients []string) {
	p = &r.prefixes[0]
	if r.pfx.Len() > 0 {
		p = &r.prefixes[r.pfx.At(int(k))]
	}
	if i, ok := findK(&r.multiK, k); ok {
		end := r.seq.Len()
		if i+1 < r.multiK.Len() {
			end = int(r.multiOff.At(i + 1))
		}
		toks = toks[:0]
		for j := int(r.multiOff.At(i)); j < end; j++ {
			toks = append(toks, v4Addr(r.seq.At(j)).String())
		}
		return p, strings.Join(toks, " "), toks
	}
	if *tok == "" {
		*tok = addrText(a)
	}
	return p, *tok, append(toks[:0], *tok)
}

// addrText is the token of a compact rule for address a.
func addrText(a netip.Addr) string {
	if a.Is4() {
		return a.String()
	}
	return "[" + a.String() + "]"
}

// Cursor walks the rules of a run that list an address, in rule order.
type Cursor struct {
	r *Run
	// [i, iEnd) are the entries of the address in v4 or v6, [j, jEnd)
	// those of its text.
	i, iEnd, j, jEnd int
	is4              bool
}

// Find sets c to walk the rules with a token equal to the client address:
// a is its canonical address (unmapped, without zone; the zero Addr if
// none) and text its address text ("" unless HasText). (Setting a Cursor
// in place costs less than returning one.)
func (r *Run) Find(c *Cursor, a netip.Addr, text string) {
	*c = Cursor{r: r, is4: a.Is4()}
	switch {
	case c.is4:
		c.i, c.iEnd = r.find4(v4key(a))
	case a.Is6():
		c.i, c.iEnd = r.find6(a.As16())
	}
	if text != "" {
		c.j, c.jEnd = r.findText(text)
	}
}

// find4 returns the entries [i, end) of v4 with address key.
func (r *Run) find4(key uint32) (i, end int) {
	k := uint64(key)
	i = chunk.LowerBound(&r.v4, k<<32)
	for end = i; end < r.v4.Len() && r.v4.At(end)>>32 == k; end++ {
	}
	return i, end
}

// find6 returns the entries [i, end) of v6 with address key.
func (r *Run) find6(key [16]byte) (i, end int) {
	i = r.v6.Search(func(e v6Entry) bool { return bytes.Compare(e.addr[:], key[:]) < 0 })
	for end = i; end < r.v6.Len() && r.v6.Ref(end).addr == key; end++ {
	}
	return i, end
}

// findText returns the entries [j, end) of text with text key.
func (r *Run) findText(key string) (j, end int) {
	j = r.text.Search(func(e textEntry) bool { return e.text < key })
	for end = j; end < r.text.Len() && r.text.Ref(end).text == key; end++ {
	}
	return j, end
}

// Next returns the next rule, or false when there is none.
func (c *Cursor) Next() (int32, bool) {
	if c.i >= c.iEnd && c.j >= c.jEnd {
		return 0, false
	}
	r := c.r
	var k int32
	if c.i < c.iEnd {
		if c.is4 {
			k = int32(uint32(r.v4.At(c.i)))
		} else {
			k = r.v6.Ref(c.i).k
		}
	}
	if c.i >= c.iEnd || (c.j < c.jEnd && r.text.Ref(c.j).k < k) {
		k = r.text.Ref(c.j).k
		c.j++
	} else {
		c.i++
	}
	return k, true
}

// Addrs returns, by k, an address each rule lists in netip's form (the
// zero Addr for a rule with none): the a that Rebuild needs to rebuild
// every rule of the run in order.
func (r *Run) Addrs() []netip.Addr {
	addrs := make([]netip.Addr, r.lines.Len())
	for i := range r.v4.Len() {
		e := r.v4.At(i)
		addrs[uint32(e)] = v4Addr(uint32(e >> 32))
	}
	for i := range r.v6.Len() {
		e := r.v6.Ref(i)
		addrs[e.k] = netip.AddrFrom16(e.addr)
	}
	return addrs
}
