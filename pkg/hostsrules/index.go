package hostsrules

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules/internal/addrindex"
	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules/internal/ctext"
	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules/internal/libwrapaddr"
)

// minIndexedRun is the shortest run of address-only rules worth an index:
// one. A lookup that finds nothing costs about 0.1 µs, evaluating even
// one rule "ALL: a.b.c.d" in place several times that.
const minIndexedRun = 1

// minExplainedRun is the shortest run that an explained check (Env.Explain)
// shows as one indexed step; the rules of shorter runs are shown one by
// one, as the interpreter evaluates them.
const minExplainedRun = 4

// A table keeps its rules in segments, in order. Runs of at least
// minIndexedRun consecutive address-only rules (blocklists as DenyHosts and
// fail2ban write them) are indexed by address; every other rule is kept as
// text and evaluated in place, so the first-match order of hosts_access(5)
// is kept exactly.
//
// An indexed run keeps most of its rules as addresses, not text (see
// addrindex); the rest are the table's stored rules, as in a scanned
// segment.
type segment struct {
	start, end int // rule numbers [start, end)
	// base is the index of the segment's first rule kept as text in the
	// table's stored rules; run is the index of an indexed segment.
	base int
	run  *addrindex.Run
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
	run     *addrindex.Builder
	// runStart is the rule number of the open run's first rule, runBase
	// the index of its first stored rule.
	runStart, runBase int
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
	if !addrindex.Indexable(toks[:nd], toks[nd:]) {
		b.endRun()
		b.flushPending()
		b.addScanned(l)
		return
	}
	if b.run != nil {
		b.addIndexed(l, toks[nd:])
		return
	}
	b.pending = append(b.pending, l)
	if len(b.pending) < minIndexedRun {
		return
	}
	b.run, b.runStart, b.runBase = addrindex.NewBuilder(), b.t.n, b.t.stored.Len()
	for _, p := range b.pending {
		toks := ctext.AppendList(b.toks[:0], p.daemons)
		nd := len(toks)
		b.toks = ctext.AppendList(toks, p.clients)
		b.addIndexed(p, b.toks[nd:])
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
	if b.run.Len() > 0 {
		b.t.segs = append(b.t.segs, segment{start: b.runStart, end: b.t.n, base: b.runBase, run: b.run.Finish()})
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

// addIndexed adds l, whose client tokens are clients, to the open run as
// the table's next rule.
func (b *tableBuilder) addIndexed(l ruleLine, clients []string) {
	id, compact := b.run.Compact(l.text, len(l.daemons), l.hasOpts, clients)
	if !compact && !b.store(l) {
		return
	}
	b.run.Add(int32(l.last), id, compact, clients)
	b.t.n++
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
		if c.linear || c.explain && s.run.Len() < minExplainedRun {
			if c.scanRun(t, s, r) {
				return true
			}
			continue
		}
		if c.explain {
			first, last := s.run.Line(0), s.run.Line(int32(s.run.Len()-1))
			c.trace = append(c.trace, Step{File: t.name, Line: int(first),
				Rule: sprintf("lines %d-%d: %d address-only rules (indexed)", first, last, s.end-s.start),
				Why:  "only the rules listing the client's address are evaluated; they follow", Index: true})
		}
		if c.lookup(t, s, r) {
			return true
		}
	}
	return false
}

// rule sets r to rule k of the indexed segment s; *tok is the address
// token of a compact rule, made from a when first needed.
func (c *check) rule(t *table, s *segment, k int32, tok *string, a netip.Addr, r *rule) {
	if i, ok := s.run.Stored(k); ok {
		c.toks = t.view(t.stored.Ref(s.base+i), c.toks, r)
		return
	}
	p, tail, toks := s.run.Rebuild(k, a, tok, c.toks)
	c.toks = toks
	n := len(toks)
	*r = rule{text: p.Text, tail: tail, line: s.run.Line(k), daemons: p.Daemons, clients: toks[:n:n]}
}

// lookup finds the first rule of the indexed segment s that matches and
// sets r to it: only rules with a token equal to the client address can
// match, and they are tried in rule order.
func (c *check) lookup(t *table, s *segment, r *rule) bool {
	a, text := c.clientKey(s.run.HasText())
	var tok string
	found := int32(-1)
	var cur addrindex.Cursor
	for s.run.Find(&cur, a, text); ; {
		k, ok := cur.Next()
		if !ok {
			break
		}
		if c.rule(t, s, k, &tok, a, r); c.ruleMatch(t, r) {
			found = k
			break
		}
	}
	if v6 := s.run.V6Rule(); v6 >= 0 && (found < 0 || v6 < found) {
		c.hostName(&c.client)
	}
	return found >= 0
}

// scanRun evaluates every rule of the indexed segment s in order, without
// the index (for tests that compare both paths).
func (c *check) scanRun(t *table, s *segment, r *rule) bool {
	addrs := s.run.Addrs()
	for k := range s.run.Len() {
		var tok string
		c.rule(t, s, int32(k), &tok, addrs[k], r)
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
