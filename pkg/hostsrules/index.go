package hostsrules

import (
	"net/netip"
)

// minIndexedRun is the shortest run of address-only rules worth an index;
// shorter runs are scanned rule by rule.
const minIndexedRun = 4

// tableIndex finds a table's first matching rule. Runs of consecutive
// address-only rules (blocklists as DenyHosts and fail2ban write them) are
// indexed by address; every other rule is evaluated in place, so the
// first-match order of hosts_access(5) is kept exactly.
type tableIndex struct {
	segs []segment
}

// segment is a range of rules [start, end), indexed or scanned in order.
type segment struct {
	start, end int
	indexed    bool
	// by4 and by6 map a canonical address (an IPv4 token in dotted
	// decimal, or a bracketed IPv6 pattern without zone) to the head of its
	// entry chain; byText maps other all-digit-and-dot tokens
	// ("010.0.0.1") by their text.
	by4     map[uint32]int32
	by6     map[[16]byte]int32
	byText  map[string]int32
	entries []indexEntry
	// v6Rule is the first rule with a bracketed IPv6 token, or -1. libwrap
	// looks the client name up when such a token fails to match the
	// address, so the index does the same to keep %h laziness exact.
	v6Rule int
}

// indexEntry is one address token: its rule and the next entry with the
// same key (-1 at the end), in rule order.
type indexEntry struct {
	rule int32
	next int32
}

// addrToken classifies a client token for the index. It returns the key
// of an exact-address token: an all-digits-and-dots token without a
// leading or trailing dot (string_match compares it for equality with the
// address text and never looks at the name), or a bracketed IPv6 address.
func addrToken(tok string) (addr netip.Addr, text string, v6, ok bool) {
	if len(tok) >= 2 && tok[0] == '[' && tok[len(tok)-1] == ']' {
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
func indexable(r *rule) bool {
	for _, t := range r.daemons() {
		if asciiEqualFold(t, "EXCEPT") {
			return false
		}
		if _, _, ok := splitAtFrom1(t, '@'); ok {
			return false
		}
	}
	if len(r.clients()) == 0 {
		return false
	}
	for _, t := range r.clients() {
		if _, _, _, ok := addrToken(t); !ok {
			return false
		}
	}
	return true
}

func buildIndex(t *table) *tableIndex {
	ix := &tableIndex{}
	n := len(t.rules)
	for i := 0; i < n; {
		j := i
		for j < n && indexable(&t.rules[j]) {
			j++
		}
		if j-i >= minIndexedRun {
			ix.segs = append(ix.segs, newIndexedSegment(t, i, j))
			i = j
			continue
		}
		if j == i {
			j++
		}
		// Merge with a preceding scanned segment.
		if k := len(ix.segs) - 1; k >= 0 && !ix.segs[k].indexed {
			ix.segs[k].end = j
		} else {
			ix.segs = append(ix.segs, segment{start: i, end: j})
		}
		i = j
	}
	return ix
}

func newIndexedSegment(t *table, start, end int) segment {
	s := segment{start: start, end: end, indexed: true, v6Rule: -1,
		by4: map[uint32]int32{}, by6: map[[16]byte]int32{}}
	for i := start; i < end; i++ {
		for _, tok := range t.rules[i].clients() {
			a, text, v6, _ := addrToken(tok)
			if v6 && s.v6Rule < 0 {
				s.v6Rule = i
			}
			var head int32
			var ok bool
			switch {
			case text != "":
				head, ok = s.byText[text]
			case a.Is4():
				head, ok = s.by4[v4key(a)]
			default:
				head, ok = s.by6[a.As16()]
			}
			e := int32(len(s.entries))
			s.entries = append(s.entries, indexEntry{rule: int32(i), next: -1})
			if !ok {
				switch {
				case text != "":
					if s.byText == nil {
						s.byText = map[string]int32{}
					}
					s.byText[text] = e
				case a.Is4():
					s.by4[v4key(a)] = e
				default:
					s.by6[a.As16()] = e
				}
				continue
			}
			// Append to the key's chain; keys repeat rarely, so the walk
			// is short.
			tail := head
			for s.entries[tail].next >= 0 {
				tail = s.entries[tail].next
			}
			if s.entries[tail].rule == int32(i) {
				s.entries = s.entries[:e] // same key twice in one rule
				continue
			}
			s.entries[tail].next = e
		}
	}
	s.entries = s.entries[:len(s.entries):len(s.entries)]
	return s
}

func v4key(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// first returns the index of the first rule for which match is true.
func (ix *tableIndex) first(c *check, t *table) (int, bool) {
	for k := range ix.segs {
		s := &ix.segs[k]
		if !s.indexed || c.linear {
			for i := s.start; i < s.end; i++ {
				if c.ruleMatch(t, &t.rules[i]) {
					return i, true
				}
			}
			continue
		}
		if c.explain {
			c.trace = append(c.trace, Step{File: t.name, Line: int(t.rules[s.start].line),
				Rule: sprintf("lines %d-%d: %d address-only rules (indexed)", t.rules[s.start].line, t.rules[s.end-1].line, s.end-s.start),
				Why:  "only the rules listing the client's address are evaluated; they follow", Index: true})
		}
		if i, ok := s.lookup(c, t); ok {
			return i, true
		}
	}
	return 0, false
}

// lookup finds the first rule of an indexed segment that matches: only
// rules with a token equal to the client address can, and they are tried
// in rule order.
func (s *segment) lookup(c *check, t *table) (int, bool) {
	a, text := c.clientKey(s.byText != nil)
	h1, h2 := int32(-1), int32(-1)
	switch {
	case a.Is4():
		if e, ok := s.by4[v4key(a)]; ok {
			h1 = e
		}
	case a.Is6():
		if e, ok := s.by6[a.As16()]; ok {
			h1 = e
		}
	}
	if text != "" {
		if e, ok := s.byText[text]; ok {
			h2 = e
		}
	}
	found := -1
	for h1 >= 0 || h2 >= 0 {
		var e int32
		switch {
		case h2 < 0 || (h1 >= 0 && s.entries[h1].rule <= s.entries[h2].rule):
			e = h1
			h1 = s.entries[h1].next
		default:
			e = h2
			h2 = s.entries[h2].next
		}
		if i := int(s.entries[e].rule); c.ruleMatch(t, &t.rules[i]) {
			found = i
			break
		}
	}
	if s.v6Rule >= 0 && (found < 0 || s.v6Rule < found) {
		c.hostName(&c.client)
	}
	return found, found >= 0
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
